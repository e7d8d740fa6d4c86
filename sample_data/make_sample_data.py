"""Regenerate sample_data/: a tiny, deterministic folder-per-class dataset of our own.

Three classes a small model can learn in a few steps (the colour and the pattern both say
the class), 10 train + 4 validation images each, 64×64 JPEG. Run from anywhere:
    python sample_data/make_sample_data.py
"""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image, ImageDraw

ROOT = pathlib.Path(__file__).resolve().parent
SIZE = 64
PER_SPLIT = {"train": 10, "validation": 4}


def _draw(name: str, rng: np.random.Generator) -> Image.Image:
    jitter = rng.integers(-25, 25, size=3)
    base = {"desert": (200, 170, 110), "forest": (40, 110, 50), "sea": (30, 70, 160)}[name]
    image = Image.new("RGB", (SIZE, SIZE), tuple(int(c) for c in np.clip(np.add(base, jitter), 0, 255)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(0, SIZE, size=2))
        if name == "desert":  # dunes: light arcs
            draw.arc((x - 20, y - 6, x + 20, y + 6), 180, 360, fill=(235, 215, 160), width=2)
        elif name == "forest":  # trees: dark dots
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=(15, 60, 20))
        else:  # waves: horizontal strokes
            draw.line((x - 12, y, x + 12, y), fill=(120, 170, 230), width=2)
    noise = rng.normal(0, 6, size=(SIZE, SIZE, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def main() -> None:
    for split, count in PER_SPLIT.items():
        for class_index, name in enumerate(("desert", "forest", "sea")):
            folder = ROOT / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rng = np.random.default_rng([class_index, i, split == "train"])
                _draw(name, rng).save(folder / f"{name}_{i:02d}.jpg", quality=90)


if __name__ == "__main__":
    main()
