"""Weight-free baselines: ``oracle`` and ``empty`` (end-to-end scorer checks) and ``proto``.

``proto`` is prototype matching on colour and texture features (``proto_features``):
foreground and background prototypes are k-means centroids of support-pixel features and
every query pixel is scored by a soft nearest-prototype rule. Which side of the support
annotation is certain depends on its kind, and the uncertain side is cleaned with the
certain one:

- ``mask``: foreground = the mask, background = every other valid pixel; both certain.
- ``box``: background = outside the box (certain); the box also holds background, so the
  foreground prototypes are recomputed from the box pixels nearer to the box's own
  centroids than to the background's (one GrabCut-like step).
- ``point`` / ``scribble``: foreground = the strokes, or a square of side
  ``2 * point_radius + 1`` px centred on each click (certain but sparse); background =
  pixels more than ``weak_margin`` px (along x or y) from them, which still holds
  unannotated object, so a background centroid within the foreground's spread is dropped.

At least one prototype of each side always survives. Features are standardised with the
statistics of all support and query pixels; images are downscaled to ``max_side`` for
speed and the probability map is upsampled back to the query's size. A query pixel's
foreground probability is ``sigmoid((d_bg - d_fg) / tau)``, with ``d`` the squared
distance to the nearest prototype of each side and ``tau`` the median ``d_fg`` of the
foreground samples; it is then box-filtered over ``smooth`` working pixels.

Defaults (one foreground prototype, i.e. masked average pooling as in PANet/PFENet, and ten
background prototypes; 160 px working size) were picked on the synthetic benchmark's val
episodes (``benchmarks/baselines_synthetic.py``); it is a baseline, not a tuned method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from refseg_bench.episodes import Episode, EpisodeBatch
from refseg_bench.methods.base import Method
from refseg_bench.methods.proto_features import FEATURE_GROUPS, pixel_features


class Oracle(Method):
    """Returns the query label (label 255 becomes 0): must score 100. The only method that
    reads labels from the dataset, by definition."""

    name = "oracle"

    def setup(self, device, dataset) -> None:
        super().setup(device, dataset)
        self.dataset = dataset

    def predict(self, batch: EpisodeBatch) -> list[torch.Tensor]:
        if getattr(self, "dataset", None) is None:
            raise RuntimeError("oracle.predict called before setup(device, dataset): the "
                               "oracle reads query labels from the dataset given to setup.")
        out = []
        for ep in batch:
            label = self.dataset.load_mask(ep.spec.query, ep.spec.class_id)
            out.append(torch.from_numpy(label == 1))  # a bool mask: the scorer's fast path
        return out

    def describe(self) -> dict:
        return {"model": "oracle (returns the query label)", "weights": "none"}


class Empty(Method):
    """Predicts no foreground anywhere: must score 0."""

    name = "empty"

    def predict(self, batch: EpisodeBatch) -> list[torch.Tensor]:
        return [torch.zeros(ep.query_size, dtype=torch.bool) for ep in batch]

    def describe(self) -> dict:
        return {"model": "empty (predicts no foreground)", "weights": "none"}


def sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` squared Euclidean distances between ``(N, C)`` and ``(K, C)`` (one matrix
    product; faster than ``torch.cdist`` for few centroids)."""
    return ((x * x).sum(1, keepdim=True) - 2 * x @ c.T + (c * c).sum(1)).clamp_min(0)


def kmeans(x: torch.Tensor, k: int, iters: int = 8, max_samples: int = 2048) -> torch.Tensor:
    """``(k', C)`` centroids of ``(N, C)`` samples, ``k' = min(k, N)``. Deterministic:
    evenly strided subsample, farthest-point initialisation from the sample nearest the
    mean, then Lloyd iterations (an emptied cluster keeps its centroid)."""
    if x.shape[0] > max_samples:
        x = x[torch.linspace(0, x.shape[0] - 1, max_samples, device=x.device).long()]
    k = min(k, x.shape[0])
    first = sq_dist(x, x.mean(0, keepdim=True))[:, 0].argmin()
    centres = [x[first]]
    nearest = sq_dist(x, centres[0][None])[:, 0]
    for _ in range(k - 1):
        centres.append(x[nearest.argmax()])
        nearest = torch.minimum(nearest, sq_dist(x, centres[-1][None])[:, 0])
    c = torch.stack(centres)
    for _ in range(iters):
        assign = sq_dist(x, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=c.shape[0]).to(x.dtype)[:, None]
        c = torch.where(counts > 0, sums / counts.clamp_min(1), c)
    return c


