"""TensorBoard summaries written with core TF only: `tf.summary.scalar`/`image` need the
tensorboard package, which a tensorflow-cpu install may lack (it is only needed to view)."""

from __future__ import annotations

import math

import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def plugin_metadata(plugin: str, data_class: int = summary_pb2.DATA_CLASS_UNKNOWN) -> bytes:
    """What tells TensorBoard which dashboard shows a tensor written by `tf.summary.write`."""
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin), data_class=data_class,
    ).SerializeToString()


def scalar(name: str, value: float) -> None:
    """One scalar at the default writer's step; NaN (a metric with no data) is skipped."""
    if not math.isnan(value):
        tf.summary.write(name, tf.constant(value, tf.float32),
                         metadata=plugin_metadata("scalars", summary_pb2.DATA_CLASS_SCALAR))


def write_scalars(log_dir: str, step: int, scalars: dict[str, float]) -> None:
    """Several scalars at one step into a fresh event file in `log_dir`."""
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default(step=step):
        for name, value in scalars.items():
            scalar(name, value)
    writer.close()
