"""Image bytes in, checked RGB JPEG bytes out: pure functions, no Beam, no TensorFlow.

The format is sniffed from the content, never trusted from the file extension (BMPs named
.jpg and PNGs disguised as JPEG are common). A JPEG that is already RGB, upright and not being
resized passes through byte for byte after validation; anything else is decoded, normalised
(EXIF rotation, CMYK/grayscale/palette/alpha to RGB) and re-encoded.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from recordkit import near_duplicates

# MPO is the multi-picture JPEG of phones and stereo cameras: the first frame is kept.
SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP")
# Pillow itself refuses images above twice its MAX_IMAGE_PIXELS before we can look at them.
PILLOW_HARD_LIMIT = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)
RESIZE_MODES = ("stretch", "crop")
_EXIF_ORIENTATION = 0x0112


class BadImage(ValueError):
    """The bytes are not a usable image; the message is the reason that goes in the report."""


@dataclass(frozen=True)
class ImageOptions:
    """How images are normalised; `size` is (height, width) or None to keep the source size.

    resize_mode "stretch" resizes to exactly `size` (Keras' default); "crop" scales the
    shorter side to fit and centre-crops the rest, keeping the aspect ratio.
    """

    size: tuple[int, int] | None = None
    resize_mode: str = "stretch"
    jpeg_quality: int = 95
    max_pixels: int = Image.MAX_IMAGE_PIXELS or 89_478_485
    fingerprint: bool = False  # take near_duplicates.fingerprint (about 0.1-0.2 ms); off: ""

    def __post_init__(self):
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {self.jpeg_quality}")
        if not 1 <= self.max_pixels <= PILLOW_HARD_LIMIT:
            raise ValueError(f"max pixels must be in 1..{PILLOW_HARD_LIMIT} (Pillow's own limit)")
        if self.size is not None and min(self.size) < 1:
            raise ValueError(f"image size must be positive, got {self.size}")


@dataclass(frozen=True)
class EncodedImage:
    jpeg: bytes
    height: int
    width: int
    fingerprint: str  # near_duplicates.fingerprint of the pixels stored, or "" when not asked for


def parse_size(text: str) -> tuple[int, int]:
    """'299' → (299, 299); '320x240' (W×H, as people write screen sizes) → (240, 320)."""
    parts = text.lower().split("x")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"image size must be N or WxH, got {text!r}") from None
    if len(numbers) == 1:
        numbers = numbers * 2
    if len(numbers) != 2 or min(numbers) < 1:
        raise ValueError(f"image size must be N or WxH with positive numbers, got {text!r}")
    width, height = numbers
    return height, width


def to_rgb_jpeg(data: bytes, options: ImageOptions) -> EncodedImage:
    """Validate `data` and return it as an RGB JPEG, or raise BadImage with the reason."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    image = _open(data, options.max_pixels)
    try:
        return _convert(data, image, options)
    except BadImage:
        raise
    except Exception as e:  # Pillow reports damaged data with many exception types
        raise BadImage(f"corrupt {image.format}: {e}") from None


def _convert(data: bytes, image: Image.Image, options: ImageOptions) -> EncodedImage:
    upright = image.getexif().get(_EXIF_ORIENTATION, 1) == 1
    if image.format == "JPEG" and image.mode == "RGB" and upright and options.size is None:
        width, height = image.size
        jpeg = _validate_jpeg(data, image, options.fingerprint)
        return EncodedImage(jpeg, height, width, _fingerprint(image, options))
    return _reencode(image, options)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        # Pillow refuses past twice its own limit and names only the pixel count; the report
        # states our limit, as for smaller bombs.
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(found.group(1)):,} pixels" if found else "the image"
        raise BadImage(f"decompression bomb: {size} exceeds the limit of {max_pixels:,} pixels") from None
    except Exception:
        raise BadImage("not an image (unrecognised content)") from None
    if image.format not in SUPPORTED_FORMATS:
        raise BadImage(f"unsupported format {image.format} (supported: {', '.join(SUPPORTED_FORMATS)})")
    if image.width * image.height > max_pixels:
        raise BadImage(
            f"decompression bomb: {image.width}x{image.height} = {image.width * image.height:,} pixels "
            f"exceeds the limit of {max_pixels:,} pixels"
        )
    return image


