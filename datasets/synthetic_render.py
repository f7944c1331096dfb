"""Drawing for the embedded synthetic benchmark: class looks, shapes, textures, scenes.

Each of the 20 classes has a shape family, a colour family and a texture. Every pair of
classes shares at most one of the three, so no single cue separates all classes, and
every instance is jittered (size, aspect, rotation, hue, saturation, brightness, texture
period, phase and orientation) so that no pixel colour alone identifies a class.

A scene is a cluttered textured background, distractor shapes (unlabelled; some in front
of objects), and 1-3 labelled classes, sometimes with a second instance, occluding each
other in random order. Labels are 0 (background), the class id (1-20), and 255 on a band
around every object border, as in PASCAL VOC.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

SHAPES = ("ellipse", "star", "ring", "triangle", "blob",
          "cross", "crescent", "hexagon", "capsule", "diamond")
# (hue in degrees, saturation, value) of each colour family.
COLOURS = {
    "red": (0, 0.80, 0.80), "yellow": (55, 0.80, 0.90), "blue": (225, 0.75, 0.75),
    "green": (120, 0.65, 0.65), "purple": (275, 0.60, 0.65), "orange": (28, 0.85, 0.90),
    "cyan": (185, 0.70, 0.80), "pink": (320, 0.50, 0.90), "brown": (25, 0.60, 0.45),
    "grey": (0, 0.0, 0.70),
}
TEXTURES = ("stripes", "gradient", "checker", "dots", "noise")
TEXTURE_ADJ = {"stripes": "striped", "gradient": "shaded", "checker": "checkered",
               "dots": "dotted", "noise": "mottled"}


@dataclass(frozen=True)
class ClassLook:
    """What makes a class: shape family, colour family, texture and its base period (px)."""

    name: str
    shape: str
    colour: str
    texture: str
    period: float


def class_looks() -> list[ClassLook]:
    """The 20 classes (id = index + 1). Class i and i + 10 share a shape, never a fold."""
    colours = list(COLOURS)
    looks = []
    for i in range(20):
        shape = SHAPES[i % 10]
        colour = colours[i % 10] if i < 10 else colours[(i + 3) % 10]
        texture = TEXTURES[i % 5] if i < 10 else TEXTURES[(i + 2) % 5]
        period = 7.0 + 2.0 * ((i * 7) % 4)
        name = f"{colour}_{TEXTURE_ADJ[texture]}_{shape}"
        looks.append(ClassLook(name, shape, colour, texture, period))
    return looks


@dataclass(frozen=True)
class Placement:
    """Where one shape lies: centre (px), semi-axes (px), rotation (rad), shape parameters."""

    shape: str
    cx: float
    cy: float
    rx: float
    ry: float
    angle: float
    params: tuple[float, ...]

    def box(self, h: int, w: int) -> tuple[int, int, int, int]:
        r = max(self.rx, self.ry) + 1
        return (max(int(self.cy - r), 0), min(int(self.cy + r) + 2, h),
                max(int(self.cx - r), 0), min(int(self.cx + r) + 2, w))


def random_placement(shape: str, h: int, w: int, scale: tuple[float, float],
                     rng: np.random.Generator) -> Placement:
    """A random placement of ``shape`` whose centre lies inside the image; its size is
    ``scale`` (fractions of the short side) and its aspect ratio 0.6-1."""
    r = rng.uniform(*scale) * min(h, w)
    aspect = rng.uniform(0.6, 1.0)
    params = {
        "star": (float(rng.integers(5, 7)), rng.uniform(0.4, 0.55)),
        "ring": (rng.uniform(0.5, 0.65),),
        "blob": tuple(rng.uniform(0.0, 0.15, 3)) + tuple(rng.uniform(0, 2 * np.pi, 3)),
        "cross": (rng.uniform(0.25, 0.38),),
        "crescent": (rng.uniform(0.35, 0.55),),
    }.get(shape, ())
    return Placement(shape, rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h,
                     r, r * aspect, rng.uniform(0, 2 * np.pi), params)


def _polygon(rad: np.ndarray, theta: np.ndarray, n: int) -> np.ndarray:
    sector = np.mod(theta, 2 * np.pi / n) - np.pi / n
    return rad * np.cos(sector) <= np.cos(np.pi / n)


def shape_mask(p: Placement, h: int, w: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Boolean mask of the shape over its clipped bounding box, and that box (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = p.box(h, w)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx + np.float32(0.5 - p.cx), yy + np.float32(0.5 - p.cy)
    c, s = np.float32(np.cos(p.angle)), np.float32(np.sin(p.angle))
    u, v = (dx * c + dy * s) / np.float32(p.rx), (-dx * s + dy * c) / np.float32(p.ry)
    rad, theta = np.hypot(u, v), np.arctan2(v, u)
    k = p.shape
    if k == "ellipse":
        m = rad <= 1
    elif k == "star":
        n, inner = p.params
        m = rad <= inner + (1 - inner) * ((1 + np.cos(n * theta)) / 2) ** 1.5
    elif k == "ring":
        m = (rad <= 1) & (rad >= p.params[0])
    elif k == "blob":
        amp, phase = np.asarray(p.params[:3]), np.asarray(p.params[3:])
        wobble = sum(a * np.cos((j + 2) * theta + f)
                     for j, (a, f) in enumerate(zip(amp, phase, strict=True)))
        m = rad <= (1 + wobble) / (1 + amp.sum())
    elif k == "cross":
        t = p.params[0]
        m = ((np.abs(u) <= t) & (np.abs(v) <= 1)) | ((np.abs(v) <= t) & (np.abs(u) <= 1))
    elif k == "crescent":
        m = (rad <= 1) & (np.hypot(u - p.params[0], v) > 0.85)
    elif k == "capsule":
        m = np.hypot(np.maximum(np.abs(u) - 0.6, 0), v / 0.4) <= 1
    else:
        m = _polygon(rad, theta, {"triangle": 3, "hexagon": 6, "diamond": 4}[k])
    return m, (y0, y1, x0, x1)


def smooth_noise(h: int, w: int, cell: float, rng: np.random.Generator) -> np.ndarray:
    """``(h, w)`` float32 in [0, 1]: uniform noise on a grid of ``cell`` px, bicubically
    upsampled."""
    gh, gw = max(int(h / cell) + 2, 2), max(int(w / cell) + 2, 2)
    grid = Image.fromarray(rng.random((gh, gw), dtype=np.float32), mode="F")
    up = np.asarray(grid.resize((w, h), Image.BICUBIC), dtype=np.float32)
    return np.clip(up, 0.0, 1.0)


def texture(kind: str, yy: np.ndarray, xx: np.ndarray, period: float,
            rng: np.random.Generator) -> np.ndarray:
    """Texture value in [0, 1] at pixel coordinates ``(yy, xx)`` (any shape), with random
    orientation and phase; ``period`` in px."""
    a = rng.uniform(0, np.pi)
    c, s = np.float32(np.cos(a)), np.float32(np.sin(a))
    u = xx * c + yy * s + np.float32(rng.uniform(0, period))
    v = -xx * s + yy * c + np.float32(rng.uniform(0, period))
    f = np.float32(2 * np.pi / period)
    if kind == "stripes":
        return 0.5 + 0.5 * np.tanh(3 * np.sin(f * u))
    if kind == "checker":
        return 0.5 + 0.5 * np.tanh(3 * np.sin(f * u) * np.sin(f * v))
    if kind == "dots":
        p = np.float32(period)
        du, dv = np.mod(u, p) - p / 2, np.mod(v, p) - p / 2
        return (np.hypot(du, dv) < 0.3 * p).astype(np.float32)
    if kind == "noise":
        noise = smooth_noise(yy.shape[0], yy.shape[1], period / 2, rng)
        return np.clip((noise - 0.5) * 2.5 + 0.5, 0, 1)
    span = np.float32(max(float(u.max() - u.min()), 1.0))  # gradient across the region
    return (u - u.min()) / span


def hsv_rgb(h: float, s: float, v: float) -> np.ndarray:
    """``(3,)`` float32 RGB in [0, 1] from hue in degrees, saturation and value."""
    return np.asarray(colorsys.hsv_to_rgb((h % 360) / 360, np.clip(s, 0, 1), np.clip(v, 0, 1)),
                      dtype=np.float32)


def class_tones(look: ClassLook, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The two jittered RGB tones a class instance mixes: its colour and a darker shade."""
    hue, sat, val = COLOURS[look.colour]
    hue += rng.normal(0, 10)
    sat *= rng.uniform(0.75, 1.15)
    val *= rng.uniform(0.75, 1.1)
    dark = rng.uniform(0.35, 0.6)
    return hsv_rgb(hue, sat, val), hsv_rgb(hue + rng.normal(0, 10), sat * 0.8, val * dark)


