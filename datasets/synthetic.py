"""The embedded synthetic benchmark: 20 classes in 4 folds, generated on first use.

It makes ``make bench`` meaningful offline: scenes drawn by ``synthetic_render`` (clutter,
1-3 classes per image, occlusion, a 255 band around objects, sizes 160-320 px per side)
are written like a real dataset and read back through the same code paths::

    <root>/v1/                       (v1-n<N> when n_per_class is not the default)
        JPEGImages/<id>.jpg          RGB, JPEG quality 95
        SegmentationClass/<id>.png   uint8: 0 background, 1..20 class id, 255 boundary band
        ImageSets/Segmentation/{train,val}.txt   the two image pools, one id a line
        classes.txt                  class names, id = line number
        index.json                   per image: size and pixel count of every class
        meta.json                    generator version, seed and counts; written last

Folds follow PASCAL-5i: fold i's novel classes are ids 5i+1..5i+5 (``val`` and ``test``
episodes, drawn from the val pool); its 15 others are base classes (``train`` episodes,
drawn from the separate train pool). As in PFENet and HSNet (docs/protocols.md §4.3)
training images may show novel classes (``load_mask`` makes those pixels background) unless
``train_filter=bam`` drops them, as trained methods always ask
(:meth:`~refseg_bench.datasets.base.FoldedDataset.base_only_training`).

A class is listed for an image only if it covers at least the 2048-pixel rule scaled to
the image size (``min_class_pixels``, about 1.1% of the image), as PFENet's lists do.

Generation is a pure function of ``(GENERATOR_VERSION, SEED, n_per_class)``: every image
has its own generator seeded from ``SeedSequence(SEED, spawn_key=(pool, index))``. It
writes into a private temporary directory that is renamed into place at the end, so
processes racing on first use (e.g. torchrun ranks) never see a half-written dataset.
While it runs (about a minute of CPU at the default size) a progress bar goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from refseg_bench.datasets.base import SPLITS, DatasetError, FoldedDataset
from refseg_bench.datasets.synthetic_render import class_looks, min_class_pixels, render_scene
from refseg_bench.imageio import read_image, read_label, write_label

GENERATOR_VERSION = 1
SEED = 20_240_521
N_CLASSES = 20
N_PER_CLASS = 60  # images showing each class, per pool
POOLS = ("train", "val")
CLASSES_PER_IMAGE_P = (0.3, 0.45, 0.25)  # P(1, 2, 3 classes in an image)


def schedule(n_per_class: int, rng: np.random.Generator) -> list[list[int]]:
    """Classes of every image of a pool: each class in exactly ``n_per_class`` images,
    1-3 distinct classes per image, in a random order."""
    queue = list(rng.permutation(np.repeat(np.arange(1, N_CLASSES + 1), n_per_class)))
    images = []
    while queue:
        k = int(rng.choice(3, p=CLASSES_PER_IMAGE_P)) + 1
        picked: list[int] = []
        i = 0
        while len(picked) < k and i < len(queue):
            if queue[i] in picked:
                i += 1
            else:
                picked.append(int(queue.pop(i)))
        images.append(sorted(picked))
    return images


def pool_plan(pool: int, n_per_class: int) -> list[list[int]]:
    """Classes of every image of pool ``pool`` (0 train, 1 val), from the pool's own seed."""
    plan_rng = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(pool,)))
    return schedule(n_per_class, plan_rng)


def _write_pool(out: Path, pool: int, plan: list[list[int]],
                advance: Callable[[], None]) -> dict[str, dict]:
    """Render and write one pool; returns ``{id: {"size": [h, w], "areas": {c: px}}}``.
    ``advance`` is called once per written image (progress)."""
    looks = class_looks()
    index = {}
    for i, class_ids in enumerate(plan):
        rng = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(pool, i)))
        scene = render_scene(class_ids, looks, rng)
        item = f"{POOLS[pool]}_{i:05d}"
        Image.fromarray(scene.image).save(out / "JPEGImages" / f"{item}.jpg", quality=95)
        write_label(out / "SegmentationClass" / f"{item}.png", scene.label)
        values, counts = np.unique(scene.label, return_counts=True)
        areas = {str(v): int(n) for v, n in zip(values, counts, strict=True) if 0 < v <= 20}
        index[item] = {"size": list(scene.label.shape), "areas": areas}
        advance()
    return index


