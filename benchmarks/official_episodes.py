"""The episodes both sides of ``vs_official.py`` evaluate, in two kinds.

``recurring`` (the default, a real run's shape): the embedded synthetic benchmark with
``per_class`` images per class, and episodes drawn by the harness's own sampler under a
protocol preset (``hsnet``, ``vrp-sam``, ``fssam``...), fold 0, 1-shot. As in a real fold,
images recur: PASCAL-5i fold 0 (HSNet lists) has 345 images of its 5 classes, about 69
per class, for 1000 episodes, so each image serves about 5.8 times as a query or a
support. ``default_episodes`` keeps that ratio at any ``per_class``, and ``reuse`` prints
it for the episodes actually drawn. The official loops see the same episodes (each in
its own format) and, as they are written, encode every image again in every episode.

``distinct`` (the worst case for every cache): a PerSeg-layout set of generated objects,
each one reference ``00`` and one target ``01``, every image new; our side evaluates it
with the ``fixed_reference`` sampler (one episode per object), so no image is seen twice.
(PerSAM's distinct set is its own PerSeg protocol: objects of several images, each target
new, the reference of an object serving its targets in both loops.)

Images are stored as PNG bytes under the ``.jpg`` names of the layouts (the readers on
both sides sniff the format), so OpenCV and Pillow decode the same pixels and the
comparison is about the loops, not about JPEG decoders. Where a method resizes its inputs
differently from its official code in the last bits (bilinear in float vs in fixed
point), images are generated at the method's input size (``side``), so that neither side
resizes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# PASCAL-5i fold 0 with HSNet's lists: 346 (image, class) pairs on 345 images of 5 classes,
# 1000 test episodes.
FOLD_IMAGES_PER_CLASS = 69
FOLD_EPISODES = 1000
KINDS = ("recurring", "distinct")


def default_episodes(per_class: int) -> int:
    """Episodes that use each image about as often as a PASCAL-5i fold's 1000 do."""
    return max(4, round(FOLD_EPISODES * per_class / FOLD_IMAGES_PER_CLASS))


@dataclass
class EpisodeSet:
    """``overrides``: our run's settings that select the dataset, protocol and episodes;
    ``episodes``: ``[{index, query, supports, class_id}]`` of our manifest, in order;
    ``root``: where the data lies."""

    kind: str
    overrides: list[str]
    episodes: list[dict]
    root: Path

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"kind": self.kind, "overrides": self.overrides,
                                    "episodes": self.episodes, "root": str(self.root)}))

    @classmethod
    def load(cls, path: Path) -> EpisodeSet:
        body = json.loads(path.read_text())
        return cls(body["kind"], body["overrides"], body["episodes"], Path(body["root"]))

    def reuse(self) -> str:
        """How often images recur: ``uses / distinct images``."""
        uses = [it for e in self.episodes for it in (e["query"], *e["supports"])]
        return (f"{len(self.episodes)} episodes, {len(uses)} image uses of "
                f"{len(set(uses))} images ({len(uses) / len(set(uses)):.1f} per image)")


def recurring(shared: Path, per_class: int, episodes: int, protocol: str,
              side: int | None = None, extra: tuple[str, ...] = ()) -> EpisodeSet:
    """The synthetic benchmark (``per_class`` images per class, stored as PNG bytes, every
    image ``side x side`` when given) and ``episodes`` 1-shot fold-0 episodes drawn under
    ``protocol`` by the harness's sampler."""
    from refseg_bench.datasets.synthetic import SyntheticDataset

    root = shared / "synthetic"
    data = SyntheticDataset(root, n_per_class=per_class)
    store_png(data.data_dir, side)
    overrides = ["dataset=synthetic", f"dataset_args.root={root}",
                 f"dataset_args.n_per_class={per_class}", f"protocol={protocol}",
                 f"episodes={episodes}", "fold=0", "shot=1", "annotation=mask", *extra]
    return EpisodeSet("recurring", overrides, manifest(overrides, shared / "plan"), root)


def distinct(shared: Path, objects: int, side: int, seed: int, *, images: int = 2,
             square: bool = True, palette: bool = False, protocol: str = "persam",
             extra: tuple[str, ...] = ()) -> EpisodeSet:
    """``objects`` generated objects of ``images`` new images each (``00`` the reference;
    ``side x side`` when ``square``; 0/1 labels, PerSeg's palette PNGs when ``palette``):
    each other image a target once, so with two images per object no image is in two
    episodes."""
    from official_data import write_perseg

    root = shared / "perseg"
    write_perseg(root, objects, images, side, seed=seed, square=square, palette=palette)
    overrides = ["dataset=perseg", f"dataset_args.root={root}", f"protocol={protocol}",
                 "fold=0", "shot=1", "annotation=mask", *extra]
    return EpisodeSet("distinct", overrides, manifest(overrides, shared / "plan"), root)


