"""`recordkit train`: TF-Slim's train_image_classifier flags, both spellings, onto train.train."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from recordkit.cli import flags
from recordkit.train_config import DECAY_TYPES, HEADS, LOSSES, OPTIMIZERS, STRATEGIES, TrainConfig


def _scopes(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def register(commands) -> None:
    p = commands.add_parser(
        "train",
        help="fine-tune Inception V3 / VGG16 on converted shards (TF-Slim flags accepted)",
        description="Fine-tune a registry model on a converted dataset. A checkpoint already in "
        "--train_dir wins over --checkpoint_path (the run resumes). See docs/train.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = TrainConfig.__dataclass_fields__
    req = p.add_argument_group("where")
    flags.add(req, "train_dir", required=True, help="checkpoints, summaries, recordkit_run.json")
    flags.add(req, "dataset_dir", required=True, help="output of `recordkit convert`")
    flags.add(req, "dataset_split_name", default="train", help="the split to train on (ours or the source's name)")
    flags.add(req, "dataset_name", default=None, help="checked against dataset.json if given")
    m = p.add_argument_group("model and weights")
    flags.add(m, "model_name", default="inception_v3", help="inception_v3 | vgg_16")
    flags.add(m, "checkpoint_path", default=None,
              help="imagenet | a Keras .weights.h5 | a TF-Slim .ckpt (ignored when resuming)")
    flags.add(m, "checkpoint_exclude_scopes", type=_scopes, default=[],
              help="comma-separated slim scopes (or layer names) not to load")
    flags.add(m, "trainable_scopes", type=_scopes, default=[],
              help="comma-separated slim scopes (or layer names) to train; default all")
    flags.add(m, "image_size", type=int, default=None, help="default: the model's native size")
    flags.add(m, "preprocessing", default=None,
              help="inception | vgg | caffe (checked by the library); default: what the weights "
              "were trained with")
    flags.add(m, "head", choices=HEADS, default=None,
              help="slim: the original top (VGG: fc6, fc7); pool: global average pooling into the "
              "logits (Keras' transfer-learning head); pool_bn: pooling, BatchNorm, logits; "
              "default: slim if the weights hold the original top, else pool_bn")
    flags.add(m, "backbone_output", default=None,
              help="end the backbone at this layer (e.g. block4_pool, mixed7) and put the head there, "
              "for weights whose last blocks learned another task; default: the whole backbone")
    flags.add(m, "dropout", type=float, default=None, help="rate of every dropout layer; default as in the original")
    o = p.add_argument_group("optimisation")
    flags.add(o, "max_number_of_steps", type=int, default=None, help="stop after this step; None: run until stopped")
    flags.add(o, "batch_size", type=int, default=d["batch_size"].default, help="images per step")
    flags.add(o, "loss", choices=LOSSES, default=None,
              help="default: softmax for single-label, sigmoid for multi-label datasets")
    flags.add(o, "optimizer", choices=OPTIMIZERS, default=d["optimizer"].default, help="as in TF-Slim")
    flags.add(o, "learning_rate", type=float, default=d["learning_rate"].default, help="initial learning rate")
    flags.add(o, "learning_rate_decay_type", choices=DECAY_TYPES,
              default=d["learning_rate_decay_type"].default, help="schedule after the initial rate")
    for name in ("learning_rate_decay_factor", "num_epochs_per_decay", "end_learning_rate",
                 "weight_decay", "opt_epsilon", "rmsprop_momentum", "rmsprop_decay", "momentum",
                 "adam_beta1", "adam_beta2"):
        flags.add(o, name, type=float, default=d[name].default, help="as in TF-Slim")
    r = p.add_argument_group("run")
    flags.add(r, "save_interval_secs", type=float, default=d["save_interval_secs"].default, help="checkpoint every")
    flags.add(r, "save_summaries_secs", type=float, default=d["save_summaries_secs"].default,
              help="TensorBoard summaries every")
    flags.add(r, "log_every_n_steps", type=int, default=d["log_every_n_steps"].default, help="progress line every")
    flags.add(r, "seed", type=int, default=None, help="makes input order and augmentation repeatable")
    flags.add(r, "no_augmentation", dest="augment", action="store_false",
              help="train on the deterministic eval crop")
    flags.add(r, "feature_cache", choices=("auto", "on", "off"), default="auto",
              help="auto: when only the top layers train, compute the frozen body once and train the top on its cached outputs (if they are no larger than the images); on: also when larger")
    flags.add(r, "feature_cache_mirror", action="store_true",
              help="also cache the mirror image of every training crop (twice the caching time), "
              "so the top still sees flips")
    flags.add(r, "shuffle_buffer", type=int, default=d["shuffle_buffer"].default, help="records in the shuffle buffer")
    flags.add(r, "strategy", choices=STRATEGIES, default="default",
              help="tf.distribute strategy: mirrored = all local GPUs")
    flags.add(r, "mixed_precision", action="store_true", help="float16 compute (GPUs)")
    flags.add(r, "jit_compile", action="store_true", help="compile the training step with XLA")
    flags.add(r, "synthetic_input", action="store_true",
              help="step on one batch held in device memory: the model's speed ceiling without the "
              "input pipeline, for benchmarks (the model learns nothing useful)")
    p.set_defaults(run=run)


def _log_to_stderr(logger: logging.Logger) -> None:
    """Progress lines on stderr (absl's root handler would otherwise swallow or reformat them)."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def run(args, extra) -> int:
    from recordkit import train

    _log_to_stderr(logging.getLogger("recordkit"))
    fields = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    start = time.monotonic()
    result = train.train(cfg)
    print(
        f"trained {cfg.model_name}: steps {result.start_step}→{result.step} in {result.seconds:.1f} s "
        f"({result.images_per_second:.1f} images/s), final loss {result.last_loss:.4f}; "
        f"{time.monotonic() - start:.1f} s in all (building, loading weights"
        + (", caching" if result.feature_cache else "") + ")"
        + (f" [top trained on cached {result.feature_cache} outputs]" if result.feature_cache else "")
        + f"\ncheckpoint: {result.checkpoint}"
    )
    return 0
