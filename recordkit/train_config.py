"""`recordkit train`'s options, without TensorFlow: the CLI builds its flags from them
and `recordkit --help` should not wait seconds for TensorFlow to import."""

from __future__ import annotations

from dataclasses import dataclass, field

OPTIMIZERS = ("rmsprop", "adam", "sgd", "momentum")
DECAY_TYPES = ("fixed", "exponential", "polynomial", "cosine")
LOSSES = ("softmax", "sigmoid")
STRATEGIES = ("default", "mirrored")  # multi_worker: removed, see docs/train.md
HEADS = ("slim", "pool", "pool_bn")  # the original top; global average pooling (then BatchNorm) into the logits


@dataclass
class TrainConfig:
    """Options of one run; names and defaults follow TF-Slim's train_image_classifier.py."""

    train_dir: str
    dataset_dir: str
    dataset_split_name: str = "train"
    dataset_name: str | None = None
    model_name: str = "inception_v3"
    checkpoint_path: str | None = None
    checkpoint_exclude_scopes: list[str] = field(default_factory=list)
    trainable_scopes: list[str] = field(default_factory=list)
    max_number_of_steps: int | None = None
    batch_size: int = 32
    learning_rate: float = 0.01
    learning_rate_decay_type: str = "exponential"
    learning_rate_decay_factor: float = 0.94
    num_epochs_per_decay: float = 2.0
    end_learning_rate: float = 0.0001
    optimizer: str = "rmsprop"
    weight_decay: float = 0.00004
    opt_epsilon: float = 1.0
    rmsprop_momentum: float = 0.9
    rmsprop_decay: float = 0.9
    momentum: float = 0.9
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    save_interval_secs: float = 600
    save_summaries_secs: float = 600
    log_every_n_steps: int = 10
    image_size: int | None = None
    preprocessing: str | None = None
    loss: str | None = None
    dropout: float | None = None
    head: str | None = None
    backbone_output: str | None = None
    augment: bool = True
    feature_cache: str = "auto"
    feature_cache_mirror: bool = False
    seed: int | None = None
    strategy: str = "default"
    mixed_precision: bool = False
    jit_compile: bool = False
    synthetic_input: bool = False
    shuffle_buffer: int = 512