def random_tones(rng: np.random.Generator, max_sat: float) -> tuple[np.ndarray, np.ndarray]:
    """Two random RGB tones for clutter (any hue, saturation up to ``max_sat``)."""
    hue = rng.uniform(0, 360)
    return (hsv_rgb(hue, rng.uniform(0, max_sat), rng.uniform(0.3, 0.95)),
            hsv_rgb(hue + rng.normal(0, 40), rng.uniform(0, max_sat), rng.uniform(0.15, 0.8)))


def paint(img: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], kind: str,
          period: float, tones: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> None:
    """Fill ``mask`` (inside ``box`` of ``img``, float RGB) with a two-tone texture under a
    random linear illumination ramp."""
    y0, y1, x0, x1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    t = texture(kind, yy, xx, period, rng)[..., None]
    colour = (1 - t) * tones[0] + t * tones[1]
    g = rng.normal(0, 0.002, 2).astype(np.float32)
    light = 1 + (yy - yy.mean()) * g[0] + (xx - xx.mean()) * g[1]
    region = img[y0:y1, x0:x1]
    region[mask] = (colour * light[..., None])[mask]


# --- scenes ---------------------------------------------------------------------------
IMAGE_SIDE = (160, 320)  # each side drawn independently, inclusive (px)
OBJECT_SCALE = (0.15, 0.33)  # object semi-axis as a fraction of the short side
CLUTTER_SCALE = (0.04, 0.14)
SECOND_INSTANCE_P = 0.2
BAND_RADIUS = 1  # the 255 band is about 2 * (BAND_RADIUS + 1) px wide, like VOC's


