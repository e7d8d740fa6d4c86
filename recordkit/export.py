"""Export a classifier as a SavedModel that takes encoded image bytes.

Decoding, the run's eval resize/crop and preprocessing, and the class names all live inside
the SavedModel, so TF Serving, TFLite converters and `recordkit classify` cannot preprocess
differently from training or shift the labels by one (the 1000-vs-1001 mistake).

The serving signature takes `image_bytes` (a batch of JPEG/PNG/GIF/BMP/WebP files as
tf.string) and returns `logits` and `probabilities` [N, C] (softmax for single-label, sigmoid
for multi-label runs) and the `top_classes` names with their `top_class_ids` [N, K].
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable

from recordkit import metadata
from recordkit.errors import RecordkitError

IMAGENET_CLASSES = "imagenet_classes.tsv"  # in recordkit/data/
BACKGROUND = "background"
SIGNATURE = "serving_default"
INPUT = "image_bytes"
DESCRIPTION = "assets.extra/recordkit_export.json"
LABEL_KINDS = ("single", "multi")


@dataclass(frozen=True)
class ServingInfo:
    """Everything the SavedModel needs besides the network.

    `preprocess` maps one decoded uint8 [H, W, 3] image to the model's float input, exactly
    as evaluation of the run does it. `description` (model, weights, preprocessing mode...)
    is written next to the model for people and tools reading the export.
    """

    classes: list[str]
    label_kind: str
    image_size: tuple[int, int]
    preprocess: Callable[[Any], Any]
    description: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.label_kind not in LABEL_KINDS:
            raise RecordkitError(f"label kind must be one of {LABEL_KINDS}, got {self.label_kind!r}")


def serving_function(model, info: ServingInfo, top_k: int) -> Callable:
    """image bytes [N] -> dict of logits, probabilities, top class names and ids."""
    import tensorflow as tf

    names = tf.constant(info.classes)
    k = min(top_k, len(info.classes))
    input_spec = tf.TensorSpec([*info.image_size, 3], tf.float32)

    def decode(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return tf.cast(info.preprocess(image), tf.float32)

    def serve(image_bytes):
        images = tf.map_fn(decode, image_bytes, fn_output_signature=input_spec)
        logits = tf.cast(model(images, training=False), tf.float32)
        activation = tf.nn.softmax if info.label_kind == "single" else tf.math.sigmoid
        top = tf.math.top_k(logits, k)
        return {
            "logits": logits,
            "probabilities": activation(logits),
            "top_classes": tf.gather(names, top.indices),
            "top_class_ids": top.indices,
        }

    return serve


def write_saved_model(model, info: ServingInfo, output_dir: str, top_k: int = 5,
                      overwrite: bool = False) -> str:
    """Write the SavedModel to `output_dir` atomically: a crash leaves no half-written export."""
    import keras
    import tensorflow as tf

    if int(model.outputs[0].shape[-1]) != len(info.classes):
        raise RecordkitError(
            f"the model has {model.outputs[0].shape[-1]} outputs but {len(info.classes)} class "
            "names were given: check num_classes / the label file"
        )

    def write(path: str) -> None:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            SIGNATURE,
            serving_function(model, info, top_k),
            input_signature=[tf.TensorSpec([None], tf.string, name=INPUT)],
        )
        archive.add_variable_collection("class_names", [tf.Variable(info.classes, trainable=False)])
        archive.add_variable_collection("label_kind", [tf.Variable(info.label_kind, trainable=False)])
        archive.write_out(path, verbose=False)
        description = {**info.description, "classes": info.classes, "label_kind": info.label_kind,
                       "image_size": list(info.image_size), "signature": SIGNATURE, "input": INPUT}
        os.makedirs(os.path.join(path, os.path.dirname(DESCRIPTION)), exist_ok=True)
        with open(os.path.join(path, DESCRIPTION), "w") as f:
            json.dump(description, f, indent=2, sort_keys=True)
            f.write("\n")

    return write_atomically(output_dir, write, overwrite)


def write_atomically(output_dir: str, write: Callable[[str], None], overwrite: bool) -> str:
    """Call `write(temp_dir)` next to `output_dir`, then rename it into place."""
    if "://" in output_dir:
        raise RecordkitError(
            f"export writes to a local directory (atomically); copy it to {output_dir} afterwards"
        )
    output_dir = os.path.abspath(output_dir)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise RecordkitError(f"{output_dir} is a file; --output_dir must be a directory")
    if os.path.exists(output_dir) and os.listdir(output_dir) and not overwrite:
        raise RecordkitError(f"{output_dir} already exists and is not empty (pass --overwrite)")
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    temp = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.tmp-", dir=parent)
    try:
        write(temp)
        if os.path.exists(output_dir):
            old = temp + ".old"
            os.rename(output_dir, old)
            try:
                os.rename(temp, output_dir)
            except OSError:
                os.rename(old, output_dir)  # the previous export stays in place
                raise
            shutil.rmtree(old)
        else:
            os.rename(temp, output_dir)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return output_dir


def eval_preprocess(image_size: int, mode: str) -> Callable[[Any], Any]:
    """The run's deterministic eval resize/crop, then its pixel convention."""
    from recordkit import preprocessing

    preprocessing.check_mode(mode)
    return lambda image: preprocessing.preprocess(
        preprocessing.eval_image(image, image_size, mode), mode
    )


