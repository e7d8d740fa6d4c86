"""The contract between `recordkit train` and everything that uses its output.

A train_dir holds `model.ckpt-<step>` checkpoints (tf.train.Checkpoint(model=...)) and
`recordkit_run.json`, which records everything needed to rebuild the model and feed it (model,
head, image size, classes, preprocessing). eval, export, classify, and a later run that starts
from this one's weights read it here, without importing the training loop.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from recordkit import metadata, models
from recordkit.errors import RecordkitError

RUN_JSON = "recordkit_run.json"


def read_run_metadata(train_dir: str) -> dict:
    """The recordkit_run.json of a train_dir."""
    path = metadata.join(train_dir, RUN_JSON)
    if not tf.io.gfile.exists(path):
        raise RecordkitError(f"{path} not found: is {train_dir!r} a `recordkit train` directory?")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def write_run_metadata(train_dir: str, meta: dict) -> None:
    path = metadata.join(train_dir, RUN_JSON)
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        f.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def build_model(meta: dict) -> keras.Model:
    """The model a run's metadata describes (random weights)."""
    spec = models.get(meta["model_name"])
    return models.build(spec, meta["num_classes"], meta["image_size"], meta.get("dropout"),
                        meta.get("head", "slim"))


def run_folder(checkpoint_path: str) -> str:
    """The train_dir of a train_dir or of a checkpoint prefix inside one."""
    return checkpoint_path if tf.io.gfile.isdir(checkpoint_path) else os.path.dirname(checkpoint_path) or "."


def load_for_inference(checkpoint_path: str) -> tuple[keras.Model, dict]:
    """(model with the run's head and trained weights, run metadata) from a train_dir (newest
    checkpoint) or one checkpoint prefix inside it.

    Feed it `preprocessing.preprocess(preprocessing.eval_image(img, meta["image_size"],
    meta["preprocessing"]), meta["preprocessing"])`; logits index = meta["classes"] index.
    """
    if tf.io.gfile.isdir(checkpoint_path):
        prefix = tf.train.latest_checkpoint(checkpoint_path)
        if prefix is None:
            raise RecordkitError(f"no checkpoint in {checkpoint_path}")
    else:
        prefix = checkpoint_path
        if not tf.io.gfile.exists(prefix + ".index"):
            raise RecordkitError(f"checkpoint {prefix} not found ({prefix}.index is missing)")
    meta = read_run_metadata(run_folder(checkpoint_path))
    model = build_model(meta)
    restore_model(model, prefix)
    meta["checkpoint"] = prefix
    return model, meta


def restore_model(model: keras.Model, prefix: str) -> None:
    """Load a run checkpoint's model weights; every model variable must be in it."""
    status = tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise RecordkitError(f"{prefix} does not match the model in {RUN_JSON}: {e}") from None
