"""Pixel preprocessing: the convention each weight source was trained with, applied in one place.

A run records its convention's name (`models.CONVENTIONS`: the numbers are registry data) and
everyone calls `preprocess` with it:

| mode      | weights                        | operation                                    |
|-----------|--------------------------------|----------------------------------------------|
| inception | slim and Keras Inception V3    | x / 127.5 - 1  (RGB, [-1, 1])                |
| vgg       | slim vgg_16                    | x - [123.68, 116.78, 103.94]  (RGB)          |
| caffe     | Keras VGG16 imagenet           | RGB→BGR, x - [103.939, 116.779, 123.68]      |

Geometry follows the convention's family: `inception` crops the central 87.5% at eval time and
trains on random distorted crops; `vgg` (both VGG conventions) keeps at eval time what
resizing the shorter side to 256/224 of the target and cropping the centre keeps (the centre
square of side shorter x 224/256), and trains on random scale + crop.

Every crop is a window of the original resized to the target in two parts: `_fit` on the CPU
shrinks the sides longer than the target, `stretch` (inside the training or eval step, so on
the accelerator) stretches the rest. The CPU's work per image stays close to the JPEG decode.
"""

from __future__ import annotations

import tensorflow as tf

from recordkit.errors import RecordkitError
from recordkit.models import CONVENTIONS, PixelConvention

MODES = tuple(CONVENTIONS)
INCEPTION_CENTRAL_FRACTION = 0.875


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise RecordkitError(f"unknown preprocessing {mode!r}; expected one of {', '.join(MODES)}")
    return mode


def convention(mode: str) -> PixelConvention:
    return CONVENTIONS[check_mode(mode)]


def preprocess(images: tf.Tensor, mode: str) -> tf.Tensor:
    """RGB pixels in [0, 255] (uint8 or float, any leading shape) → model input (float32)."""
    c = convention(mode)
    x = tf.cast(images, tf.float32) / c.scale - tf.constant(c.mean)
    return x[..., ::-1] if c.bgr else x


