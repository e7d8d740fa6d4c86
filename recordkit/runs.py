"""The contract between `recordkit train` and everything that uses its output.

A train_dir holds `model.ckpt-<step>` checkpoints (tf.train.Checkpoint(model=...)) and
`recordkit_run.json`, which records everything needed to rebuild the model and feed it (model,
head, image size, classes, preprocessing). eval, export, classify, and a later run that starts
from this one's weights read it here, without importing the training loop; a run resumed in
the same train_dir is checked against it here too.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from recordkit import metadata, models, optimization
from recordkit.errors import RecordkitError
from recordkit.train_config import TrainConfig

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
                        meta.get("head", "slim"), meta.get("backbone_output"))


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


# Flags a resumed run may change: they steer the steps to come, not what the checkpoint holds.
ADJUSTABLE = ("learning_rate", "learning_rate_decay_type", "learning_rate_decay_factor", "num_epochs_per_decay",
              "end_learning_rate", "weight_decay", "opt_epsilon", "rmsprop_momentum", "rmsprop_decay",
              "momentum", "adam_beta1", "adam_beta2")


def adjustable(cfg: TrainConfig) -> dict:
    """The ADJUSTABLE flags' values, recorded so that a resume can log what it changed."""
    return {name: getattr(cfg, name) for name in ADJUSTABLE}


def check_resumable(meta: dict, cfg: TrainConfig, info: metadata.DatasetInfo, spec: models.ModelSpec) -> list[str]:
    """Refuse a resume that would change the model, its loss, its inputs or the layout of the
    optimizer state (the checkpoint would be restored into something else, slots by position);
    return the adjustable settings that change ("name: old → new") for the log."""
    wanted = {"model_name": spec.name, "num_classes": info.num_classes, "classes": list(info.classes),
              "optimizer": cfg.optimizer, "batch_size": cfg.batch_size,
              "mixed_precision": cfg.mixed_precision,  # its optimizer wraps a loss scaler
              "loss": cfg.loss or optimization.default_loss(info.label_kind), "dropout": cfg.dropout,
              "trainable_scopes": list(cfg.trainable_scopes), "augment": cfg.augment}
    for name in ("image_size", "head", "preprocessing", "backbone_output"):
        if getattr(cfg, name):
            wanted[name] = getattr(cfg, name)
    # runs recorded before these flags existed
    recorded = {"mixed_precision": False, "head": "slim", "backbone_output": None, **meta}
    clashes = [f"{k}: train_dir has {recorded[k]!r}, this run {v!r}" for k, v in wanted.items()
               if k in recorded and recorded[k] != v]
    if clashes:
        raise RecordkitError(
            f"{cfg.train_dir} holds a run these flags would change; repeat its flags, use a new "
            "--train_dir, or start from it with --checkpoint_path:\n  " + "\n  ".join(clashes)
        )
    before = meta.get("adjustable", {})
    return [f"{k}: {before[k]!r} → {v!r}" for k, v in adjustable(cfg).items() if k in before and before[k] != v]
