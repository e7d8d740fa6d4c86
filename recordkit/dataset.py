"""tf.data input over a converted dataset's shards.

Reads the keys through `records.parse_spec`, so the reader cannot drift from the writer.
Targets are a dict: `multi_hot` [B, C] and `mask` [B, C] (0 where the devkit says "ignore":
difficult-only classes) for every dataset, plus `label` [B] for single-label ones, so either
loss can be chosen without another input path. With `ids=True` the targets also carry each
record's `source_id` and `filename` (bytes), so eval can name the files it lists.

With a seed the pipeline is deterministic (file order, interleave, shuffle and per-example
augmentation seeds all derive from it); without one, tf.data may reorder for speed.
"""

from __future__ import annotations

import tensorflow as tf

from recordkit import metadata, preprocessing, records
from recordkit.errors import RecordkitError

AUTOTUNE = tf.data.AUTOTUNE


def _parse_fn(info: metadata.DatasetInfo, ids: bool = False):
    """Serialized example → (JPEG bytes, its label features as stored, and with `ids` its
    source id and file name: empty for records written without them, e.g. by other tools)."""
    spec = records.spec_for(info.label_kind)
    keys = [records.ENCODED] + (
        [records.LABEL] if info.label_kind == "single" else [records.MULTI_HOT, records.DIFFICULT_ONLY]
    )
    description = {k: v for k, v in records.parse_spec(spec, info.num_classes).items() if k in keys}
    if ids:
        description.update({key: tf.io.FixedLenFeature([], tf.string, default_value="")
                            for key in (records.SOURCE_ID, records.FILENAME)})

    def parse(serialized):
        features = tf.io.parse_single_example(serialized, description)
        return features.pop(records.ENCODED), features

    return parse


def _targets_fn(info: metadata.DatasetInfo):
    """A batch of stored label features → the targets dict (once per batch, vectorised)."""

    def targets(labels: dict) -> dict:
        found = {name: labels[key] for name, key in (("source_id", records.SOURCE_ID),
                                                     ("filename", records.FILENAME)) if key in labels}
        if info.label_kind == "single":
            label = labels[records.LABEL]
            hot = tf.one_hot(label, info.num_classes, dtype=tf.float32)
            return {"label": label, "multi_hot": hot, "mask": tf.ones_like(hot), **found}
        return {
            "multi_hot": tf.cast(labels[records.MULTI_HOT], tf.float32),
            "mask": 1.0 - tf.cast(labels[records.DIFFICULT_ONLY], tf.float32),
            **found,
        }

    return targets


def decode(encoded: tf.Tensor) -> tf.Tensor:
    """JPEG bytes → HxWx3 uint8 (the converter guarantees RGB JPEG)."""
    return tf.io.decode_jpeg(encoded, channels=3)


def _augmented(ds: tf.data.Dataset, parse, image_size: int, mode: str, seed: int | None) -> tf.data.Dataset:
    """Parse, random crop + flip, decoding only the crop window; uint8 windows of at most
    image_size x image_size (see `preprocessing.train_jpeg`).

    Each example gets its own augmentation seed from (seed, position in the stream), so
    augmentation is reproducible and survives a restart from a checkpoint.
    """
    base = seed if seed is not None else int(tf.random.uniform([], 0, 2**31 - 1, tf.int64))

    def crop_flip(index, serialized):
        encoded, labels = parse(serialized)
        seed_pair = tf.stack([tf.constant(base, tf.int64), index])
        return preprocessing.train_jpeg(encoded, image_size, mode, seed_pair), labels

    return ds.enumerate().map(crop_flip, num_parallel_calls=AUTOTUNE)


def _eval_windows(ds: tf.data.Dataset, parse, image_size: int, mode: str) -> tf.data.Dataset:
    """Parse, decode, the deterministic eval crop (see `preprocessing.eval_window`)."""

    def window(serialized):
        encoded, labels = parse(serialized)
        return preprocessing.eval_window(decode(encoded), image_size, mode), labels

    return ds.map(window, num_parallel_calls=AUTOTUNE)


def finish(inputs: dict, image_size: int, mode: str) -> tf.Tensor:
    """A batch of `make(finish_in_step=True)` → model input: the crop windows resized
    (`preprocessing.stretch`), then the preprocessing convention. Runs on whatever device calls
    it: the training step, eval and the feature cache call it next to the model."""
    return preprocessing.preprocess(preprocessing.stretch(inputs, image_size), mode)


def make(
    dataset_dir: str,
    split: str,
    *,
    image_size: int,
    mode: str,
    batch_size: int,
    training: bool,
    seed: int | None = None,
    info: metadata.DatasetInfo | None = None,
    augment: bool | None = None,
    shuffle_buffer: int = 512,
    num_parallel_reads: int = 4,
    finish_in_step: bool = False,
    ids: bool = False,
) -> tf.data.Dataset:
    """Batches of (preprocessed images [B, S, S, 3] float32, targets dict).

    training=True: shuffled, repeated forever, full batches only, random crop/flip unless
    augment=False. training=False: one pass in file order, deterministic eval resize/crop,
    last batch kept. finish_in_step=True: batches of uint8 crop windows are left for `finish`
    to resize and scale next to the model (on the accelerator), which keeps the CPU's work per
    image close to the JPEG decode. ids=True adds `source_id` and `filename` to the targets.
    """
    augment = training if augment is None else augment
    info = info or metadata.load(dataset_dir)
    try:
        files = info.shard_paths(dataset_dir, split)
    except KeyError as e:
        raise RecordkitError(str(e.args[0])) from None
    if not files:
        raise RecordkitError(f"split {split!r} of {dataset_dir} has no shard files")
    preprocessing.check_mode(mode)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        # Shuffle file order per epoch, then mix records across shards and within a buffer.
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(num_parallel_reads, len(files)),
        num_parallel_calls=AUTOTUNE,
        deterministic=seed is not None or not training,
    )
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    parse, targets = _parse_fn(info, ids), _targets_fn(info)
    ds = _augmented(ds, parse, image_size, mode, seed) if augment else _eval_windows(ds, parse, image_size, mode)
    # uint8 windows padded to the target size: a quarter of the bytes of float32 images.
    shapes = (preprocessing.padded_shapes(image_size), tf.nest.map_structure(lambda s: s.shape, ds.element_spec[1]))
    ds = ds.padded_batch(batch_size, padded_shapes=shapes, drop_remainder=training)
    ds = ds.map(
        lambda inputs, labels: (inputs if finish_in_step else finish(inputs, image_size, mode), targets(labels)),
        num_parallel_calls=AUTOTUNE,
    )
    options = tf.data.Options()
    options.deterministic = seed is not None or not training
    return ds.with_options(options).prefetch(AUTOTUNE)