@contextlib.contextmanager
def _progress(target: Path, total: int) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr while the benchmark is generated (a minute of CPU at the
    default size, once per data root); yields the per-image ``advance`` callback."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    console = Console(stderr=True)
    console.print(f"generating the synthetic benchmark ({total} images) in {target}; "
                  "first use only", soft_wrap=True)
    with Progress("synthetic benchmark", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("images", total=total)
        yield lambda: bar.advance(task)


def generate(target: Path, n_per_class: int = N_PER_CLASS) -> None:
    """Generate the benchmark at ``target`` (which must not exist) atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    plans = [pool_plan(pool, n_per_class) for pool in range(len(POOLS))]
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the renamed dataset must be readable
        (tmp / "JPEGImages").mkdir()
        (tmp / "SegmentationClass").mkdir()
        (tmp / "ImageSets" / "Segmentation").mkdir(parents=True)
        index: dict[str, dict] = {}
        with _progress(target, sum(map(len, plans))) as advance:
            for pool, name in enumerate(POOLS):
                pool_index = _write_pool(tmp, pool, plans[pool], advance)
                (tmp / "ImageSets" / "Segmentation" / f"{name}.txt").write_text(
                    "".join(f"{item}\n" for item in pool_index))
                index.update(pool_index)
        (tmp / "classes.txt").write_text("".join(f"{lk.name}\n" for lk in class_looks()))
        (tmp / "index.json").write_text(json.dumps(index, sort_keys=True))
        meta = {"generator_version": GENERATOR_VERSION, "seed": SEED, "n_per_class": n_per_class,
                "n_images": {p: sum(k.startswith(p) for k in index) for p in POOLS}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        try:
            os.rename(tmp, target)  # atomic; fails if another process got there first
        except OSError:
            if not (target / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an advisory lock so concurrent first uses generate once and the others wait.
    Correctness does not depend on it (``generate`` renames atomically); where ``fcntl``
    is missing the lock is skipped and racing processes each generate."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_generated(target: Path, n_per_class: int) -> dict:
    """Generate ``target`` unless a complete copy exists; returns its ``meta.json``."""
    if not target.exists():
        with _exclusive(target.parent / f".{target.name}.lock"):
            if not target.exists():
                generate(target, n_per_class)
    meta_file = target / "meta.json"
    if not meta_file.is_file():
        raise DatasetError(
            f"{target} exists but has no meta.json: it is not a complete synthetic benchmark "
            "(it was not written by this generator, or was modified). Delete it and rerun; "
            "it is regenerated on first use.")
    meta = json.loads(meta_file.read_text())
    if meta.get("generator_version") != GENERATOR_VERSION or meta.get("seed") != SEED:
        raise DatasetError(
            f"{target} holds generator version {meta.get('generator_version')} seed "
            f"{meta.get('seed')}, expected {GENERATOR_VERSION} seed {SEED}. Delete it and rerun.")
    return meta


class SyntheticDataset(FoldedDataset):
    """The embedded synthetic benchmark (see the module docstring).

    ``n_per_class`` (default 60) sets how many images of each pool show each class;
    smaller values give a quicker benchmark for tests.
    """

    name = "synthetic"
    n_folds = 4
    default_protocol = "hsnet"

    def __init__(self, root: str | Path, n_per_class: int = N_PER_CLASS,
                 train_filter: str = "none") -> None:
        super().__init__(root, n_per_class=n_per_class, train_filter=train_filter)
        if train_filter not in ("none", "bam"):
            raise DatasetError(f"train_filter must be 'none' or 'bam', got {train_filter!r}")
        if n_per_class < 2:
            raise DatasetError(f"n_per_class must be >= 2 (a query plus a support), got "
                               f"{n_per_class}")
        self.n_per_class = int(n_per_class)
        suffix = "" if self.n_per_class == N_PER_CLASS else f"-n{self.n_per_class}"
        self.data_dir = self.root / f"v{GENERATOR_VERSION}{suffix}"
        self.meta = ensure_generated(self.data_dir, self.n_per_class)
        self._names = (self.data_dir / "classes.txt").read_text().split()
        index = json.loads((self.data_dir / "index.json").read_text())
        self._areas = {k: {int(c): n for c, n in v["areas"].items()} for k, v in index.items()}
        self._need = {k: min_class_pixels(*v["size"]) for k, v in index.items()}
        lists = self.data_dir / "ImageSets" / "Segmentation"
        self._pools = {p: (lists / f"{p}.txt").read_text().split() for p in POOLS}

    @property
    def class_names(self) -> list[str]:
        return list(self._names)

    def classes(self, fold: int, split: str) -> list[int]:
        if fold not in range(self.n_folds):
            raise DatasetError(f"synthetic has folds 0..{self.n_folds - 1}, got fold {fold}")
        novel = list(range(5 * fold + 1, 5 * fold + 6))
        if split not in SPLITS:
            raise DatasetError(f"split must be one of {SPLITS}, got {split!r}")
        return [c for c in range(1, N_CLASSES + 1) if c not in novel] if split == "train" \
            else novel

    def _pool(self, split: str) -> list[str]:
        return self._pools["train" if split == "train" else "val"]

    def _listed(self, item: str, c: int) -> bool:
        return self._areas[item].get(c, 0) >= self._need[item]

    def _candidates(self, fold: int, split: str) -> list[str]:
        """The split's pool; with ``train_filter=bam`` the train pool loses every image with
        a pixel of one of the fold's novel classes (BAM's filter)."""
        pool = self._pool(split)
        if split != "train" or self.options["train_filter"] != "bam":
            return pool
        novel = set(self.classes(fold, "val"))
        return [it for it in pool if not novel & set(self._areas[it])]

    def items(self, fold: int, split: str, class_id: int) -> list[str]:
        if class_id not in self.classes(fold, split):
            raise DatasetError(f"class {class_id} is not a {split} class of fold {fold}; "
                               f"those are {self.classes(fold, split)}")
        return [it for it in self._candidates(fold, split) if self._listed(it, class_id)]

    def query_items(self, fold: int, split: str) -> list[str]:
        cls = self.classes(fold, split)
        return [it for it in self._candidates(fold, split)
                if any(self._listed(it, c) for c in cls)]

    def item_classes(self, fold: int, split: str, item: str) -> list[int]:
        return sorted(c for c in self.classes(fold, split) if c in self._areas_of(item))

    def _areas_of(self, item: str) -> dict[int, int]:
        if item not in self._areas:
            raise DatasetError(f"unknown synthetic item {item!r}; ids look like 'val_00012' "
                               f"(see {self.data_dir / 'ImageSets'})")
        return self._areas[item]

    def load_image(self, item: str) -> np.ndarray:
        self._areas_of(item)
        return read_image(self.data_dir / "JPEGImages" / f"{item}.jpg")

    def load_mask(self, item: str, class_id: int) -> np.ndarray:
        self._areas_of(item)
        label = read_label(self.data_dir / "SegmentationClass" / f"{item}.png")
        out = (label == class_id).astype(np.uint8)
        out[label == self.ignore_index] = self.ignore_index
        return out

    def describe(self) -> dict:
        return {
            **super().describe(),
            "generator_version": GENERATOR_VERSION,
            "seed": SEED,
            "n_per_class": self.n_per_class,
            "n_images": dict(self.meta["n_images"]),
            "list_rule": "class listed from 2048 * H * W / (500 * 375) pixels (scaled PFENet)",
            "train_pool": "separate; novel-class pixels are background in train masks",
        }