def min_class_pixels(h: int, w: int) -> int:
    """The 2048-pixel rule (docs/protocols.md §4.1) scaled from a 500x375 PASCAL image to
    ``h x w``: a class counts as present in an image's lists from this many pixels."""
    return int(np.ceil(2048 * h * w / (500 * 375)))


def boundary_band(label: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels within ``BAND_RADIUS`` of a change of label value."""
    edge = ndimage.maximum_filter(label, 3) != ndimage.minimum_filter(label, 3)
    return ndimage.binary_dilation(edge, iterations=BAND_RADIUS)


def background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """``(h, w, 3)`` float RGB: a smooth random colour field under a low-contrast texture."""
    gh, gw = rng.integers(2, 6, size=2)
    grid = np.stack([hsv_rgb(rng.uniform(0, 360), rng.uniform(0, 0.5), rng.uniform(0.25, 0.9))
                     for _ in range(gh * gw)]).reshape(gh, gw, 3)
    field = np.stack([np.asarray(Image.fromarray(grid[..., i], mode="F").resize(
        (w, h), Image.BICUBIC)) for i in range(3)], axis=-1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = TEXTURES[int(rng.integers(len(TEXTURES)))]
    tex = texture(kind, yy, xx, rng.uniform(4, 16), rng)
    contrast = np.float32(rng.uniform(0.05, 0.35))
    return np.clip(field, 0, 1) * (1 - contrast * tex[..., None])


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: np.ndarray  # (H, W) uint8: 0 background, 1..20 classes, 255 boundary band


def _compose_label(h: int, w: int, layers: list[tuple[Placement, int]]) -> np.ndarray:
    """Label of shapes painted back to front (value 0 for unlabelled clutter), band added."""
    label = np.zeros((h, w), dtype=np.uint8)
    for p, value in layers:
        m, (y0, y1, x0, x1) = shape_mask(p, h, w)
        label[y0:y1, x0:x1][m] = value
    label[boundary_band(label)] = 255
    return label


def _layout(class_ids: list[int], looks: list[ClassLook], h: int, w: int,
            clutter: tuple[list[Placement], list[Placement]], rng: np.random.Generator
            ) -> tuple[list[tuple[Placement, int]], np.ndarray]:
    """Back-to-front layers and label. Placements are redrawn (up to 10 times) until every
    class passes the scaled 2048-pixel rule despite occlusion and the image border."""
    ids = [c for c in class_ids for _ in range(1 + int(rng.random() < SECOND_INSTANCE_P))]
    ids = [ids[i] for i in rng.permutation(len(ids))]
    back, front = clutter
    need = min_class_pixels(h, w)
    for _ in range(10):
        objs = [(random_placement(looks[c - 1].shape, h, w, OBJECT_SCALE, rng), c) for c in ids]
        layers = [(p, 0) for p in back] + objs + [(p, 0) for p in front]
        label = _compose_label(h, w, layers)
        if all(np.count_nonzero(label == c) >= need for c in class_ids):
            break
    return layers, label


def render_scene(class_ids: list[int], looks: list[ClassLook],
                 rng: np.random.Generator) -> Scene:
    """One image with the classes ``class_ids`` (distinct ids, 1-based) in clutter."""
    h, w = (int(v) for v in rng.integers(IMAGE_SIDE[0], IMAGE_SIDE[1] + 1, size=2))
    clutter: tuple[list[Placement], list[Placement]] = ([], [])
    for _ in range(int(rng.integers(2, 7))):
        p = random_placement(SHAPES[int(rng.integers(len(SHAPES)))], h, w, CLUTTER_SCALE, rng)
        clutter[int(rng.random() < 0.25)].append(p)  # a quarter occlude objects
    layers, label = _layout(class_ids, looks, h, w, clutter, rng)
    img = background(h, w, rng)
    for p, c in layers:
        m, box = shape_mask(p, h, w)
        if c:
            look = looks[c - 1]
            kind, period, tones = look.texture, look.period * rng.uniform(0.75, 1.3), \
                class_tones(look, rng)
        else:
            kind, period = TEXTURES[int(rng.integers(len(TEXTURES)))], rng.uniform(4, 14)
            tones = random_tones(rng, max_sat=0.9)
        paint(img, m, box, kind, period, tones, rng)
    # Soft edges and sensor noise, so boundary pixels are mixed as in photographs.
    img = ndimage.gaussian_filter(img, sigma=(0.7, 0.7, 0))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(0.015)
    return Scene(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), label)
