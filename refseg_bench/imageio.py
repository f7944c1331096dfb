"""Reading images and label PNGs with errors that name the file and say what to do.

Label encodings seen in the wild differ (docs/protocols.md §3): palette
PNGs whose indices are class ids, 0/1 and 0/255 greyscale, anti-aliased 0..255 masks,
RGB and RGBA masks. ``read_label`` returns the raw index/value plane; binarising is the
dataset's decision, because the threshold is part of its protocol.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from refseg_bench.datasets.base import DatasetError


def _open(path: Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file: {path}. Check the dataset root and layout "
                           "(`refseg-bench data inspect <dataset>` prints the expected layout).")
    try:
        img = Image.open(path)
        img.load()  # decode now so truncated files fail here, with the file named
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DatasetError(f"cannot decode {path}: {err}. The file is corrupt or not an "
                           "image; re-extract it from the dataset archive.") from err
    return img


def read_image(path: str | Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB."""
    return np.asarray(_open(path).convert("RGB"), dtype=np.uint8)


def read_label(path: str | Path) -> np.ndarray:
    """``(H, W)`` uint8: palette indices for ``P`` images, channel 0 for RGB(A), the plane
    itself for greyscale."""
    img = _open(path)
    if img.mode in ("P", "L"):
        arr = np.asarray(img)
    elif img.mode in ("1", "I", "I;16", "F"):
        arr = np.asarray(img.convert("L")) if img.mode != "1" else np.asarray(img).astype(np.uint8)
    else:
        arr = np.asarray(img.convert("RGBA"))[..., 0]
    return np.ascontiguousarray(arr, dtype=np.uint8)


def check_same_size(image: np.ndarray, label: np.ndarray, what: str) -> None:
    if image.shape[:2] != label.shape[:2]:
        raise DatasetError(
            f"{what}: image is {image.shape[1]}x{image.shape[0]} but its mask is "
            f"{label.shape[1]}x{label.shape[0]} (W x H); the pair does not belong together."
        )


def write_label(path: str | Path, label: np.ndarray) -> None:
    """Write a ``(H, W)`` uint8 label plane as a lossless greyscale PNG."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(label, dtype=np.uint8), mode="L").save(path)
