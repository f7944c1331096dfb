"""Replay of the PFENet-family test loaders: PFENet (a505675), BAM (c0f935c), FSSAM
(9318e28).

What the official code does (read there):

- ``test.py`` seeds torch before validating (PFENet ``validate``: ``torch.manual_seed(321)``
  with ``fix_random_seed_val``; BAM and FSSAM ``validate``: ``setup_seed(val_seed)``) and
  then loops over passes of the val loader (``shuffle=False``, ``num_workers=workers``,
  ``batch_size_val=1``) until enough episodes are done.
- Each pass creates a new DataLoader iterator, which draws its ``base_seed`` from torch's
  default generator (``torch.empty((), dtype=torch.int64).random_()``); worker ``w`` of
  ``W`` runs ``random.seed(base_seed + w)`` (torch ``_worker_loop``) and is handed batches
  ``w, w + W, ...`` (``_try_put_index`` cycles the workers), which it draws in order.
- ``util/dataset.py`` ``SemData.__getitem__`` (identical in the three, BAM's extra base
  label aside): the class is ``label_class[random.randint(1, len) - 1]`` over the novel
  classes present in the query's label at any size (ascending, ``np.unique``); each support
  first draws ``random.randint(1, num_file) - 1`` and throws it away (the ``while`` test is
  true on entry, the path still being the query's), then redraws until the support is not
  the query and not an index already taken. The val transforms draw nothing.
- Workers: 8 in PFENet's PASCAL configs, 16 in its COCO configs, 8 in BAM's, 32 in FSSAM's.
- Episode counts: PFENet stops when ``(iter_num - 1) * batch >= test_num``, so it runs
  ``test_num + 1`` (5001 PASCAL, 20001 COCO); BAM and FSSAM stop at ``test_num`` (1000).

The torch generator is the installed one: the official runs used torch 1.x (PFENet's README:
1.4.0); that it draws the same ``int64`` from a seed is likely, not checked here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

from refseg_bench.replay import Replay, ReplayError
from refseg_bench.replay.official import compare_bam_lists

Episode = tuple[int, str, tuple[str, ...]]

COVERED = {
    "pascal5i": "util/dataset.py SemData on the PFENet/BAM val lists (lists=pfenet)",
    "coco20i": "util/dataset.py SemData on the BAM-format val lists (query_order=bam)",
}
IMPOSSIBLE: dict[str, str] = {}
CLASS_NOTE = ("the episode class is drawn among the novel classes present in the query's "
              "label at any size, from this dataset's masks")
CAVEATS = (CLASS_NOTE, "torch draws the per-pass base seeds: the installed torch is used (the "
                       "papers ran torch 1.x; the same draws there are likely, not checked)")


def base_seeds(seed: int) -> Iterator[int]:
    """The ``base_seed`` of each successive DataLoader iterator after
    ``torch.manual_seed(seed)``."""
    import torch

    g = torch.Generator()
    g.manual_seed(seed)
    while True:
        yield int(torch.empty((), dtype=torch.int64).random_(generator=g).item())


def draw_episode(r: random.Random, query: str, classes: Sequence[int],
                 pools: dict[int, Sequence[str]], shot: int) -> Episode:
    """One ``SemData.__getitem__``: the class, then ``shot`` distinct supports."""
    if not classes:
        raise ReplayError(f"{query} shows no novel class: the official loader asserts here")
    c = classes[r.randint(1, len(classes)) - 1]
    pool = pools[c]
    if sum(p != query for p in pool) < shot:
        raise ReplayError(f"class {c} lists {len(pool)} image(s) for query {query}: the "
                          f"official support loop would never find {shot} others")
    taken: list[int] = []
    supports: list[str] = []
    for _ in range(shot):
        j = r.randint(1, len(pool)) - 1  # drawn, then discarded by the while test
        s = query
        while s == query or j in taken:
            j = r.randint(1, len(pool)) - 1
            s = pool[j]
        taken.append(j)
        supports.append(s)
    return c, query, tuple(supports)


def file_order(queries: Sequence[str], present: Callable[[str], Sequence[int]],
               pools: dict[int, Sequence[str]], shot: int, n: int, seed: int, workers: int,
               batch_size: int = 1) -> list[Episode]:
    """The first ``n`` episodes of the val loop: passes over ``queries``, each pass with
    fresh worker streams ``random.Random(base_seed + w)``."""
    if workers < 1:
        raise ReplayError(f"replay workers must be >= 1 (the official configs use 8-32), "
                          f"got {workers}")
    if not queries:
        raise ReplayError("the val list is empty")
    out: list[Episode] = []
    seeds = base_seeds(seed)
    while len(out) < n:
        base = next(seeds)
        streams = [random.Random(base + w) for w in range(workers)]
        for idx in range(min(len(queries), n - len(out))):
            r = streams[(idx // batch_size) % workers]
            out.append(draw_episode(r, queries[idx], present(queries[idx]), pools, shot))
    return out


def replay(ds, fold: int, split: str, shot: int, n: int, seed: int, spec: dict) -> Replay:
    if ds.name not in COVERED:
        raise ReplayError(f"the PFENet-family loaders have no official episodes on {ds.name}; "
                          f"exact replays exist for {', '.join(COVERED)}")
    if ds.name == "pascal5i" and ds.options.get("lists") != "pfenet":
        raise ReplayError("PFENet's loader walks its 2048-pixel image lists: use "
                          "dataset_args.lists=pfenet (the pfenet, bam and fssam presets do)")
    if ds.name == "coco20i" and ds.options.get("class_split") != "interleaved":
        raise ReplayError("the PFENet family evaluates COCO-20i on the interleaved split "
                          "(use_split_coco: True): dataset_args.class_split=interleaved")
    queries = ds.query_items(fold, split)
    pools = {c: ds.items(fold, split, c) for c in ds.classes(fold, split)}
    lists, why = compare_bam_lists(ds.name, fold, queries, pools)
    workers, batch = int(spec.get("workers", 8)), int(spec.get("batch_size", 1))
    episodes = file_order(queries, lambda q: ds.item_classes(fold, split, q), pools, shot, n,
                          seed, workers, batch)
    info = {"loader": "util/dataset.py SemData via torch DataLoader", "workers": workers,
            "batch_size": batch,
            "rng": "torch.manual_seed(seed); per pass base_seed from torch's generator; worker "
                   "w: random.Random(base_seed + w) on batches w, w + W, ...",
            "lists_check": why}
    return Replay(episodes, lists, info, (CLASS_NOTE,))
