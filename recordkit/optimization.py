"""What a training step optimises, as TF-Slim's train_image_classifier.py defines it: its
learning-rate schedules, its optimizers with their defaults, the per-example losses (softmax,
or sigmoid over the classes a VOC mask keeps) and its L2 weight decay."""

from __future__ import annotations

import keras
import tensorflow as tf

from recordkit.errors import RecordkitError
from recordkit.train_config import DECAY_TYPES, OPTIMIZERS, TrainConfig


class _Constant(keras.optimizers.schedules.LearningRateSchedule):
    """A fixed rate as a schedule, so every decay type gives the optimizer the same variables
    and a run can resume with another --learning_rate_decay_type."""

    def __init__(self, rate: float):
        self.rate = rate

    def __call__(self, step):
        return tf.constant(self.rate, tf.float32)

    def get_config(self) -> dict:
        return {"rate": self.rate}


def learning_rate_schedule(cfg: TrainConfig, num_samples: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Slim's schedules: fixed, exponential (staircase every num_epochs_per_decay), polynomial
    (to end_learning_rate over max steps), and cosine (to 0 over max steps)."""
    if cfg.learning_rate_decay_type not in DECAY_TYPES:
        raise RecordkitError(
            f"unknown --learning_rate_decay_type {cfg.learning_rate_decay_type!r}; "
            f"expected one of {', '.join(DECAY_TYPES)}"
        )
    if cfg.learning_rate_decay_type == "fixed":
        return _Constant(cfg.learning_rate)
    if cfg.learning_rate_decay_type == "exponential":
        decay_steps = max(1, int(num_samples / cfg.batch_size * cfg.num_epochs_per_decay))
        return keras.optimizers.schedules.ExponentialDecay(
            cfg.learning_rate, decay_steps, cfg.learning_rate_decay_factor, staircase=True
        )
    if not cfg.max_number_of_steps:
        raise RecordkitError(f"{cfg.learning_rate_decay_type} decay needs --max_number_of_steps")
    if cfg.learning_rate_decay_type == "polynomial":
        return keras.optimizers.schedules.PolynomialDecay(
            cfg.learning_rate, cfg.max_number_of_steps, cfg.end_learning_rate, power=1.0
        )
    return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, cfg.max_number_of_steps)


def make_optimizer(cfg: TrainConfig, schedule: keras.optimizers.schedules.LearningRateSchedule
                   ) -> keras.optimizers.Optimizer:
    """Slim's optimizers with slim's defaults (note opt_epsilon=1.0 for rmsprop and adam)."""
    if cfg.optimizer == "rmsprop":
        opt = keras.optimizers.RMSprop(schedule, rho=cfg.rmsprop_decay,
                                       momentum=cfg.rmsprop_momentum, epsilon=cfg.opt_epsilon)
    elif cfg.optimizer == "adam":
        opt = keras.optimizers.Adam(schedule, beta_1=cfg.adam_beta1, beta_2=cfg.adam_beta2,
                                    epsilon=cfg.opt_epsilon)
    elif cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(schedule)
    elif cfg.optimizer == "momentum":
        opt = keras.optimizers.SGD(schedule, momentum=cfg.momentum)
    else:
        raise RecordkitError(f"unknown --optimizer {cfg.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
    return keras.optimizers.LossScaleOptimizer(opt) if cfg.mixed_precision else opt


def default_loss(label_kind: str) -> str:
    """What --loss means when not given: softmax for one label an image, else sigmoid."""
    return "softmax" if label_kind == "single" else "sigmoid"


def per_example_loss(kind: str, logits: tf.Tensor, targets: dict) -> tf.Tensor:
    """Softmax cross-entropy on `label`, or sigmoid cross-entropy on `multi_hot` averaged over
    the entries `mask` keeps (difficult-only classes are ignored, as in the VOC devkit)."""
    logits = tf.cast(logits, tf.float32)
    if kind == "softmax":
        return tf.nn.sparse_softmax_cross_entropy_with_logits(targets["label"], logits)
    mask = targets["mask"]
    entries = tf.nn.sigmoid_cross_entropy_with_logits(targets["multi_hot"], logits) * mask
    return tf.reduce_sum(entries, -1) / tf.maximum(tf.reduce_sum(mask, -1), 1.0)


def weight_decay_loss(variables: list, weight_decay: float) -> tf.Tensor:
    """Slim's L2 regulariser on trainable kernels: weight_decay * sum(w**2) / 2."""
    kernels = [tf.cast(v, tf.float32) for v in variables if len(v.shape) >= 2]
    if not weight_decay or not kernels:
        return tf.constant(0.0)
    return weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in kernels])
