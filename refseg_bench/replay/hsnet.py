"""Replay of the HSNet-family test loaders: hsnet (6b1bc12), Matcher (d59b6c7), PATNet
(0155c5f).

What the official code does (read there):

- ``test.py`` / ``main_oss.py`` call ``utils.fix_randseed(0)`` (``np.random.seed(0)``) once
  before the test loop; ``data/dataset.py`` builds the test loader with ``shuffle=False``
  and ``nworker=0``, so episode ``i`` is ``dataset[i]`` drawn in the main process from the
  legacy global ``RandomState``. Nothing else draws from it during the loop (the models use
  torch or Python ``random``).
- Every draw is ``np.random.choice(seq, 1, replace=False)[0]``, which consumes
  ``permutation(len(seq))``: replayed here with ``RandomState.choice`` on the length.
- Supports (all loaders): draw from the class's list until ``shot`` draws differ from the
  query (``while True: ... if query_name != support_name: append``); repeats possible.
- PASCAL-5i (``data/pascal.py``): episode ``i`` is pair ``i mod N`` of
  ``splits/pascal/val/fold{f}.txt``; a class's list is its pairs in file order.
- COCO-20i (``data/coco.py``): class ``choice(class_ids)`` (``fold + 4v``), query
  ``choice(list)``, then supports; lists in the order of ``splits/coco/val/fold{f}.pkl``
  (shipped, see ``official.py``). The episode index is not used.
- FSS-1000 (``data/fss.py``): every test image is the query once: classes by sorted name,
  images in sorted path order (``1.jpg, 10.jpg, 2.jpg, ...``: strings, not numbers);
  supports ``choice(range(1, 11))`` in the query's folder.
- Deepglobe / ISIC / Chest X-ray (PATNet ``data/deepglobe.py``, ``isic.py``, ``lung.py``):
  class ``idx mod n_classes``; query and supports by ``choice`` from the class's files in
  sorted path order (Chest X-ray lists its mask files); 600 episodes (``num=600``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from refseg_bench.datasets.layout import read_lines
from refseg_bench.replay import Replay, ReplayError
from refseg_bench.replay.official import hsnet_coco_orders

Episode = tuple[int, str, tuple[str, ...]]
RNG = ("numpy legacy RandomState(seed): np.random.seed in fix_randseed, one "
       "choice(list, 1, replace=False) per draw")

COVERED = {
    "pascal5i": "hsnet data/pascal.py (= Matcher, PATNet): HSNet's pair lists",
    "coco20i": "hsnet data/coco.py (= Matcher): the per-class order of HSNet's val pkl",
    "fss1000": "hsnet data/fss.py (= Matcher, PATNet): string-sorted file names",
    "deepglobe": "PATNet data/deepglobe.py: string-sorted tiles",
    "isic2018": "PATNet data/isic.py: string-sorted images",
    "chestxray": "PATNet data/lung.py: string-sorted mask files",
}
IMPOSSIBLE = {
    "lvis92i": "Matcher data/lvis.py draws by position in the keys of its lvis_val.pkl, which "
               "is not in Matcher's repository (a separate download), so the order is unknown",
}
CAVEATS = ("Deepglobe, ISIC and Chest X-ray have no published lists: the official loaders "
           "list the dataset folders, replayed here in the same order",)


def _draw(rs: np.random.RandomState, n: int) -> int:
    """One ``np.random.choice(seq, 1, replace=False)[0]`` as a position in ``seq``."""
    return int(rs.choice(n, 1, replace=False)[0])


def draw_supports(rs: np.random.RandomState, pool: Sequence[str], query: str, shot: int,
                  where: str) -> tuple[str, ...]:
    """HSNet's support loop: draw until ``shot`` draws differ from the query."""
    if all(p == query for p in pool):
        raise ReplayError(f"{where}: the class lists only the query, so the official support "
                          "loop would never end")
    out: list[str] = []
    while len(out) < shot:
        s = pool[_draw(rs, len(pool))]
        if s != query:
            out.append(s)
    return tuple(out)


def query_cycle(queries: Sequence[tuple[int, str]], pools: dict[int, Sequence[str]],
                shot: int, n: int, seed: int) -> list[Episode]:
    """Episode ``i`` queries ``queries[i mod N]`` (PASCAL pairs, FSS-1000 images)."""
    rs = np.random.RandomState(seed)
    out = []
    for i in range(n):
        c, q = queries[i % len(queries)]
        out.append((c, q, draw_supports(rs, pools[c], q, shot, f"episode {i} ({q})")))
    return out


def class_then_query(class_ids: Sequence[int], pools: dict[int, Sequence[str]], shot: int,
                     n: int, seed: int,
                     pick_class: Callable[[np.random.RandomState, int], int] | None = None
                     ) -> list[Episode]:
    """HSNet COCO: class by ``choice(class_ids)`` (``pick_class(rs, i)`` for the loaders
    that take ``idx mod n_classes``), query by ``choice`` from its list, then supports."""
    rs = np.random.RandomState(seed)
    out = []
    for i in range(n):
        k = pick_class(rs, i) if pick_class else _draw(rs, len(class_ids))
        c = class_ids[k]
        pool = pools[c]
        if not pool:
            raise ReplayError(f"class {c} has no images: the official loader fails here")
        q = pool[_draw(rs, len(pool))]
        out.append((c, q, draw_supports(rs, pool, q, shot, f"episode {i} ({q})")))
    return out


