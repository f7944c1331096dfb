"""Replay of VRP-SAM's validation (9c53a6a), which runs inside ``train.py``.

What the official code does (read there):

- ``train.sh`` launches 4 processes (``--nproc_per_node=4``); before validating, each calls
  ``utils.fix_randseed(args.seed)`` (``--seed 321``: ``np.random.seed``, ``random.seed``,
  torch), so every rank starts from the same NumPy and Python ``random`` states.
- ``data/dataset.py`` builds the val loader with ``nworker=0`` and a
  ``DistributedSampler(shuffle=False)``: rank ``r`` draws ``dataset[r], dataset[r + 4], ...``
  (1000 items, 250 per rank) in its main process.
- COCO (``data/coco.py``): ``load_frame`` ignores the index: class ``np.random.choice`` of
  the fold's 20, query and supports by ``np.random.choice`` from the class's list of
  ``fss_list/val/sub_class_file_list_{f}.txt`` (supports until ``shot`` differ from the
  query). Every rank therefore draws the same 250 episodes, and ``AverageMeter`` sums the
  ranks' intersections and unions (``reduce_metrics(average=False)``): 250 distinct
  episodes, each counted 4 times. The manifest holds the 250; since every one counts the
  same number of times, per-class ratios, mIoU and FB-IoU equal the official ones.
- PASCAL (``data/pascal.py``): the query is ``data_list[idx mod N]`` (rank ``r``'s ``j``-th
  item is ``idx = r + 4j``), the class ``random.randint`` over the novel classes in its label
  (any size), supports by ``np.random.choice`` from the class's list, rejecting the query.
- Only ``--condition mask``, ``box`` and ``point`` leave the NumPy stream to the loader:
  under ``scribble`` the model's stroke generator (``common/utils.py``
  ``get_mask_by_input_strokes``) draws from the same global NumPy stream between batches,
  in amounts that depend on the support masks, so those runs drew other episodes.
"""

from __future__ import annotations

import math
import random

import numpy as np

from refseg_bench.replay import Replay, ReplayError
from refseg_bench.replay.hsnet import class_then_query, draw_supports
from refseg_bench.replay.official import compare_bam_lists

COVERED = {
    "pascal5i": "data/pascal.py on the BAM-format val lists, 4 ranks",
    "coco20i": "data/coco.py on the BAM-format val lists: the 250 episodes every rank draws",
}
IMPOSSIBLE: dict[str, str] = {}
SCRIBBLE_NOTE = ("official episodes of validation with --condition mask, box or point; with "
                 "--condition scribble the stroke generator shares the loader's NumPy stream")
FOLD0_NOTE = ("VRP-SAM's repository lacks fss_list/val/*_0.txt for COCO: fold 0 is checked "
              "against the BAM-format lists rebuilt from FSSAM's and HSNet's")
CAVEATS = (SCRIBBLE_NOTE, FOLD0_NOTE)


def pascal_ranks(queries, present, pools, shot: int, n: int, seed: int, ranks: int):
    """Dataset items ``0 .. n-1`` (padded as ``DistributedSampler`` pads), each drawn by
    the rank that owns it with that rank's own, identically seeded, streams."""
    total = math.ceil(n / ranks) * ranks
    order = [i % n for i in range(total)]  # DistributedSampler pads with the first items
    out: list = [None] * total
    for r in range(ranks):
        py, rs = random.Random(seed), np.random.RandomState(seed)
        for pos in range(r, total, ranks):
            q = queries[order[pos] % len(queries)]
            classes = present(q)
            if not classes:
                raise ReplayError(f"{q} shows no novel class: VRP-SAM's loader asserts here")
            c = classes[py.randint(1, len(classes)) - 1]
            out[pos] = (c, q, draw_supports(rs, pools[c], q, shot, f"item {pos} ({q})"))
    return out


def replay(ds, fold: int, split: str, shot: int, n: int, seed: int, spec: dict) -> Replay:
    if ds.name not in COVERED:
        raise ReplayError(f"VRP-SAM has no official episodes on {ds.name}; exact replays "
                          f"exist for {', '.join(COVERED)}")
    if ds.name == "pascal5i" and ds.options.get("lists") != "pfenet":
        raise ReplayError("VRP-SAM reads BAM-format lists: use dataset_args.lists=pfenet")
    if ds.name == "coco20i" and ds.options.get("class_split") != "interleaved":
        raise ReplayError("VRP-SAM uses the interleaved COCO split: "
                          "dataset_args.class_split=interleaved")
    ranks = int(spec.get("ranks", 4))
    queries = ds.query_items(fold, split)
    pools = {c: ds.items(fold, split, c) for c in ds.classes(fold, split)}
    lists, why = compare_bam_lists(ds.name, fold, queries, pools)
    notes = [SCRIBBLE_NOTE]
    rng = "per rank: numpy RandomState(seed) and random.Random(seed) (fix_randseed)"
    if ds.name == "coco20i":
        episodes = class_then_query(sorted(pools), pools, shot, n, seed)
        info = {"ranks": ranks, "copies": ranks, "counted": n * ranks,
                "weighting": f"each episode counted {ranks} times in the official sums "
                             "(one per rank): ratios unchanged"}
        if fold == 0:
            notes.append(FOLD0_NOTE)
    else:
        episodes = pascal_ranks(queries, lambda q: ds.item_classes(fold, split, q), pools,
                                shot, n, seed, ranks)
        info = {"ranks": ranks}
    info.update(loader=f"VRP-SAM data/{'coco' if ds.name == 'coco20i' else 'pascal'}.py",
                rng=rng, lists_check=why)
    return Replay(episodes, lists, info, tuple(notes))
