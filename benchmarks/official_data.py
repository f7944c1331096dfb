"""Generated datasets that both an official loop and ``refseg-bench run`` read from disk.

Images are stored losslessly (PNG bytes, under the ``.jpg`` names the layouts use; every
reader here sniffs the format from the bytes), so OpenCV and Pillow decode the same pixels
and the comparison is about the loops, not about JPEG decoders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# PerSeg's annotations are palette PNGs: index 1 shows as (128, 0, 0), the VOC colour.
_PALETTE = [0, 0, 0, 128, 0, 0] + [0, 0, 0] * 254


def _object_scene(h: int, w: int, colour: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A cluttered background and one textured ellipse of ``colour``: image and mask."""
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.3, 0.7, 2) * (h, w)
    ry, rx = rng.uniform(0.15, 0.3, 2) * (h, w)
    angle = rng.uniform(0, np.pi)
    u = ((yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)) / ry
    v = (-(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)) / rx
    mask = u ** 2 + v ** 2 < 1
    img = rng.integers(0, 110, (h, w, 3)).astype(np.int16)
    for _ in range(int(rng.integers(2, 5))):  # clutter: a few grey rectangles
        y0, x0 = rng.integers(0, h - 10), rng.integers(0, w - 10)
        img[y0:y0 + int(rng.integers(8, h // 3)), x0:x0 + int(rng.integers(8, w // 3))] += 40
    stripes = (np.sin(xx / 3.0 + yy / 5.0) * 25)[..., None]
    img[mask] = (colour + stripes + rng.normal(0, 12, (h, w, 3)))[mask]
    return np.clip(img, 0, 255).astype(np.uint8), mask


def object_name(k: int) -> str:
    """``obj_a``, ``obj_b``, ..., ``obj_ba``...: letters only, so that no name holds the
    ``00`` that ``eval_miou.py`` looks for in paths to skip the reference."""
    letters = ""
    while True:
        letters = chr(ord("a") + k % 26) + letters
        k //= 26
        if k == 0:
            return f"obj_{letters}"


def write_perseg(root: Path, n_objects: int, n_images: int, side: int, seed: int = 0, *,
                 square: bool = False, palette: bool = True) -> None:
    """``Images/obj_<k>/<NN>.jpg`` and ``Annotations/obj_<k>/<NN>.png``, ``n_images`` per
    object (``00`` is the reference), sides around ``side`` px (``square``: exactly
    ``side x side``). Annotations are 0/1 palette PNGs as PerSeg's (index 1 shows as the VOC
    colour (128, 0, 0)), or with ``palette=False`` 0/1 greyscale (the value 1 whichever
    library reads them)."""
    rng = np.random.default_rng(seed)
    for k in range(n_objects):
        colour = rng.uniform(120, 255, 3)
        name = object_name(k)
        for d in ("Images", "Annotations"):
            (root / d / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_images):
            h, w = (side, side) if square else \
                (int(side * rng.uniform(0.75, 1.0)), int(side * rng.uniform(1.0, 1.33)))
            image, mask = _object_scene(h, w, colour, rng)
            Image.fromarray(image).save(root / "Images" / name / f"{i:02d}.jpg", format="PNG")
            write_mask(root / "Annotations" / name / f"{i:02d}.png", mask, palette)


def write_mask(path: Path, mask: np.ndarray, palette: bool = True) -> None:
    """A 0/1 mask PNG: palette (index 1 = (128, 0, 0), PerSeg's) or greyscale."""
    label = Image.fromarray(mask.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        label.putpalette(_PALETTE)
    label.save(path)
