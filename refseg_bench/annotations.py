"""Simulated reference annotations (docs/protocols.md §8): mask, box, point and scribble.

Every kind is derived from one support label, seeded by the episode, in the VRP-SAM
convention, which copies SEEM's samplers:

- ``mask``: the label's foreground; ``boxes`` also carries its tight box.
- ``box``: one filled tight box around *all* foreground pixels, ``x2``/``y2`` exclusive
  (min to max + 1), as VRP-SAM's ``get_bounding_boxes``.
- ``point``: ``k = min(20, area)`` distinct random foreground pixels (VRP-SAM test mode).
  Coordinates are integer pixel indices ``(x = column, y = row)`` stored as float32,
  not pixel centres: SAM's and SAM 2's prompt encoders add 0.5 themselves.
- ``scribble``: free-form strokes (Yu et al. 2019, "Free-Form Image Inpainting with Gated
  Convolution"), each seeded at a random foreground pixel, then ANDed with the mask.
  A few stroke pixels are also returned as ``points`` (labels 1), so point-prompt methods
  can use scribbles. Two styles (the protocol's ``annotation_style``):

  - ``harness`` (default): one preset per annotation, ``rand_curve`` or
    ``rand_curve_small`` with probability 0.5, and a stroke count uniform in
    ``1 .. min(20, area)`` (the range VRP-SAM draws from), both drawn per episode, and the
    strokes drawn in pixels of the support at its original size, so scribbles vary.
  - ``vrp-sam``: VRP-SAM's evaluation convention (``model/VRP_encoder.py``
    ``get_scribble_mask``): preset and count come from a fresh ``random.Random(321)`` on
    every call, which gives ``rand_curve`` and, for 20 or more foreground pixels, 9
    strokes; integer brush widths as its ``np.random.randint``; strokes drawn on the
    support mask nearest-resized to 512x512 (the model input), then mapped back to the
    support's size (``to_original_size``).

Stroke geometry follows the presets in pixels of the canvas drawn on. Brush widths are
drawn as real numbers in the preset range (integers in the ``vrp-sam`` style) and rendered
as the set of pixels whose centre lies within ``width / 2`` of the stroke's polyline,
which gives round joints and caps. The reference generator also shifts every stroke once
more (a leftover of its video-mask origin); we draw the strokes where they were seeded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from refseg_bench.episodes import ANNOTATION_KINDS, Annotation
from refseg_bench.protocols import ANNOTATION_STYLES

MAX_POINTS = 20  # VRP-SAM / SEEM: up to 20 clicks
MAX_STROKES = 20  # VRP-SAM: stroke count drawn in 1 .. min(20, area)
SCRIBBLE_POINTS = 20  # stroke pixels exposed as point prompts
VRPSAM_SIZE = 512  # VRP-SAM's model input: the support mask is resized to it
VRPSAM_TEST_SEED = 321  # VRP-SAM seeds its evaluation preset and count draws with this


class EmptyReferenceError(ValueError):
    """The support label has no foreground pixel to annotate; the episode cannot be built."""


@dataclass(frozen=True)
class StrokePreset:
    """One SEEM stroke preset: vertex count in ``[n_vertex[0], n_vertex[1])``, head speed
    (px per vertex) clipped to ``[0, max_speed]``, per-vertex changes of speed and angle
    (radians) uniform in ``±max_accel``, brush width (px) uniform in ``width``."""

    name: str
    n_vertex: tuple[int, int]
    max_speed: float
    max_accel: tuple[float, float]
    width: tuple[float, float]


STROKE_PRESETS = (
    StrokePreset("rand_curve", (10, 30), 20.0, (15.0, 0.5), (3.0, 10.0)),
    StrokePreset("rand_curve_small", (6, 22), 12.0, (8.0, 0.5), (2.5, 5.0)),
)


def simulate_annotation(mask: np.ndarray, kind: str, rng: np.random.Generator,
                        style: str = "harness") -> Annotation:
    """Simulate a ``kind`` annotation of the support label ``mask``.

    ``mask`` is ``(H, W)`` uint8 with 1 = foreground, 0 = background, 255 = ignore (treated
    as not foreground). ``style`` (module docstring) only changes scribbles. The result is
    a pure function of ``(mask, kind, rng state, style)`` and has the mask's size. Raises
    ``EmptyReferenceError`` when there is no foreground pixel.
    """
    if kind not in ANNOTATION_KINDS:
        raise ValueError(f"annotation kind must be one of {ANNOTATION_KINDS}, got {kind!r}")
    if style not in ANNOTATION_STYLES:
        raise ValueError(f"annotation style must be one of {ANNOTATION_STYLES}, got {style!r}")
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"support label must be (H, W), got shape {mask.shape}")
    fg = mask == 1
    if not fg.any():
        what = "every pixel is 255 (ignore)" if (mask == 255).all() else "no pixel is 1"
        raise EmptyReferenceError(
            f"support label of size {mask.shape[1]}x{mask.shape[0]} has no foreground: {what}. "
            "The episode cannot be annotated; skip it (lists should not hold such supports)."
        )
    if kind == "mask":
        return Annotation("mask", raster=fg, boxes=tight_box(fg)[None])
    if kind == "box":
        box = tight_box(fg)
        raster = np.zeros_like(fg)
        x1, y1, x2, y2 = box.astype(int)
        raster[y1:y2, x1:x2] = True
        return Annotation("box", raster=raster, boxes=box[None])
    if kind == "point":
        points = _random_pixels(fg, MAX_POINTS, rng)
        return _with_points("point", _points_raster(points, fg.shape), points)
    strokes = draw_scribble(fg, rng) if style == "harness" else draw_scribble_vrpsam(fg, rng)
    return _with_points("scribble", strokes, _random_pixels(strokes, SCRIBBLE_POINTS, rng))


def tight_box(fg: np.ndarray) -> np.ndarray:
    """``(4,)`` float32 XYXY box of the True pixels of ``fg``, ``x2``/``y2`` exclusive."""
    rows = np.flatnonzero(fg.any(axis=1))
    cols = np.flatnonzero(fg.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


def _random_pixels(fg: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``(min(k, area), 2)`` float32 ``(x, y)`` of distinct random True pixels, scan order."""
    flat = np.flatnonzero(fg)
    pick = np.sort(rng.choice(flat.size, size=min(k, flat.size), replace=False))
    ys, xs = np.divmod(flat[pick], fg.shape[1])
    return np.stack([xs, ys], axis=1).astype(np.float32)


