"""A small in-memory FoldedDataset for tests of the sampler, runner and records.

Images are generated from the item id, so they are deterministic and need no files.
4 folds x 2 classes (ids 1..8); each item holds one or two classes.
"""

from __future__ import annotations

import sys
import time
import zlib
from pathlib import Path

import numpy as np

from refseg_bench.datasets.base import FoldedDataset


class ListDataset(FoldedDataset):
    name = "fake"
    n_folds = 4

    def __init__(self, root="unused", per_class: int = 6, size=(48, 64),
                 train_filter: str = "none", **options):
        super().__init__(root, train_filter=train_filter, **options)
        self.size = size
        self._labels: dict[str, list[int]] = {}
        for split in ("train", "val"):
            for c in range(1, 9):
                for j in range(per_class):
                    other = (c % 8) + 1 if j % 3 == 0 else None
                    self._labels[f"{split}/{c}_{j}"] = sorted({c} | ({other} if other else set()))

    @property
    def class_names(self):
        return [f"class{c}" for c in range(1, 9)]

    def classes(self, fold, split):
        novel = [2 * fold + 1, 2 * fold + 2]
        return novel if split != "train" else [c for c in range(1, 9) if c not in novel]

    def _split_items(self, split, fold=None):
        prefix = "train/" if split == "train" else "val/"
        items = [k for k in self._labels if k.startswith(prefix)]
        if split == "train" and fold is not None and self.options["train_filter"] == "bam":
            novel = set(self.classes(fold, "val"))
            items = [k for k in items if not novel & set(self._labels[k])]
        return items

    def items(self, fold, split, class_id):
        return [k for k in self._split_items(split, fold) if class_id in self._labels[k]]

    def query_items(self, fold, split):
        wanted = set(self.classes(fold, split))
        return [k for k in self._split_items(split, fold) if wanted & set(self._labels[k])]

    def item_classes(self, fold, split, item):
        return sorted(set(self._labels[item]) & set(self.classes(fold, split)))

    def _seed(self, item):
        return zlib.crc32(item.encode())

    def load_image(self, item):
        rng = np.random.default_rng(self._seed(item))
        return rng.integers(0, 255, (*self.size, 3), dtype=np.uint8)

    def label(self, item):
        h, w = self.size
        lab = np.zeros((h, w), np.uint8)
        for k, c in enumerate(self._labels[item]):
            x0 = 4 + 28 * k
            lab[8:40, x0:x0 + 24] = c
            lab[8, x0:x0 + 24] = 255  # a boundary band like VOC
        return lab

    def load_mask(self, item, class_id):
        lab = self.label(item)
        out = (lab == class_id).astype(np.uint8)
        out[lab == 255] = 255
        return out


class EmptySupportDataset(ListDataset):
    """Like ListDataset, but one item's class mask is all ignore (an unusable reference)."""

    name = "fake_empty"
    BROKEN = "val/1_1"

    def load_mask(self, item, class_id):
        out = super().load_mask(item, class_id)
        if item == self.BROKEN:
            out[:] = 255
        return out


class Flaky:
    """A method that crashes after ``fail_after`` predict calls (to test resuming)."""

    calls = 0

    def __new__(cls, *a, **k):  # built through the registry like any method
        from refseg_bench.methods.baselines import Oracle

        class _Flaky(Oracle):
            name = "flaky"

            def __init__(self, fail_after: int = 10**9, **options):
                super().__init__(**options)
                self.fail_after = fail_after

            def predict(self, batch):
                Flaky.calls += 1
                if Flaky.calls > self.fail_after:
                    raise KeyboardInterrupt("simulated kill")
                return super().predict(batch)

        return _Flaky(*a, **k)

    @classmethod
    def from_config(cls, options):
        return cls(**options)


class Slow:
    """An oracle that sleeps ``delay`` seconds per predict call, so a test can interrupt a
    run of it (with a real SIGINT) while it is certainly in the episode loop."""

    def __new__(cls, *a, **k):
        from refseg_bench.methods.baselines import Oracle

        class _Slow(Oracle):
            name = "slow"

            def __init__(self, delay: float = 0.2, **options):
                super().__init__(**options)
                self.delay = float(delay)

            def predict(self, batch):
                time.sleep(self.delay)
                return super().predict(batch)

        return _Slow(*a, **k)

    @classmethod
    def from_config(cls, options):
        return cls(**options)


def fake_cli(*args: str) -> list[str]:
    """argv of a subprocess running the real ``refseg-bench`` CLI with the fakes registered
    (``dataset=fake``, ``method=flaky|slow``), for tests that need a process of its own
    (signals, resource limits, concurrency)."""
    tests = str(Path(__file__).resolve().parent)
    code = (f"import sys; sys.path.insert(0, {tests!r}); from fakes import register_fakes; "
            "register_fakes(); from refseg_bench.cli import main; "
            "raise SystemExit(main(sys.argv[1:]))")
    return [sys.executable, "-c", code, *args]


def register_fakes() -> None:
    from refseg_bench.registry import DATASETS, METHODS, load_builtin_entries

    load_builtin_entries()
    if "fake" not in DATASETS:
        DATASETS.register("fake", "fakes:ListDataset", "in-memory test dataset")
        DATASETS.register("fake_empty", "fakes:EmptySupportDataset", "one empty support")
        METHODS.register("flaky", "fakes:Flaky", "oracle that crashes after N batches")
        METHODS.register("slow", "fakes:Slow", "oracle that sleeps per batch")


def begin(method, fold: int, annotation: str = "mask", shot: int = 1) -> None:
    """Announce a unit of ``method.dataset`` as the runner does before predicting it."""
    from refseg_bench.methods.base import Unit

    method.begin_unit(Unit(method.dataset, fold, "val", shot, annotation, 0))


def val_batch(dataset, fold: int, shot: int, annotation: str, n: int = 3):
    """An ``EpisodeBatch`` of the first ``n`` hsnet episodes (seed 0) of ``fold``'s val list."""
    from refseg_bench.episodes import EpisodeBatch
    from refseg_bench.loading import load_episode
    from refseg_bench.protocols import load_protocol
    from refseg_bench.sampler import sample_episodes

    manifest = sample_episodes(dataset, fold, "val", shot, n, 0, load_protocol("hsnet"))
    episodes = [load_episode(dataset, s, annotation).episode for s in manifest.episodes]
    return EpisodeBatch(episodes, annotation)


def fit_killed_after_first_checkpoint(method, monkeypatch) -> None:
    """``method.fit`` on fold 0 (mask references, CPU) stopped by a ``KeyboardInterrupt``
    right after its first checkpoint is written, as a kill would; the real checkpointing
    is back afterwards."""
    import pytest
    import torch

    from refseg_bench.trained import loop

    real_checkpoint = loop._checkpoint

    def checkpoint_then_die(*args, **kwargs):
        real_checkpoint(*args, **kwargs)
        raise KeyboardInterrupt("simulated kill after the first epoch")

    monkeypatch.setattr(loop, "_checkpoint", checkpoint_then_die)
    with pytest.raises(KeyboardInterrupt):
        method.fit(method.dataset, 0, annotation="mask", device=torch.device("cpu"),
                   progress=False)
    monkeypatch.setattr(loop, "_checkpoint", real_checkpoint)