def manifest(overrides: list[str], results: Path) -> list[dict]:
    """The episodes ``refseg-bench run`` with ``overrides`` evaluates (its own sampling)."""
    from refseg_bench.config import resolve_config
    from refseg_bench.runner import plan_run
    from refseg_bench.sampler import sample_episodes

    cfg = resolve_config(["method=proto", *overrides, f"results_dir={results}"])
    plan = plan_run(cfg)
    drawn = sample_episodes(plan.dataset, 0, cfg.split, int(cfg.shot), plan.n_episodes,
                            plan.seeds[0], plan.protocol)
    return [{"index": e.index, "query": e.query, "supports": list(e.supports),
             "class_id": e.class_id, "seed": e.seed} for e in drawn.episodes]


def loaded(es: EpisodeSet) -> Iterator:
    """Our loader's ``LoadedEpisode`` of every episode, in order: the exact arrays our
    method receives (images, annotation rasters) and the query label."""
    from refseg_bench.config import resolve_config
    from refseg_bench.episodes import EpisodeSpec
    from refseg_bench.loading import load_episode
    from refseg_bench.runner import plan_run

    cfg = resolve_config(["method=proto", *es.overrides,
                          f"results_dir={es.root.parent / 'plan'}"])
    plan = plan_run(cfg)
    for e in es.episodes:
        spec = EpisodeSpec(e["index"], 0, e["class_id"], e["query"], tuple(e["supports"]),
                           e["seed"])
        yield load_episode(plan.dataset, spec, "mask", plan.protocol.annotation_style)


def store_png(data_dir: Path, side: int | None) -> None:
    """Every synthetic image re-stored as PNG bytes (resized to ``side x side``, bilinear,
    labels nearest, when ``side`` is given), ``index.json`` recounted."""
    index = json.loads((data_dir / "index.json").read_text())
    for item in index:
        jpg = data_dir / "JPEGImages" / f"{item}.jpg"
        image = Image.open(jpg).convert("RGB")
        if side is None:
            image.save(jpg, "PNG")
            continue
        image.resize((side, side), Image.BILINEAR).save(jpg, "PNG")
        png = data_dir / "SegmentationClass" / f"{item}.png"
        label = np.asarray(Image.open(png).resize((side, side), Image.NEAREST))
        Image.fromarray(label).save(png)
        values, counts = np.unique(label, return_counts=True)
        index[item] = {"size": [side, side],
                       "areas": {str(v): int(n) for v, n in zip(values, counts, strict=True)
                                 if 0 < v <= 20}}
    (data_dir / "index.json").write_text(json.dumps(index, sort_keys=True))


@dataclass
class PascalView:
    """The episodes in the PASCAL layout the official PASCAL loaders read:
    ``images/<name>.jpg`` and ``labels/<name>.png`` (class ids, 255 void), and per episode
    ``(query, [supports], class_id)`` with class ids counted from 1."""

    images: Path
    labels: Path
    episodes: list[tuple[str, list[str], int]]


def pascal_view(es: EpisodeSet, dest: Path) -> PascalView:
    """The synthetic benchmark is already in that layout; the distinct pairs are copied
    into it flat (``obj_a/01`` -> ``obj_a_01``, the same bytes; their label value 1 is
    class 1)."""
    import shutil

    if es.kind == "recurring":
        data_dir = next(p for p in es.root.iterdir() if p.name.startswith("v"))
        return PascalView(data_dir / "JPEGImages", data_dir / "SegmentationClass",
                          [(e["query"], e["supports"], e["class_id"]) for e in es.episodes])
    images, labels = dest / "JPEGImages", dest / "SegmentationClass"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for jpg in (es.root / "Images").rglob("*.jpg"):
        flat = f"{jpg.parent.name}_{jpg.stem}"
        shutil.copyfile(jpg, images / f"{flat}.jpg")
        shutil.copyfile(es.root / "Annotations" / jpg.parent.name / f"{jpg.stem}.png",
                        labels / f"{flat}.png")
    flat = [(e["query"].replace("/", "_"), [s.replace("/", "_") for s in e["supports"]], 1)
            for e in es.episodes]
    return PascalView(images, labels, flat)