def _central_window(shape: tf.Tensor, size: int, mode: str) -> tf.Tensor:
    """The eval crop as a window [top, left, height, width] of the original image.

    Inception: tf.image.central_crop's box of the central 87.5%. VGG/caffe: slim resizes the
    shorter side to 256/224 of the target and keeps the centre target x target, i.e. the centre
    square of side shorter_side * 224/256 of the original.
    """
    hw = tf.cast(shape[:2], tf.int32)
    if convention(mode).geometry == "inception":
        real = tf.cast(hw, tf.float64)
        start = tf.cast((real - real * INCEPTION_CENTRAL_FRACTION) / 2, tf.int32)
        return tf.concat([start, hw - 2 * start], 0)
    shorter = tf.cast(tf.reduce_min(hw), tf.float32)
    side = tf.maximum(tf.cast(tf.round(shorter * size / round(size * 256 / 224)), tf.int32), 1)
    return tf.concat([(hw - side) // 2, tf.stack([side, side])], 0)


def _fit(window: tf.Tensor, size: int, antialias: bool) -> dict:
    """Shrink the window on the CPU only along a side longer than `size`; `stretch` (in the
    training step, on the accelerator) does the rest of the resize. A per-image resize costs
    about as much as the JPEG decode, so doing all of it in the input pipeline halved its rate.

    Resizing is separable and the identity along a side that keeps its length, so shrinking the
    long sides here and stretching the short ones later gives the pixels of one resize of the
    window (up to rounding to uint8 after a shrink). Batch with `padded_batch` to `padded_shapes`.
    """
    extent = tf.minimum(tf.shape(window)[:2], size)
    window = tf.cond(
        tf.reduce_any(tf.shape(window)[:2] > size),
        lambda: tf.saturate_cast(tf.round(tf.image.resize(window, extent, antialias=antialias)), window.dtype),
        lambda: window,
    )
    return {"pixels": window, "extent": extent}


def padded_shapes(size: int) -> dict:
    """The `padded_batch` shapes of `_fit`'s dicts, as `stretch` expects them."""
    return {"pixels": [size, size, 3], "extent": [2]}


def _window(image: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
    return image[box[0] : box[0] + box[2], box[1] : box[1] + box[3]]


def eval_window(image: tf.Tensor, size: int, mode: str) -> dict:
    """A decoded HxWx3 image → its eval crop, fitted (antialiased where it shrinks): batch with
    `padded_shapes`, then `stretch`. Decoding whole (not `decode_and_crop_jpeg`) keeps the
    pixels `export`'s serving function computes."""
    check_mode(mode)
    return _fit(_window(image, _central_window(tf.shape(image), size, mode)), size, antialias=True)


def _stretch_one(fitted: dict, size: int) -> tf.Tensor:
    pixels = tf.image.pad_to_bounding_box(fitted["pixels"], 0, 0, size, size)
    return stretch({"pixels": pixels[None], "extent": fitted["extent"][None]}, size)[0]


def eval_image(image: tf.Tensor, size: int, mode: str) -> tf.Tensor:
    """Deterministic eval crop and resize of one HxWx3 image to size x size, float in [0, 255]:
    the same operations as the eval pipeline's `eval_window` + `stretch`."""
    return _stretch_one(eval_window(image, size, mode), size)


def _train_window(shape: tf.Tensor, size: int, mode: str, seed: tf.Tensor) -> tf.Tensor:
    """The random crop as a window [top, left, height, width] of the *original* image, so a
    JPEG can be decoded only there (`decode_and_crop_jpeg`) instead of decoded whole and cut.

    Inception: slim's distorted bounding box (10% object cover, area 5-100%, aspect 3/4-4/3).
    VGG/caffe: slim's random shorter side in [256, 512] (scaled to `size`) then a size x size
    crop, i.e. a square of size * shorter_side / drawn_side original pixels at a random offset.
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if convention(mode).geometry == "inception":
        begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seeds[0],
            min_object_covered=0.1, aspect_ratio_range=(0.75, 1.33), area_range=(0.05, 1.0),
            max_attempts=100, use_image_if_no_bounding_boxes=True,
        )
        return tf.concat([begin[:2], crop_size[:2]], 0)
    hw = tf.cast(shape[:2], tf.int32)
    drawn = tf.random.stateless_uniform(
        [], seeds[0], round(size * 256 / 224), round(size * 512 / 224) + 1, dtype=tf.int32
    )
    side = tf.minimum(size * tf.reduce_min(hw) // drawn, tf.reduce_min(hw))
    offset = tf.random.stateless_uniform([2], seeds[1], 0, tf.int32.max, dtype=tf.int32) % (hw - side + 1)
    return tf.concat([offset, tf.stack([side, side])], 0)


def _bilinear_taps(extent: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Source rows (or columns) and weights of tf.image.resize's bilinear kernel (half-pixel
    centres, clamped at the edges) from `extent` [B] valid pixels to `size` outputs."""
    extent = tf.cast(extent[:, None], tf.float32)
    source = (tf.range(size, dtype=tf.float32)[None, :] + 0.5) * extent / size - 0.5
    source = tf.clip_by_value(source, 0.0, extent - 1.0)
    low = tf.floor(source)
    high = tf.minimum(low + 1.0, extent - 1.0)
    return tf.cast(low, tf.int32), tf.cast(high, tf.int32), source - low


def stretch(windows: dict, size: int) -> tf.Tensor:
    """`padded_batch`ed `train_jpeg` or `eval_window` output → [B, size, size, 3] float32 in
    [0, 255]: each image's valid top-left extent resized to size x size. Gathers and blends only (no resize kernel),
    so it runs on any device, under XLA, and deterministically."""
    pixels = tf.cast(windows["pixels"], tf.float32)
    extent = tf.cast(windows["extent"], tf.int32)
    for axis in (2, 1):  # columns, then rows: tf.image.resize's order of blends
        low, high, weight = _bilinear_taps(extent[:, axis - 1], size)
        before = tf.gather(pixels, low, axis=axis, batch_dims=1)
        after = tf.gather(pixels, high, axis=axis, batch_dims=1)
        shape = [-1, size, 1, 1] if axis == 1 else [-1, 1, size, 1]
        pixels = before + (after - before) * tf.reshape(weight, shape)
    return pixels


def train_jpeg(encoded: tf.Tensor, size: int, mode: str, seed: tf.Tensor) -> dict:
    """JPEG bytes → random crop and horizontal flip, reproducible from a [2] int seed
    (stateless ops); decodes only the crop window. Returns `_fit`'s dict (plain bilinear,
    slim's training resize): batch it with `padded_shapes`, then `stretch`."""
    check_mode(mode)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    window = _train_window(tf.io.extract_jpeg_shape(encoded), size, mode, seeds[0])
    pixels = tf.io.decode_and_crop_jpeg(encoded, window, channels=3)
    return _fit(tf.image.stateless_random_flip_left_right(pixels, seeds[1]), size, antialias=False)


def train_image(image: tf.Tensor, size: int, mode: str, seed: tf.Tensor) -> tf.Tensor:
    """`train_jpeg` on a decoded HxWx3 image, stretched: size x size x 3 float32 in [0, 255].
    The same window (pixels may differ by JPEG chroma upsampling at the window's edges)."""
    check_mode(mode)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    window = _window(image, _train_window(tf.shape(image), size, mode, seeds[0]))
    return _stretch_one(_fit(tf.image.stateless_random_flip_left_right(window, seeds[1]), size, antialias=False), size)
