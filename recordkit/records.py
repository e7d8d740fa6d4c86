"""The tf.train.Example schema: the one place record keys live.

Writers (the converters) and readers (training, eval, inspect) both go through the specs
here, so the two sides cannot drift apart. The image keys are the ones the TF-Slim/inception
converters wrote, so TF-Slim decoders read our files unchanged; object keys follow the TF
Object Detection API.

Writing needs no TensorFlow: `serialize` emits the tf.train.Example protobuf wire format
itself (tests prove it byte-identical to TensorFlow's deterministic serialization), so
conversion workers start in a second instead of importing TensorFlow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class Feature:
    """How one key is stored: `dtype` in bytes/int64/float, `shape` in scalar/list/classes.

    `list` is variable length (one entry per object); `classes` is fixed length num_classes.
    """

    dtype: str
    shape: str
    doc: str
    default: Any = None  # what readers see in records written before the key existed


ENCODED = "image/encoded"
FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
CHANNELS = "image/channels"
COLORSPACE = "image/colorspace"
FILENAME = "image/filename"
SOURCE_ID = "image/source_id"
SHA256 = "image/key/sha256"
FINGERPRINT = "image/key/fingerprint"
LABEL = "image/class/label"
TEXT = "image/class/text"
MULTI_HOT = "image/class/multi_hot"
DIFFICULT_ONLY = "image/class/difficult_only"
BBOX_XMIN = "image/object/bbox/xmin"
BBOX_XMAX = "image/object/bbox/xmax"
BBOX_YMIN = "image/object/bbox/ymin"
BBOX_YMAX = "image/object/bbox/ymax"
OBJECT_LABEL = "image/object/class/label"
OBJECT_TEXT = "image/object/class/text"
OBJECT_DIFFICULT = "image/object/difficult"
OBJECT_TRUNCATED = "image/object/truncated"
OBJECT_VIEW = "image/object/view"

IMAGE_FEATURES: dict[str, Feature] = {
    ENCODED: Feature("bytes", "scalar", "JPEG bytes, RGB"),
    FORMAT: Feature("bytes", "scalar", "always JPEG"),
    HEIGHT: Feature("int64", "scalar", "pixels"),
    WIDTH: Feature("int64", "scalar", "pixels"),
    CHANNELS: Feature("int64", "scalar", "always 3"),
    COLORSPACE: Feature("bytes", "scalar", "always RGB"),
    FILENAME: Feature("bytes", "scalar", "source file name (not unique across classes)"),
    SOURCE_ID: Feature("bytes", "scalar", "source path relative to the split folder or VOC id"),
    SHA256: Feature("bytes", "scalar", "hex sha256 of image/encoded"),
    FINGERPRINT: Feature("bytes", "scalar", "hex perceptual hash + quarter colours (near_duplicates.py)", ""),
}

CLASSIFICATION_FEATURES: dict[str, Feature] = {
    **IMAGE_FEATURES,
    LABEL: Feature("int64", "scalar", "0-based index into label.txt"),
    TEXT: Feature("bytes", "scalar", "class name"),
}

MULTI_LABEL_FEATURES: dict[str, Feature] = {
    **IMAGE_FEATURES,
    MULTI_HOT: Feature("int64", "classes", "1 = at least one non-difficult object of the class"),
    DIFFICULT_ONLY: Feature("int64", "classes", "1 = only difficult objects (devkit's 0: ignore)"),
    BBOX_XMIN: Feature("float", "list", "normalised to [0, 1] by the decoded image width"),
    BBOX_XMAX: Feature("float", "list", "normalised to [0, 1] by the decoded image width"),
    BBOX_YMIN: Feature("float", "list", "normalised to [0, 1] by the decoded image height"),
    BBOX_YMAX: Feature("float", "list", "normalised to [0, 1] by the decoded image height"),
    OBJECT_LABEL: Feature("int64", "list", "0-based index into label.txt"),
    OBJECT_TEXT: Feature("bytes", "list", "class name"),
    OBJECT_DIFFICULT: Feature("int64", "list", "0/1"),
    OBJECT_TRUNCATED: Feature("int64", "list", "0/1"),
    OBJECT_VIEW: Feature("bytes", "list", "VOC pose, e.g. Frontal, Unspecified"),
}

LABEL_KINDS = {"single": CLASSIFICATION_FEATURES, "multi": MULTI_LABEL_FEATURES}


def image_values(jpeg: bytes, height: int, width: int, filename: str, source_id: str,
                 fingerprint: str) -> dict:
    """The IMAGE_FEATURES values for one RGB JPEG; modes add their label keys."""
    return {
        ENCODED: jpeg,
        FORMAT: "JPEG",
        HEIGHT: height,
        WIDTH: width,
        CHANNELS: 3,
        COLORSPACE: "RGB",
        FILENAME: filename,
        SOURCE_ID: source_id,
        SHA256: hashlib.sha256(jpeg).hexdigest(),
        FINGERPRINT: fingerprint,
    }


def _as_list(feature: Feature, key: str, value: Any) -> list:
    if feature.shape == "scalar":
        return [value]
    if isinstance(value, (str, bytes)):
        raise TypeError(f"record key {key!r} takes a list, got a single {type(value).__name__}")
    return list(value)


_ONE_BYTE = [bytes((i,)) for i in range(128)]


def _int64(key: str, value: Any) -> int:
    number = int(value)
    if not -(2**63) <= number < 2**63:
        raise ValueError(f"record key {key!r}: {number} does not fit in int64")
    return number


def _varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _ONE_BYTE[n]
    n &= 0xFFFFFFFFFFFFFFFF  # negative int64 values are 10-byte two's complement, as in protobuf
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Tags of the length-delimited fields used here: field 1, 2 and 3 with wire type 2.
_TAG = {1: b"\x0a", 2: b"\x12", 3: b"\x1a"}
# tensorflow/core/example/feature.proto: Feature's oneof field per kind; each list's values
# are field 1 of BytesList/FloatList/Int64List (numbers packed).
_LIST_TAG = {"bytes": _TAG[1], "float": _TAG[2], "int64": _TAG[3]}


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + _varint(len(payload)) + payload


def _feature(feature: Feature, key: str, value: Any) -> bytes:
    """One tf.train.Feature; numeric lists are packed, and an empty list has no payload."""
    values = _as_list(feature, key, value)
    if feature.dtype == "bytes":
        items = b"".join([_field(b"\x0a", v.encode("utf-8") if isinstance(v, str) else bytes(v)) for v in values])
    elif not values:
        items = b""
    elif feature.dtype == "int64":
        items = _field(b"\x0a", b"".join([_varint(_int64(key, v)) for v in values]))
    else:  # as protobuf stores a double in a float field: rounded, out-of-range values to ±inf
        with np.errstate(over="ignore"):
            packed = np.asarray([float(v) for v in values], dtype=np.float64).astype("<f4").tobytes()
        items = _field(b"\x0a", packed)
    return _field(_LIST_TAG[feature.dtype], items)


def serialize(spec: Mapping[str, Feature], values: Mapping[str, Any]) -> bytes:
    """Serialize one record; every key of `spec` must be given and no other.

    The bytes equal `tf.train.Example.SerializeToString(deterministic=True)`: map entries
    sorted by key, so the same values give the same bytes in every process.
    """
    if spec.keys() != values.keys():
        missing, unknown = sorted(set(spec) - set(values)), sorted(set(values) - set(spec))
        raise KeyError(f"record keys do not match the spec: missing {missing}, unknown {unknown}")
    entries = b"".join([_entry(spec[key], key, values[key]) for key in sorted(spec)])
    return _field(b"\x0a", entries)  # Example.features: the Features message is the entries


_ENTRIES: dict = {}  # (key, value) → entry bytes for small repeated values (format, label, size...)


def _entry(feature: Feature, key: str, value: Any) -> bytes:
    """One entry of the Features.feature map (key = field 1, value = field 2)."""
    small = isinstance(value, int) or (isinstance(value, str) and len(value) < 64)
    if small and (key, value) in _ENTRIES:
        return _ENTRIES[(key, value)]
    entry = _field(b"\x0a", _field(b"\x0a", key.encode("utf-8")) + _field(b"\x12", _feature(feature, key, value)))
    if small and len(_ENTRIES) < 4096:
        _ENTRIES[(key, value)] = entry
    return entry


def parse_spec(spec: Mapping[str, Feature], num_classes: int | None = None) -> dict:
    """The feature description `tf.io.parse_single_example` / `parse_example` takes."""
    import tensorflow as tf  # readers only: writing records never loads TensorFlow

    dtypes = {"bytes": tf.string, "int64": tf.int64, "float": tf.float32}
    parsed = {}
    for key, feature in spec.items():
        dtype = dtypes[feature.dtype]
        if feature.shape == "scalar":
            parsed[key] = tf.io.FixedLenFeature([], dtype, default_value=feature.default)
        elif feature.shape == "classes":
            if num_classes is None:
                raise ValueError(f"{key!r} has one entry per class: pass num_classes")
            parsed[key] = tf.io.FixedLenFeature([num_classes], dtype)
        else:
            parsed[key] = tf.io.VarLenFeature(dtype)
    return parsed


def describe(spec: Mapping[str, Feature]) -> dict[str, dict[str, str]]:
    """The spec as plain JSON for dataset.json, so other tools can read the files too."""
    return {key: {"dtype": f.dtype, "shape": f.shape, "doc": f.doc} for key, f in spec.items()}


def spec_for(label_kind: str) -> dict[str, Feature]:
    try:
        return LABEL_KINDS[label_kind]
    except KeyError:
        raise ValueError(
            f"unknown label kind {label_kind!r}; expected one of {sorted(LABEL_KINDS)}"
        ) from None
