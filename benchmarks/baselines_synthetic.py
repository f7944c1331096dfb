"""Few-shot mIoU and speed of the weight-free baselines on the embedded synthetic benchmark.

For every fold and annotation kind: HSNet-protocol episodes (``sample_episodes`` with the
``hsnet`` preset, val split), built with ``refseg_bench.loading.load_episode`` and scored
with ``refseg_bench.scorer.Scorer`` at original size with 255 ignored. Methods: ``proto``,
``all-fg`` (foreground everywhere: the chance level a method must beat), and optionally
``oracle`` / ``empty`` as end-to-end checks (they must print 100 and 0).

Run: ``.venv/bin/python benchmarks/baselines_synthetic.py --episodes 200``
(``--help`` for options). The data root is ``$REFSEG_BENCH_DATA`` or
``~/.cache/refseg-bench/data``, as for the CLI.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from perf_report import headline

from refseg_bench.config import DATA_ENV, DEFAULT_DATA_ROOT
from refseg_bench.datasets.synthetic import SyntheticDataset
from refseg_bench.episodes import ANNOTATION_KINDS, EpisodeBatch
from refseg_bench.loading import load_episode
from refseg_bench.methods.base import Method
from refseg_bench.methods.baselines import Empty, Oracle, Prototype
from refseg_bench.protocols import load_protocol
from refseg_bench.sampler import sample_episodes
from refseg_bench.scorer import Scorer


class AllForeground(Method):
    name = "all-fg"

    def predict(self, batch: EpisodeBatch) -> list[torch.Tensor]:
        return [torch.ones(ep.query_size) for ep in batch]


def data_root() -> Path:
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT).expanduser() / "synthetic"


def evaluate(method: Method, loaded: list, annotation: str, class_ids: list[int],
             batch_size: int) -> tuple[float, float, float]:
    """(mIoU, FB-IoU, CPU ms per episode of ``predict``) over the loaded episodes.

    CPU time of this process rather than wall time: other processes on a shared machine
    inflate wall time but not this."""
    scorer = Scorer(class_ids)
    elapsed = 0.0
    for i in range(0, len(loaded), batch_size):
        chunk = [le for le in loaded[i:i + batch_size] if le.episode is not None]
        start = time.process_time()
        preds = method.predict(EpisodeBatch([le.episode for le in chunk], annotation))
        elapsed += time.process_time() - start
        scorer.update(preds, [le.label for le in chunk], [le.spec.class_id for le in chunk])
    s = scorer.compute()
    return s.miou, s.fbiou, 1000 * elapsed / max(len(loaded), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=200, help="episodes per fold")
    parser.add_argument("--shot", type=int, default=1)
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--annotations", nargs="+", default=list(ANNOTATION_KINDS))
    parser.add_argument("--checks", action="store_true", help="also run oracle and empty")
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--max-side", type=int, default=Prototype().max_side,
                        help="proto working size (px)")
    args = parser.parse_args()

    torch.set_num_threads(1)  # a per-episode timing, comparable across machines
    start = time.perf_counter()
    ds = SyntheticDataset(args.root or data_root())
    print(f"dataset ready in {time.perf_counter() - start:.1f} s: {ds.data_dir}")
    methods: list[Method] = [Prototype(max_side=args.max_side), AllForeground()]
    if args.checks:
        methods += [Oracle(), Empty()]
    for m in methods:
        m.setup(torch.device("cpu"), ds)
    protocol = load_protocol("hsnet")
    print(f"{'annotation':<10} {'method':<7} " + " ".join(f"fold{f:<3}" for f in args.folds)
          + "   mean  FB-IoU  cpu ms/ep")
    over_chance = []
    for annotation in args.annotations:
        rows: dict[str, list[tuple[float, float, float]]] = {m.name: [] for m in methods}
        for fold in args.folds:
            manifest = sample_episodes(ds, fold, "val", args.shot, args.episodes,
                                       protocol.seed, protocol)
            loaded = [load_episode(ds, spec, annotation) for spec in manifest.episodes]
            for m in methods:
                rows[m.name].append(evaluate(m, loaded, annotation, ds.classes(fold, "val"), 16))
        for name, res in rows.items():
            mious = [r[0] for r in res]
            print(f"{annotation:<10} {name:<7} " + " ".join(f"{v:7.1f}" for v in mious)
                  + f" {sum(mious) / len(mious):6.1f} {sum(r[1] for r in res) / len(res):7.1f}"
                  + f" {sum(r[2] for r in res) / len(res):6.1f}")
        proto, chance = (sum(r[0] for r in rows[n]) for n in ("proto", "all-fg"))
        over_chance.append(proto / max(chance, 1e-9))
    headline("proto mIoU over all-foreground chance (synthetic, mean over annotation kinds)",
             sum(over_chance) / len(over_chance),
             note=f"{args.episodes} episodes x {len(args.folds)} folds per kind")


if __name__ == "__main__":
    main()