def from_run(checkpoint_path: str, model_name: str | None = None,
             dataset_name: str | None = None):
    """(model, ServingInfo) for a training run's checkpoint: a train_dir (its newest
    checkpoint) or one checkpoint. Classes, image size and preprocessing come from the run."""
    from recordkit import evaluate, runs

    model, run = runs.load_for_inference(checkpoint_path)
    run = evaluate.check_run(run, model_name, dataset_name)
    size = int(run["image_size"])
    info = ServingInfo(
        list(run["classes"]), run["label_kind"], (size, size),
        eval_preprocess(size, run["preprocessing"]),
        {"model_name": run["model_name"], "preprocessing": run["preprocessing"],
         "checkpoint": run.get("checkpoint", checkpoint_path), "dataset_name": run.get("dataset_name")},
    )
    return model, info


def pretrained(model_name: str, weights: str, num_classes: int | None = None,
               image_size: int | None = None, label_path: str | None = None):
    """(model, ServingInfo) for a pretrained ImageNet checkpoint with its original head.

    Slim's Inception V3 has 1001 classes (0 = background), slim's VGG 16 and every Keras
    file 1000; `num_classes`, when given, must agree, so a 1000/1001 mix-up (predictions
    shifted by one) is caught here instead of in the results.
    """
    from recordkit import checkpoints

    model, run = checkpoints.pretrained_model(model_name, weights, image_size)
    if num_classes is not None and num_classes != run["num_classes"]:
        raise RecordkitError(
            f"--num_classes {num_classes} does not match {run['weights']}: its {run['model_name']} "
            f"head has {run['num_classes']} classes"
        )
    classes = imagenet_classes(run["num_classes"], label_path)
    info = ServingInfo(
        classes, "single", (run["image_size"], run["image_size"]),
        eval_preprocess(run["image_size"], run["preprocessing"]),
        {k: run[k] for k in ("model_name", "weights", "preprocessing")},
    )
    return model, info


def imagenet_classes(num_classes: int, label_path: str | None = None) -> list[str]:
    """ImageNet names from `label_path`, else the 1,000 shipped with recordkit (first WordNet
    lemma of each class, e.g. "tench"; see recordkit/data/README.md), so export works offline.

    A 1000-name list serves a 1001-class model by putting slim's "background" first.
    """
    if label_path is not None:
        import tensorflow as tf

        with tf.io.gfile.GFile(label_path) as f:
            names = metadata.parse_labels(f.read())
    else:
        lines = resources.files("recordkit").joinpath("data", IMAGENET_CLASSES).read_text("utf-8").splitlines()
        names = [line.split("\t", 1)[1].split(", ")[0] for line in lines]
    if len(names) == num_classes - 1:
        names = [BACKGROUND, *names]
    if len(names) != num_classes:
        raise RecordkitError(
            f"{len(names)} class names for a {num_classes}-class model "
            f"({label_path or 'the ImageNet classes shipped with recordkit'})"
        )
    return names
