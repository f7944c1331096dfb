"""Episode sampling as a pure, seeded function, and the manifest that records it.

``sample_episodes`` depends only on (dataset lists, fold, split, shot, n_episodes, seed,
protocol): it owns its ``numpy.random.Generator``, so worker count, batch size, device
and rank count can never change an episode. Every method replays the same manifest.

This reproduces each family's *rules*, not the exact episodes of the official scripts,
which depend on their global RNG call order (docs/protocols.md §5.4). A preset with
``exact: true`` replays those instead (``refseg_bench.replay``); its manifest header then
says so under ``replay``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refseg_bench.datasets.base import DatasetError, FoldedDataset
from refseg_bench.episodes import EpisodeSpec
from refseg_bench.protocols import Protocol

MANIFEST_VERSION = 1


class SamplingError(ValueError):
    """The requested episodes cannot be drawn (e.g. shot larger than a class's images)."""


@dataclass(frozen=True)
class Manifest:
    header: dict
    episodes: tuple[EpisodeSpec, ...]

    def canonical_bytes(self) -> bytes:
        body = {"header": self.header, "episodes": [e.to_row() for e in self.episodes]}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    def write(self, path: Path) -> str:
        """Write atomically; returns the sha256 (also stored beside it as ``.sha256``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self.canonical_bytes())
        tmp.replace(path)
        path.with_suffix(path.suffix + ".sha256").write_text(self.sha256 + "\n")
        return self.sha256

    @classmethod
    def read(cls, path: Path) -> Manifest:
        data = path.read_bytes()
        recorded = path.with_suffix(path.suffix + ".sha256")
        if recorded.exists() and recorded.read_text().strip() != hashlib.sha256(data).hexdigest():
            raise SamplingError(
                f"manifest {path} does not match its recorded sha256: it was edited or "
                "truncated. Delete the run directory (or pass overwrite=true) to resample."
            )
        body = json.loads(data)
        return cls(body["header"], tuple(EpisodeSpec.from_row(r) for r in body["episodes"]))


def episode_seed(seed: int, fold: int, index: int) -> int:
    """Independent 32-bit seed for the annotation simulation of one episode."""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(fold, index))
    return int(ss.generate_state(1)[0])


def _draw_supports(
    rng: np.random.Generator, pool: list[str], query: str, shot: int, distinct: bool, cid: int
) -> tuple[str, ...]:
    candidates = [p for p in pool if p != query]
    need = shot if distinct else 1
    if len(candidates) < need:
        raise SamplingError(
            f"class {cid} has {len(pool)} image(s); a {shot}-shot episode needs "
            f"{need + 1} (the query is never its own support). Lower shot or drop the class."
        )
    if distinct:
        picks = rng.choice(len(candidates), size=shot, replace=False)
        return tuple(candidates[i] for i in picks)
    # HSNet draws one at a time from the whole list and rejects the query: repeats allowed.
    out: list[str] = []
    while len(out) < shot:
        s = pool[int(rng.integers(len(pool)))]
        if s != query:
            out.append(s)
    return tuple(out)


def _class_pools(ds, fold, split) -> tuple[list[int], dict[int, list[str]]]:
    """The episode classes and each one's image list; an empty list is an error."""
    classes = ds.classes(fold, split)
    pools = {c: ds.items(fold, split, c) for c in classes}
    for c, pool in pools.items():
        if not pool:
            raise SamplingError(
                f"class {c} ({ds.class_name(c)}) has no images in {split} fold {fold}")
    return classes, pools


def _class_uniform(ds, fold, split, shot, n, rng, distinct):
    classes, pools = _class_pools(ds, fold, split)
    for i in range(n):
        c = classes[int(rng.integers(len(classes)))]
        q = pools[c][int(rng.integers(len(pools[c])))]
        yield i, c, q, _draw_supports(rng, pools[c], q, shot, distinct, c)


def _file_order(ds, fold, split, shot, n, rng, distinct):
    queries = ds.query_items(fold, split)
    if not queries:
        raise SamplingError(f"{ds.name} has no query images for {split} fold {fold}")
    pools: dict[int, list[str]] = {}
    for i in range(n):
        q = queries[i % len(queries)]  # PFENet repeats passes over the list
        present = ds.item_classes(fold, split, q)
        c = present[int(rng.integers(len(present)))]
        pool = pools.setdefault(c, ds.items(fold, split, c))
        yield i, c, q, _draw_supports(rng, pool, q, shot, distinct, c)


def _pair_cycle(ds, fold, split, shot, n, rng, distinct):
    pairs = ds.pairs(fold, split)
    if not pairs:
        raise SamplingError(f"{ds.name} has no (image, class) pairs for {split} fold {fold}")
    pools: dict[int, list[str]] = {}
    for i in range(n):
        q, c = pairs[i % len(pairs)]
        pool = pools.setdefault(c, ds.items(fold, split, c))
        yield i, c, q, _draw_supports(rng, pool, q, shot, distinct, c)


def _round_robin(ds, fold, split, shot, n, rng, distinct):
    classes, pools = _class_pools(ds, fold, split)
    for i in range(n):
        c = classes[i % len(classes)]
        q = pools[c][int(rng.integers(len(pools[c])))]
        yield i, c, q, _draw_supports(rng, pools[c], q, shot, distinct, c)


def _every_image(ds, fold, split, shot, n, rng, distinct):
    """Each (image, class) pair is the query once (FSS-1000: 240 x 10 = 2400 episodes);
    ``n`` caps the count, cycling if larger."""
    pairs = ds.pairs(fold, split)
    count = min(n, len(pairs)) if n else len(pairs)
    yield from _pair_cycle(ds, fold, split, shot, count, rng, distinct)


def _fixed_reference(ds, fold, split, shot, n, rng, distinct):
    """PerSAM's personalization protocol (``persam.py --ref_idx 00``): the first ``shot``
    items of each class (image ``00`` first) are its references, and every other item of
    the class is the query once, class by class; ``n`` caps the count. Draws nothing."""
    i = 0
    for c in ds.classes(fold, split):
        pool = ds.items(fold, split, c)
        if len(pool) <= shot:
            raise SamplingError(f"class {c} ({ds.class_name(c)}) has {len(pool)} image(s); "
                                f"{shot} reference(s) plus a target need {shot + 1}")
        for q in pool[shot:]:
            if i >= n:
                return
            yield i, c, q, tuple(pool[:shot])
            i += 1


SamplerFn = Callable[..., object]
SAMPLERS: dict[str, SamplerFn] = {
    "class_uniform": _class_uniform,
    "file_order": _file_order,
    "pair_cycle": _pair_cycle,
    "round_robin": _round_robin,
    "every_image": _every_image,
    "fixed_reference": _fixed_reference,
}


def sample_episodes(
    dataset: FoldedDataset,
    fold: int,
    split: str,
    shot: int,
    n_episodes: int,
    seed: int,
    protocol: Protocol,
) -> Manifest:
    """Draw ``n_episodes`` episodes; a pure function of its arguments and the dataset lists."""
    if shot < 1:
        raise SamplingError(f"shot must be >= 1, got {shot}")
    if n_episodes < 1:
        raise SamplingError(f"episodes must be >= 1, got {n_episodes}")
    if protocol.sampler not in SAMPLERS:
        raise SamplingError(f"unknown sampler {protocol.sampler!r}; known: {', '.join(SAMPLERS)}")
    if fold not in dataset.folds():
        raise DatasetError(f"{dataset.name} has folds {dataset.folds()}, got fold {fold}")
    replayed = None
    if protocol.exact:  # the official loader's own draws (refseg_bench.replay)
        from refseg_bench.replay import replay_episodes

        replayed = replay_episodes(dataset, fold, split, shot, n_episodes, seed,
                                   protocol.replay)
        drawn = ((i, c, q, s) for i, (c, q, s) in enumerate(replayed.episodes))
    else:
        rng = np.random.default_rng(seed)
        drawn = SAMPLERS[protocol.sampler](dataset, fold, split, shot, n_episodes, rng,
                                           protocol.distinct_supports)
    specs = tuple(EpisodeSpec(i, fold, c, q, s, episode_seed(seed, fold, i))
                  for i, c, q, s in drawn)
    header = {
        "version": MANIFEST_VERSION,
        "dataset": dataset.name,
        "fold": fold,
        "split": split,
        "shot": shot,
        "n_episodes": len(specs),
        "seed": seed,
        "protocol": protocol.name,
        "sampler": protocol.sampler,
        "distinct_supports": protocol.distinct_supports,
        "lists_sha256": dataset.fingerprint(fold, split),
    }
    if replayed is not None:  # absent otherwise, so rule-equivalent manifests keep their hash
        header["sampler"] = f"official replay ({protocol.replay['code']})"
        header["replay"] = replayed.header(protocol.replay)
    return Manifest(header, specs)
