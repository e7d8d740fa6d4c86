"""Image bytes and small folder datasets for the tests, made on the fly (no third-party images)."""

from __future__ import annotations

import io
import pathlib

import numpy as np
from PIL import Image


def pattern(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A noisy gradient: random enough that JPEG corruption shows, smooth enough to compress."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    base = (x + y) / 2 + rng.normal(0, 20, size=(height, width, 3)) + rng.integers(0, 100, size=3)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    return image if mode == "RGB" else image.convert(mode)


def scene(size: int = 128, seed: int = 0) -> Image.Image:
    """A picture with structure at every scale (coarse random shapes, finer texture), unlike
    `pattern`: two seeds give images no perceptual hash confuses, as two photos would."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), "RGB").resize((size, size), Image.Resampling.BICUBIC)
    fine = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "RGB").resize((size, size), Image.Resampling.BICUBIC)
    pixels = 0.75 * np.asarray(coarse, np.float64) + 0.25 * np.asarray(fine, np.float64)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def near_copies(image: Image.Image) -> dict[str, bytes]:
    """The near copies of bench_near_duplicates: re-saved at quality 60, resized to 90 %,
    cropped by 4 % per side."""
    width, height = image.size
    dx, dy = round(width * 0.04), round(height * 0.04)
    return {
        "q60": encode(image, quality=60),
        "resize90": encode(image.resize((round(width * 0.9), round(height * 0.9)), Image.Resampling.BILINEAR), quality=95),
        "crop4": encode(image.crop((dx, dy, width - dx, height - dy)), quality=95),
    }


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def jpeg(width: int = 48, height: int = 32, seed: int = 0, **kwargs) -> bytes:
    return encode(pattern(width, height, seed), "JPEG", quality=90, **kwargs)


def exif_rotated_jpeg(width: int = 48, height: int = 32, orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(pattern(width, height), "JPEG", exif=exif.tobytes())


def write_folder_dataset(root: pathlib.Path, per_class: dict[str, dict[str, int]], size=(48, 32)) -> None:
    """root/<split>/<class>/<class>_<i>.jpg with distinct content for every file."""
    seed = 0
    for split, classes in per_class.items():
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                seed += 1
                (folder / f"{name}_{i}.jpg").write_bytes(jpeg(*size, seed=seed))


def garbage_in_scan(data: bytes) -> bytes:
    """A JPEG whose entropy-coded data is overwritten with junk (the end marker kept)."""
    scan = data.index(b"\xff\xda") + 60
    return data[:scan] + bytes(range(256)) * 3 + data[scan + 768 :]
