"""Classify image files with a SavedModel from `recordkit export`.

The class names and preprocessing come from inside the SavedModel. Each file is checked
first with the converter's image checks, so a missing, corrupt or non-image file becomes an
error value naming the reason while the other files are still classified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recordkit import images, metadata
from recordkit.errors import RecordkitError

BATCH_SIZE = 32
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Classifier:
    serve: object  # the SavedModel's serving signature (image bytes -> dict of tensors)
    classes: list[str]
    label_kind: str


@dataclass(frozen=True)
class Result:
    """One file's outcome: scores [C], or `error` saying why it could not be classified."""

    path: str
    logits: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    error: str | None = None


@dataclass(frozen=True)
class Prediction:
    name: str
    index: int
    logit: float
    probability: float


def load(model_path: str, label_path: str | None = None) -> Classifier:
    """Load an exported SavedModel; `label_path` replaces its names (same count required)."""
    import tensorflow as tf

    from recordkit.export import SIGNATURE

    try:
        loaded = tf.saved_model.load(model_path)
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise RecordkitError(f"cannot load a SavedModel from {model_path}: {e}") from None
    if SIGNATURE not in loaded.signatures or not hasattr(loaded, "class_names"):
        raise RecordkitError(f"{model_path} is not a `recordkit export` SavedModel")
    classes = [c.decode("utf-8") for c in loaded.class_names[0].numpy()]
    label_kind = loaded.label_kind[0].numpy().decode("utf-8")
    if label_path is not None:
        classes = _checked_labels(label_path, classes)
    return Classifier(loaded.signatures[SIGNATURE], classes, label_kind)


def _checked_labels(label_path: str, model_classes: list[str]) -> list[str]:
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(label_path) as f:
            names = metadata.parse_labels(f.read())
    except (tf.errors.OpError, ValueError) as e:
        raise RecordkitError(f"cannot read label file {label_path}: {e}") from None
    if len(names) != len(model_classes):
        raise RecordkitError(
            f"{label_path} has {len(names)} classes but the model has {len(model_classes)} "
            f"({', '.join(model_classes[:5])}...): wrong label file or wrong model"
        )
    return names


def expand(patterns: list[str]) -> list[str]:
    """Glob patterns to sorted paths; a plain path is kept even if missing, to report it."""
    import tensorflow as tf

    paths = []
    for pattern in patterns:
        if any(c in pattern for c in _GLOB_CHARS):
            matches = sorted(tf.io.gfile.glob(pattern))
            paths.extend(matches or [pattern])
        else:
            paths.append(pattern)
    return paths


def read_image(path: str) -> bytes:
    """The file as checked RGB JPEG bytes (as `recordkit convert` stores it), or BadImage."""
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        raise images.BadImage("no such file" if not any(c in path for c in _GLOB_CHARS)
                              else "no file matches this pattern")
    if tf.io.gfile.isdir(path):
        raise images.BadImage("is a directory")
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except tf.errors.OpError as e:  # permission denied, a vanished or unreadable remote file
        raise images.BadImage(f"cannot read: {e.message}") from None
    return images.to_rgb_jpeg(data, images.ImageOptions()).jpeg


def classify_files(classifier: Classifier, paths: list[str]) -> list[Result]:
    """Results in the order of `paths`; bad files get an error, the rest are scored in batches."""
    results: dict[int, Result] = {}
    good: list[tuple[int, bytes]] = []
    for i, path in enumerate(paths):
        try:
            good.append((i, read_image(path)))
        except images.BadImage as e:
            results[i] = Result(path, error=str(e))
    for start in range(0, len(good), BATCH_SIZE):
        batch = good[start:start + BATCH_SIZE]
        logits, probabilities = classify_bytes(classifier, [data for _, data in batch])
        for (i, _), row_logits, row_probabilities in zip(batch, logits, probabilities):
            results[i] = Result(paths[i], row_logits, row_probabilities)
    return [results[i] for i in range(len(paths))]


def classify_bytes(classifier: Classifier, data: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Logits and probabilities [N, C] for encoded images."""
    import tensorflow as tf

    outputs = classifier.serve(image_bytes=tf.constant(data, dtype=tf.string))
    return outputs["logits"].numpy(), outputs["probabilities"].numpy()


def ranked(classifier: Classifier, result: Result, top: int = 5,
           threshold: float = 0.5) -> list[Prediction]:
    """Single-label: the `top` highest logits. Multi-label: every class whose sigmoid
    probability is at least `threshold`, highest first."""
    order = np.argsort(-result.logits, kind="stable")
    if classifier.label_kind == "multi":
        order = [i for i in order if result.probabilities[i] >= threshold]
    else:
        order = order[:top]
    return [
        Prediction(classifier.classes[i], int(i), float(result.logits[i]),
                   float(result.probabilities[i]))
        for i in order
    ]