def _points_raster(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    raster = np.zeros(shape, dtype=bool)
    raster[points[:, 1].astype(int), points[:, 0].astype(int)] = True
    return raster


def _with_points(kind: str, raster: np.ndarray, points: np.ndarray) -> Annotation:
    return Annotation(
        kind, raster=raster, points=points, point_labels=np.ones(len(points), dtype=np.int64)
    )


def draw_scribble(fg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(H, W)`` bool: random free-form strokes seeded on ``fg`` pixels, ANDed with ``fg``.

    Never empty: each stroke starts at a foreground pixel and covers that pixel.
    """
    preset = STROKE_PRESETS[int(rng.integers(len(STROKE_PRESETS)))]
    area = int(fg.sum())
    n_strokes = int(rng.integers(1, min(MAX_STROKES, area) + 1))
    return _draw_strokes(fg, preset, n_strokes, rng, integer_width=False)


def vrpsam_preset_and_count(area: int) -> tuple[StrokePreset, int]:
    """VRP-SAM's evaluation draw: preset and stroke count from two fresh
    ``random.Random(321)`` generators, as ``get_scribble_mask(training=False)`` makes
    them (``choices`` with weights 0.5 / 0.5, then ``randint(1, min(20, area))``).
    ``area`` is the foreground pixel count of the 512x512 support mask."""
    names = [p.name for p in STROKE_PRESETS]
    name = random.Random(VRPSAM_TEST_SEED).choices(names, weights=[0.5, 0.5], k=1)[0]
    count = random.Random(VRPSAM_TEST_SEED).randint(1, min(MAX_STROKES, area))
    return STROKE_PRESETS[names.index(name)], count


def draw_scribble_vrpsam(fg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(H, W)`` bool scribble in VRP-SAM's evaluation convention (module docstring):
    drawn on ``fg`` nearest-resized to 512x512, ANDed with it there, mapped back to
    ``(H, W)`` by ``to_original_size`` and ANDed with ``fg``. Stroke shapes, seeds and
    widths come from ``rng`` (VRP-SAM takes them from the global NumPy and torch RNGs).

    Raises ``EmptyReferenceError`` when the foreground vanishes at 512x512 (VRP-SAM's
    ``randint(1, 0)`` fails there too).
    """
    small = nearest_resize(fg, VRPSAM_SIZE)
    area = int(small.sum())
    if area == 0:
        raise EmptyReferenceError(
            f"support foreground of {int(fg.sum())} pixels in a {fg.shape[1]}x{fg.shape[0]} "
            f"label vanishes when nearest-resized to {VRPSAM_SIZE}x{VRPSAM_SIZE}, where "
            "VRP-SAM draws scribbles; the episode cannot be annotated in that style")
    preset, n_strokes = vrpsam_preset_and_count(area)
    drawn = _draw_strokes(small, preset, n_strokes, rng, integer_width=True)
    return to_original_size(drawn, fg.shape) & fg


def nearest_resize(plane: np.ndarray, size: int) -> np.ndarray:
    """``(size, size)`` nearest-neighbour resize of an ``(H, W)`` plane: output pixel ``d``
    reads input pixel ``floor(d * H / size)``, the rule of ``F.interpolate(mode="nearest")``
    that VRP-SAM and its adapter use (exact here: ``size`` is a power of two)."""
    h, w = plane.shape
    rows = np.arange(size) * h // size
    cols = np.arange(size) * w // size
    return plane[rows[:, None], cols[None, :]]


def to_original_size(drawn: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Map a ``(S, S)`` bool raster drawn on ``nearest_resize(plane, S)`` back to the
    plane's ``shape = (H, W)``, nearest-neighbour.

    Along an axis of length ``H``, cell ``d`` of the small raster was copied from pixel
    ``floor(d * H / S)``. Pixel ``i`` takes the cells copied from it, ``ceil(i * S / H) ..
    ceil((i + 1) * S / H) - 1``, and is set if any of them is; a pixel no cell was copied
    from (``H > S``) takes the nearest cell before it, ``ceil((i + 1) * S / H) - 1``. So
    when ``H, W >= S`` resizing the result back to ``S x S`` gives ``drawn`` exactly (a
    method that resizes the support to 512 sees VRP-SAM's scribble), and when a side is
    shorter no stroke is lost. Returns ``(H, W)`` bool.
    """
    s = drawn.shape[0]
    lo_r, hi_r = _source_cells(shape[0], s)
    lo_c, hi_c = _source_cells(shape[1], s)
    total = np.zeros((s + 1, s + 1), np.int64)
    total[1:, 1:] = drawn.astype(np.int64).cumsum(0).cumsum(1)
    hit = (total[np.ix_(hi_r + 1, hi_c + 1)] - total[np.ix_(lo_r, hi_c + 1)]
           - total[np.ix_(hi_r + 1, lo_c)] + total[np.ix_(lo_r, lo_c)])
    return hit > 0


def _source_cells(n: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel ``i < n``, the first and last of the ``s`` cells it maps to (see
    ``to_original_size``); the first is clipped to the last where no cell copies ``i``."""
    i = np.arange(n)
    hi = ((i + 1) * s + n - 1) // n - 1
    lo = np.minimum((i * s + n - 1) // n, hi)
    return lo, np.minimum(hi, s - 1)


def _draw_strokes(fg: np.ndarray, preset: StrokePreset, n_strokes: int,
                  rng: np.random.Generator, integer_width: bool) -> np.ndarray:
    """``n_strokes`` strokes of ``preset`` seeded on distinct ``fg`` pixels, ANDed with
    ``fg``; widths uniform in the preset's range, or integers as ``np.random.randint``
    draws them (VRP-SAM)."""
    seeds = _random_pixels(fg, n_strokes, rng)
    canvas = np.zeros(fg.shape, dtype=bool)
    for x, y in seeds:
        xs, ys = _stroke_vertices(float(x), float(y), preset, rng)
        if integer_width:
            width = float(rng.integers(int(preset.width[0]), int(preset.width[1])))
        else:
            width = float(rng.uniform(*preset.width))
        canvas |= _render_polyline(xs, ys, width, fg.shape)
    return canvas & fg


def _stroke_vertices(
    x: float, y: float, preset: StrokePreset, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of one stroke starting at ``(x, y)``: a head moving with random speed and
    heading, both changed by bounded random steps at every vertex (Yu et al. 2019)."""
    n = int(rng.integers(*preset.n_vertex))
    angle = rng.uniform(0.0, 2.0 * np.pi)
    speed = rng.uniform(0.0, preset.max_speed)
    d_speed = rng.uniform(-preset.max_accel[0], preset.max_accel[0], size=n)
    d_angle = rng.uniform(-preset.max_accel[1], preset.max_accel[1], size=n)
    xs, ys = [x], [y]
    for ds, da in zip(d_speed, d_angle, strict=True):
        speed = float(np.clip(speed + ds, 0.0, preset.max_speed))
        angle += da
        xs.append(xs[-1] + speed * np.sin(angle))
        ys.append(ys[-1] + speed * np.cos(angle))
    return np.asarray(xs), np.asarray(ys)


def _render_polyline(
    xs: np.ndarray, ys: np.ndarray, width: float, shape: tuple[int, int]
) -> np.ndarray:
    """``shape`` bool: pixels whose centre lies within ``width / 2`` of the polyline.

    The centre line is sampled every 0.25 px and the thickness comes from a Euclidean
    distance transform over the stroke's bounding box only (strokes are small).
    """
    h, w = shape
    radius = width / 2.0
    seg_len = np.hypot(np.diff(xs), np.diff(ys))
    n_samples = np.maximum(np.ceil(seg_len * 4).astype(int), 1)
    px = np.concatenate([np.linspace(a, b, n, endpoint=False)
                         for a, b, n in zip(xs[:-1], xs[1:], n_samples, strict=True)] + [xs[-1:]])
    py = np.concatenate([np.linspace(a, b, n, endpoint=False)
                         for a, b, n in zip(ys[:-1], ys[1:], n_samples, strict=True)] + [ys[-1:]])
    pad = int(np.ceil(radius)) + 1
    # The box is not clipped to the image, so centre-line samples just outside the image
    # still thicken the stroke inside it.
    x0, y0 = int(np.floor(px.min())) - pad, int(np.floor(py.min())) - pad
    x1, y1 = int(np.ceil(px.max())) + pad + 1, int(np.ceil(py.max())) + pad + 1
    out = np.zeros(shape, dtype=bool)
    ox0, oy0, ox1, oy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ox0 >= ox1 or oy0 >= oy1:
        return out  # the stroke lies entirely outside the image
    # Distances are exact up to rounding the centre line to the nearest pixel centre.
    line = np.ones((y1 - y0, x1 - x0), dtype=bool)
    line[np.rint(py).astype(int) - y0, np.rint(px).astype(int) - x0] = False
    near = ndimage.distance_transform_edt(line) <= radius
    out[oy0:oy1, ox0:ox1] = near[oy0 - y0:oy1 - y0, ox0 - x0:ox1 - x0]
    return out