def round_robin(class_ids: Sequence[int], pools: dict[int, Sequence[str]], shot: int, n: int,
                seed: int) -> list[Episode]:
    """PATNet cross-domain: class ``idx mod n_classes``, then query and supports."""
    return class_then_query(class_ids, pools, shot, n, seed,
                            pick_class=lambda _rs, i: i % len(class_ids))


# --- datasets -----------------------------------------------------------------------------
def _pascal(ds, fold, split, shot, n, seed) -> Replay:
    if ds.options.get("lists") != "hsnet":
        raise ReplayError("HSNet's PASCAL loader reads its pair lists: use "
                          "dataset_args.lists=hsnet (the hsnet, matcher and patnet presets do)")
    pairs = ds.pairs(fold, split)
    lines = read_lines(f"pkg:pascal5i/hsnet/val/fold{fold}.txt")
    shipped = [(i, int(c)) for i, _, c in (line.partition("__") for line in lines)]
    lists = "official" if pairs == shipped else "differ"
    pools: dict[int, list[str]] = {}
    for item, c in pairs:  # a class's list is its pairs in file order, as in HSNet
        pools.setdefault(c, []).append(item)
    episodes = query_cycle([(c, q) for q, c in pairs], pools, shot, n, seed)
    notes = () if lists == "official" else (
        "the pair lists differ from HSNet's splits/pascal/val (split_files): the official "
        "draw sequence on other lists",)
    return Replay(episodes, lists, {"loader": "hsnet data/pascal.py", "rng": RNG}, notes)


def _coco(ds, fold, split, shot, n, seed) -> Replay:
    if ds.options.get("class_split") != "interleaved":
        raise ReplayError("HSNet's COCO loader uses the interleaved split: "
                          "dataset_args.class_split=interleaved")
    orders = hsnet_coco_orders(fold)
    class_ids = [fold + 1 + 4 * v for v in range(20)]  # HSNet: fold + nfolds * v, 0-based
    episodes = class_then_query(class_ids, orders, shot, n, seed)
    return Replay(episodes, "official", {"loader": "hsnet data/coco.py", "rng": RNG},
                  ("queries and supports come from HSNet's val pkl lists (shipped); pixels "
                   "from this dataset's masks option",))


def _fss(ds, fold, split, shot, n, seed) -> Replay:
    queries, pools = [], {}
    for c in ds.classes(fold, split):
        name = ds.class_name(c)
        # glob + sorted(): '1.jpg' < '10.jpg' < '2.jpg'
        items = sorted(ds.items(fold, split, c), key=lambda i: i.split("/")[-1] + ".jpg")
        queries += [(c, i) for i in items]
        pools[c] = [f"{name}/{k}" for k in range(1, 11)]  # choice(range(1, 11))
    complete = ds.options.get("class_split") == "hsnet" and len(queries) == 10 * len(pools) \
        and len(pools) == {"train": 520}.get(split, 240)
    episodes = query_cycle(queries, pools, shot, min(n, len(queries)), seed)
    notes = () if complete else ("not every class of HSNet's split with its 10 images is "
                                 "present: the official sequence on a subset",)
    return Replay(episodes, "official" if complete else "differ",
                  {"loader": "hsnet data/fss.py", "rng": RNG}, notes)


def _folder_sorted(ds, fold, split, shot, n, seed, name_of, loader) -> Replay:
    classes = ds.classes(fold, split)
    pools = {c: sorted(ds.items(fold, split, c), key=name_of) for c in classes}
    return Replay(round_robin(classes, pools, shot, n, seed), "unverified",
                  {"loader": loader, "rng": RNG},
                  ("the official loader lists the dataset folders (no published list): the "
                   "same files give the same episodes",))


ADAPTERS = {
    "pascal5i": _pascal,
    "coco20i": _coco,
    "fss1000": _fss,
    "deepglobe": lambda *a: _folder_sorted(*a, lambda i: i.split("/")[-1] + ".jpg",
                                           "PATNet data/deepglobe.py"),
    "isic2018": lambda *a: _folder_sorted(*a, lambda i: i + ".jpg", "PATNet data/isic.py"),
    "chestxray": lambda *a: _folder_sorted(*a, lambda i: i + ".png", "PATNet data/lung.py"),
}


def replay(ds, fold: int, split: str, shot: int, n: int, seed: int, spec: dict) -> Replay:
    if ds.name in IMPOSSIBLE:
        raise ReplayError(f"no exact replay on {ds.name}: {IMPOSSIBLE[ds.name]}")
    if ds.name not in ADAPTERS:
        raise ReplayError(f"the HSNet-family loaders have no official episodes on {ds.name}; "
                          f"exact replays exist for {', '.join(ADAPTERS)}")
    return ADAPTERS[ds.name](ds, fold, split, shot, n, seed)