def _validate_jpeg(data: bytes, image: Image.Image, fingerprint: bool) -> bytes:
    """The JPEG's bytes, checked by a decode at 1/8 scale (not below 32 pixels when a
    fingerprint is taken of it): every entropy-coded byte is still read (truncation and most
    corruption fail), but the costly inverse DCT and colour conversion are mostly skipped (the
    small decode stays in `image`, for the fingerprint).
    Bytes after the end-of-image marker (the video phones append to Motion Photos) are not
    part of the image and are left out."""
    if not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        end = jpeg_end(data)
        if end is None:
            raise BadImage("truncated JPEG (no end-of-image marker)")
        data = data[:end]
    # Not below the fingerprint's thumbnail: a 128-pixel image decoded at 1/8 would give 16.
    side = near_duplicates.THUMBNAIL if fingerprint else 1
    image.draft("RGB", (min(image.width, max(side, image.width // 8)), min(image.height, max(side, image.height // 8))))
    image.load()
    return data


def jpeg_end(data: bytes) -> int | None:
    """Where the JPEG's end-of-image marker ends, found by walking its segments (so an EOI
    inside an embedded thumbnail or comment does not count); None if the data stops first."""
    i = 2 if data.startswith(b"\xff\xd8") else len(data)
    while i + 1 < len(data):
        if data[i] != 0xFF:  # stray bytes between segments: libjpeg skips them, so do we
            i = data.find(b"\xff", i)
            if i < 0:
                return None
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0xD9:
            return i + 2
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
            if marker == 0xDA:  # entropy-coded data runs to the next marker that is not FF00 or RSTn
                i = _next_marker(data, i)
    return None


def _next_marker(data: bytes, i: int) -> int:
    while True:
        i = data.find(b"\xff", i)
        if i < 0 or i + 1 >= len(data):
            return len(data)
        follower = data[i + 1]
        if follower == 0x00 or 0xD0 <= follower <= 0xD7:
            i += 2
        elif follower == 0xFF:
            i += 1
        else:
            return i


def _reencode(image: Image.Image, options: ImageOptions) -> EncodedImage:
    if options.size is not None and image.format == "JPEG":
        image.draft("RGB", _cover_size(image.size, options))
    image.load()
    image = _rgb(ImageOps.exif_transpose(image))
    if options.size is not None:
        image = _resize(image, options)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=options.jpeg_quality)
    return EncodedImage(out.getvalue(), image.height, image.width, _fingerprint(image, options))


def _fingerprint(image: Image.Image, options: ImageOptions) -> str:
    return near_duplicates.fingerprint(image) if options.fingerprint else ""


def _rgb(image: Image.Image) -> Image.Image:
    """Transparent pixels become white (not black, which is what dropping alpha gives)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith(("I", "F")):
        # 16-bit samples scale by the bit depth, not by the image's own maximum: a dark image
        # must stay dark. Float samples are taken as 0..255.
        scale = 1 / 257 if image.mode.startswith("I") else 1.0
        pixels = np.asarray(image, dtype=np.float64) * scale
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
    return image if image.mode == "RGB" else image.convert("RGB")


def _cover_size(source: tuple[int, int], options: ImageOptions) -> tuple[int, int]:
    """The size (w, h) to scale `source` to before cropping/stretching to options.size."""
    height, width = options.size
    if options.resize_mode == "stretch":
        return width, height
    scale = max(width / source[0], height / source[1])
    return max(width, round(source[0] * scale)), max(height, round(source[1] * scale))


def _resize(image: Image.Image, options: ImageOptions) -> Image.Image:
    height, width = options.size
    cover = _cover_size(image.size, options)
    image = image.resize(cover, Image.Resampling.BILINEAR)
    left, top = (cover[0] - width) // 2, (cover[1] - height) // 2
    return image.crop((left, top, left + width, top + height)) if cover != (width, height) else image
