"""Qualitative grids for the report: a run's best and worst episodes, one row each, as
reference with its annotation | target | prediction | label.

Everything comes from the run record and the dataset, never from a model: the episode is
rebuilt from the unit's manifest (the reference annotation is simulated again from the
episode's own seed, so it is the one the method saw) and the prediction is the PNG the
run saved with ``save_predictions=true``. A run without saved predictions gets a grey
panel saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from refseg_bench import records
from refseg_bench.episodes import Annotation

# Scenes are colourful, so a region is shown by dimming everything outside it (its own
# colours stay readable) and outlining it; the colours are chosen to stand out on both.
PRED_COLOUR = "#ff00ff"  # magenta outline of the prediction
LABEL_COLOUR = "#ffff00"  # yellow outline of the label (and of the annotation)
VOID_RGB = (0.55, 0.55, 0.55)
DIM = 0.3

@dataclass(frozen=True)
class Pick:
    """One episode to show: why (``best 1``, ``worst 2``) and its row of episodes.csv."""

    tag: str
    row: pd.Series


def pick_episodes(episodes: pd.DataFrame, n: int) -> list[Pick]:
    """The ``n`` highest-IoU scored episodes, then the ``n`` lowest (never the same one
    twice); ties broken by (seed, fold, index), so the choice is reproducible."""
    scored = episodes[episodes["skip"].isna()] if "skip" in episodes else episodes
    order = scored.sort_values(["iou", "sampling_seed", "fold", "index"],
                               ascending=[False, True, True, True])
    best = order.head(n)
    worst = order.drop(best.index).tail(n).iloc[::-1]
    return ([Pick(f"best {k + 1}", r) for k, (_, r) in enumerate(best.iterrows())]
            + [Pick(f"worst {k + 1}", r) for k, (_, r) in enumerate(worst.iterrows())])


def open_dataset(run_dir: Path):
    """The run's dataset, built from its saved config as the run built it."""
    from omegaconf import OmegaConf

    from refseg_bench.config import build_dataset
    from refseg_bench.protocols import load_protocol
    from refseg_bench.registry import load_builtin_entries

    load_builtin_entries()
    cfg = OmegaConf.load(run_dir / "config.yaml")
    protocol = load_protocol(cfg.protocol).for_dataset(cfg.dataset).with_overrides(
        OmegaConf.to_container(cfg.protocol_args, resolve=True) or {})
    return build_dataset(cfg, protocol.dataset_args)


def _spec(run_dir: Path, row: pd.Series):
    from refseg_bench.sampler import Manifest

    unit = records.unit_name(int(row["sampling_seed"]), int(row["fold"]))
    manifest = Manifest.read(run_dir / unit / "manifest.json")
    return manifest.episodes[int(row["index"])]


def _prediction(run_dir: Path, row: pd.Series) -> np.ndarray | None:
    unit = records.unit_name(int(row["sampling_seed"]), int(row["fold"]))
    path = run_dir / "predictions" / unit / f"{int(row['index']):05d}.png"
    if not path.is_file():
        return None
    from PIL import Image

    return np.asarray(Image.open(path)) >= 128


def _spotlight(image: np.ndarray, region: np.ndarray, void: np.ndarray | None = None
               ) -> np.ndarray:
    """``image`` as float RGB with everything outside ``region`` dimmed; ``void`` pixels
    (ignored by the scorer) greyed."""
    out = image.astype(np.float32) / 255
    out[~region] *= DIM
    if void is not None:
        out[void] = 0.3 * out[void] + 0.7 * np.asarray(VOID_RGB, np.float32)
    return out


def _outline(ax, mask: np.ndarray, colour: str, style: str = "solid") -> None:
    if mask.any():
        ax.contour(mask, levels=[0.5], colors=[colour], linewidths=1.6, linestyles=style)


def _draw_reference(ax, image: np.ndarray, ann: Annotation) -> None:
    from matplotlib.patches import Rectangle
    from scipy import ndimage

    if ann.kind == "mask":
        ax.imshow(_spotlight(image, ann.raster))
        _outline(ax, ann.raster, LABEL_COLOUR)
    elif ann.kind == "box":
        ax.imshow(_spotlight(image, ann.raster))
        for x0, y0, x1, y1 in ann.boxes:
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   edgecolor=LABEL_COLOUR, linewidth=2))
    elif ann.kind == "scribble":
        strokes = ndimage.binary_dilation(ann.raster, iterations=max(1, max(image.shape) // 200))
        shown = _spotlight(image, np.zeros(image.shape[:2], bool)) * 2
        shown[strokes] = np.asarray((1.0, 1.0, 0.0), np.float32)
        ax.imshow(shown.clip(0, 1))
    else:
        ax.imshow(_spotlight(image, np.zeros(image.shape[:2], bool)) * 2)
        pos = ann.point_labels == 1
        ax.scatter(ann.points[pos, 0], ann.points[pos, 1], s=22, c=LABEL_COLOUR,
                   edgecolors="black", linewidths=0.8)
        ax.scatter(ann.points[~pos, 0], ann.points[~pos, 1], s=22, c="red", marker="x")


def _placeholder(ax, shape, text: str) -> None:
    ax.imshow(np.full((*shape[:2], 3), 0.85))
    ax.text(shape[1] / 2, shape[0] / 2, text, ha="center", va="center", fontsize=8,
            wrap=True)


def render_grid(run_dir: Path, dataset, annotation: str, picks: list[Pick], path: Path,
                title: str) -> bool:
    """Write the grid PNG; returns whether any prediction was found in the record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from refseg_bench.loading import load_episode

    fig, axes = plt.subplots(len(picks), 4, figsize=(10, 2.45 * len(picks) + 0.6),
                             squeeze=False)
    found = False
    for r, pick in enumerate(picks):
        loaded = load_episode(dataset, _spec(run_dir, pick.row), annotation,
                              support_labels=False)
        ep, label = loaded.episode, loaded.label
        pred = _prediction(run_dir, pick.row)
        found |= pred is not None
        _draw_reference(axes[r, 0], ep.support_images[0], ep.annotations[0])
        axes[r, 1].imshow(ep.query_image)
        if pred is None:
            _placeholder(axes[r, 2], ep.query_image.shape,
                         "prediction not saved\n(run with\nsave_predictions=true)")
        else:
            axes[r, 2].imshow(_spotlight(ep.query_image, pred))
            _outline(axes[r, 2], label == 1, LABEL_COLOUR, "dashed")
            _outline(axes[r, 2], pred, PRED_COLOUR)
        axes[r, 3].imshow(_spotlight(ep.query_image, label == 1, label == 255))
        _outline(axes[r, 3], label == 1, LABEL_COLOUR)
        row = pick.row
        more = f" (+{ep.shot - 1})" if ep.shot > 1 else ""
        axes[r, 0].set_ylabel(f"{pick.tag}: IoU {row['iou']:.1f}\nfold {int(row['fold'])} "
                              f"#{int(row['index'])}\n{ep.class_name}{more}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for ax, name in zip(axes[0], (f"reference + {annotation}", "target",
                                  "prediction (magenta; label dashed)",
                                  "label (grey: ignored)"),
                        strict=True):
        ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return found