def _spread(samples: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Root-mean-square distance of samples to their nearest centre."""
    return sq_dist(samples, centres).min(1).values.mean().sqrt()


def _prune(keep_from: torch.Tensor, certain: torch.Tensor, certain_samples: torch.Tensor
           ) -> torch.Tensor:
    """Drop centroids of ``keep_from`` closer to a ``certain`` centroid than the certain
    side's spread; the one farthest from ``certain`` always stays."""
    d = sq_dist(keep_from, certain).min(1).values.sqrt()
    keep = d > _spread(certain_samples, certain)
    keep[d.argmax()] = True
    return keep_from[keep]


def _refine_box(fg_x: torch.Tensor, fg_c: torch.Tensor, bg_c: torch.Tensor, k: int
                ) -> torch.Tensor:
    """Foreground centroids of the box pixels that are nearer to the box's own centroids
    than to the background's: one GrabCut-like step that drops background inside the box
    (all of them if none is nearer, so a box never loses its foreground)."""
    d = sq_dist(fg_x, torch.cat([fg_c, bg_c]))
    inside = d.argmin(1) < fg_c.shape[0]
    return kmeans(fg_x[inside], k) if inside.any() else fg_c


def _dilate(x: torch.Tensor, r: int) -> torch.Tensor:
    """Dilate a ``(1, 1, H, W)`` 0/1 map by a ``(2r+1)``-pixel square (two 1-D max pools)."""
    x = F.max_pool2d(x, (1, 2 * r + 1), stride=1, padding=(0, r))
    return F.max_pool2d(x, (2 * r + 1, 1), stride=1, padding=(r, 0))


DEFAULT_FEATURE_WEIGHTS = {"colour": 1.0, "colour_mean": 1.0, "colour_std": 0.7,
                           "texture": 0.7}


@dataclass(frozen=True)
class PrototypeOptions:
    """``n_fg`` / ``n_bg`` prototypes per side, ``max_side`` (px) working size,
    ``point_radius`` (px) of the square taken around a click, ``weak_margin`` (px) kept free
    of background samples around point and scribble annotations, ``smooth`` (px, odd) box
    filter on the probability map, ``weights`` of the feature groups (missing groups keep
    their defaults)."""

    n_fg: int = 1
    n_bg: int = 10
    max_side: int = 160
    point_radius: int = 3
    weak_margin: int = 15
    smooth: int = 5
    weights: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.smooth < 1 or self.smooth % 2 == 0:
            raise ValueError(f"smooth must be an odd number of pixels >= 1 (1 = off), got "
                             f"{self.smooth}")
        if min(self.n_fg, self.n_bg, self.max_side) < 1:
            raise ValueError("n_fg, n_bg and max_side must be >= 1")
        unknown = set(self.weights) - set(FEATURE_GROUPS)
        if unknown:
            raise ValueError(f"unknown feature groups {sorted(unknown)}; known: "
                             f"{list(FEATURE_GROUPS)}")


class Prototype(Method):
    """Colour/texture prototype matching (see the module docstring); options:
    :class:`PrototypeOptions`."""

    name = "proto"
    Options = PrototypeOptions

    def __init__(self, **options) -> None:
        super().__init__(**options)
        o = self.opts
        self.n_fg, self.n_bg, self.max_side = o.n_fg, o.n_bg, o.max_side
        self.point_radius, self.weak_margin, self.smooth = o.point_radius, o.weak_margin, o.smooth
        w = {**DEFAULT_FEATURE_WEIGHTS, **o.weights}
        self.weights = torch.cat([torch.full((n,), float(w[g])) for g, n in FEATURE_GROUPS.items()])
        self.device = torch.device("cpu")

    def predict(self, batch: EpisodeBatch) -> list[torch.Tensor]:
        return [self._predict_one(ep, batch.annotation) for ep in batch]

    def describe(self) -> dict:
        return {"model": "prototype (colour+texture)", "weights": "none"}

    # --- internals ---------------------------------------------------------------------
    def _features(self, image: np.ndarray) -> torch.Tensor:
        """``(H', W', C)`` features at working size for an ``(H, W, 3)`` uint8 image."""
        x = torch.tensor(image, device=self.device)
        x = x.permute(2, 0, 1)[None].float() / 255
        h, w = x.shape[-2:]
        scale = self.max_side / max(h, w)
        if scale < 1:
            size = (max(round(h * scale), 1), max(round(w * scale), 1))
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        return pixel_features(x)[0].permute(1, 2, 0)

    def _regions(self, label: np.ndarray | None, annotation, kind: str, size: tuple[int, int]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Foreground and background sample masks ``(H', W')`` bool at working size.
        ``label`` (0/1/255) exists only for mask references: its 255 band is kept out of the
        background samples; other kinds have nothing but the annotation."""
        raster = torch.from_numpy(annotation.raster)[None, None].float()
        valid = torch.from_numpy(label != 255)[None, None].float() if label is not None \
            else torch.ones_like(raster)
        if kind == "point":
            raster = _dilate(raster, self.point_radius)
        if kind in ("point", "scribble"):
            near = _dilate(raster, self.weak_margin)
        else:
            near = raster
        fg = F.interpolate(raster, size=size, mode="area")[0, 0] > 0.5
        bg = F.interpolate(near * valid + (1 - valid), size=size, mode="area")[0, 0] == 0
        if not fg.any():  # a click smaller than one working pixel
            fg = F.interpolate(raster, size=size, mode="area")[0, 0] > 0
        return fg.to(self.device), bg.to(self.device)

    def _predict_one(self, ep: Episode, kind: str) -> torch.Tensor:
        fg_s, bg_s, pixels = [], [], []
        labels = ep.support_masks or [None] * ep.shot
        for img, label, ann in zip(ep.support_images, labels, ep.annotations, strict=True):
            feats = self._features(img)
            fg, bg = self._regions(label, ann, kind, tuple(feats.shape[:2]))
            fg_s.append(feats[fg])
            bg_s.append(feats[bg])
            pixels.append(feats.reshape(-1, feats.shape[-1]))
        fg_x, bg_x = torch.cat(fg_s), torch.cat(bg_s)
        if bg_x.shape[0] == 0:  # the annotation covers every support pixel
            return torch.ones(ep.query_size, device=self.device)
        query = self._features(ep.query_image)
        # Standardised over every support and query pixel (no label involved): statistics of
        # the samples alone can be near zero for a feature that varies only in the query.
        pixels = torch.cat(pixels + [query.reshape(-1, query.shape[-1])])
        mu, sd = pixels.mean(0), pixels.std(0, correction=0).clamp_min(1e-2)
        w = self.weights.to(self.device)
        fg_x, bg_x = (fg_x - mu) / sd * w, (bg_x - mu) / sd * w
        fg_c, bg_c = kmeans(fg_x, self.n_fg), kmeans(bg_x, self.n_bg)
        if kind == "box":
            fg_c = _refine_box(fg_x, fg_c, bg_c, self.n_fg)
        elif kind in ("point", "scribble"):
            bg_c = _prune(bg_c, fg_c, fg_x)
        q = ((query - mu) / sd * w).reshape(-1, fg_x.shape[1])
        d_fg = sq_dist(q, fg_c).min(1).values
        d_bg = sq_dist(q, bg_c).min(1).values
        tau = sq_dist(fg_x, fg_c).min(1).values.median().clamp_min(1e-3)
        # Clamped so probabilities stay >= 1e-13: denormal floats would make the smoothing
        # and resizing below many times slower on CPUs.
        prob = torch.sigmoid(((d_bg - d_fg) / tau).clamp(-30, 30))
        prob = prob.reshape(1, 1, *query.shape[:2])
        if self.smooth > 1:
            prob = F.avg_pool2d(prob, self.smooth, stride=1, padding=self.smooth // 2,
                                count_include_pad=False)
        prob = F.interpolate(prob, size=ep.query_size, mode="bilinear", align_corners=False)
        return prob[0, 0].clamp(0, 1)
