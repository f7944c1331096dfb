"""Stand-in for OpenCV (not a dependency of this project) in the official loaders' runs.

Covers what their sampling path calls: ``imread`` (colour as BGR, greyscale labels),
``cvtColor`` BGR<->RGB, and ``ocl`` / ``setNumThreads``. Pixels decide nothing in the draw
order except the classes present in a label, which a greyscale PNG gives identically here.
"""

from types import SimpleNamespace

import numpy as np
from PIL import Image

IMREAD_GRAYSCALE, IMREAD_COLOR = 0, 1
COLOR_BGR2RGB = COLOR_RGB2BGR = 4
ocl = SimpleNamespace(setUseOpenCL=lambda flag: None)


def setNumThreads(n):  # noqa: N802 - OpenCV's name
    return None


def imread(path, flag=IMREAD_COLOR):
    try:
        img = Image.open(path)
    except FileNotFoundError:
        return None  # as cv2.imread
    if flag == IMREAD_GRAYSCALE:
        if img.mode != "L":
            raise NotImplementedError(f"shim reads greyscale labels only, got {img.mode}")
        return np.array(img)
    return np.ascontiguousarray(np.array(img.convert("RGB"))[..., ::-1])


def cvtColor(img, code):  # noqa: N802 - OpenCV's name
    if code != COLOR_BGR2RGB:
        raise NotImplementedError(f"shim converts BGR<->RGB only, got {code}")
    return np.ascontiguousarray(img[..., ::-1])
