"""Per-episode time of the official Matcher code and of the ``matcher`` adapter, side by
side in one run: same model sizes and weights, same episodes in the same order, identical
masks asserted.

Two kinds of episodes (generated scenes, one object each):

- ``new``: every episode has a query and a reference seen nowhere else, so nothing the
  adapter caches by image content (DINOv2 features, the SAM embedding, COCO's dense-grid
  proposals) is ever reused: the cost of an episode on its own. COCO-20i is close to this
  (a class drawn uniformly, then a query from that class's long list: queries rarely recur).
- ``fold``: episodes walk a list of (class, image) items in order and wrap around, the
  reference a random other image of the class (HSNet's PASCAL-5i test loader: 1000
  episodes over 346 to 725 items, so each query recurs 1.4 to 2.9 times; PASCAL-5i takes
  the ``coco`` script). The caches then skip the SAM embedding and the dense proposals of
  a recurring query and the features of every image already seen.

The official side runs in a child process from a patched copy of the checkout named by
``MATCHER_OFFICIAL_DIR`` (``tests/methods/matcher_official.py``; it needs ``cv2``:
``pip install opencv-python-headless``). ``--baseline-python`` adds a column for another
version of the adapter: an interpreter whose installed ``refseg_bench`` is that version
(e.g. the main checkout's ``.venv/bin/python``), run in a child process on the same
episodes, masks asserted identical too.

CPU sections: the tiny preset (random tiny SAM at 256, tiny DINOv2) on the ``fss`` and
``coco`` scripts (``--grid`` sets COCO's dense grid on both sides; the script's 64 costs
the official code minutes per episode on a CPU). Run with ``OMP_NUM_THREADS=1`` for steadier
numbers on a shared machine (it reaches both children). GPU section: SAM ViT-H at 1024 and
DINOv2 ViT-L/14 with random (calibrated) weights on CUDA on ``new`` episodes; without CUDA
it prints why and skips.

Run: ``MATCHER_OFFICIAL_DIR=... .venv/bin/python benchmarks/perf_matcher.py`` (``--help``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "methods"))

import matcher_official  # noqa: E402
from perf_report import headline, skipped  # noqa: E402

from refseg_bench.episodes import Annotation, Episode, EpisodeSpec  # noqa: E402
from refseg_bench.methods.matcher.adapter import Matcher  # noqa: E402

_CHILD = "--adapter-child"
TARGET = 3.0  # x: the official code's mean seconds per episode over ours


def _episode(index: int, cls: int, names: tuple[str, str], query: np.ndarray,
             ref: tuple[np.ndarray, np.ndarray]) -> Episode:
    spec = EpisodeSpec(index, 0, cls + 1, names[0], (names[1],), index)
    image, mask = ref
    return Episode(spec, f"class{cls}", query, [image], [Annotation("mask", raster=mask)],
                   [mask.astype(np.uint8)])


def _scene(rng: np.random.Generator):
    return matcher_official.scene(int(rng.integers(200, 420)), int(rng.integers(200, 420)), rng)


def new_episodes(n: int, seed: int) -> list[Episode]:
    """``n`` episodes, each with a query and a reference used nowhere else."""
    rng = np.random.default_rng(seed)
    return [_episode(i, 0, (f"q{i}", f"r{i}"), _scene(rng)[0], _scene(rng)) for i in range(n)]


def fold_episodes(classes: int, per_class: int, n: int, seed: int) -> list[Episode]:
    """``n`` episodes walking the ``classes x per_class`` (class, image) items in order,
    wrapping around; the reference a random other image of the query's class."""
    rng = np.random.default_rng(seed)
    pools = [[_scene(rng) for _ in range(per_class)] for _ in range(classes)]
    out = []
    for i in range(n):
        c, j = divmod(i % (classes * per_class), per_class)
        r = (j + 1 + int(rng.integers(per_class - 1))) % per_class
        out.append(_episode(i, c, (f"c{c}_{j}", f"c{c}_{r}"), pools[c][j][0], pools[c][r]))
    return out


def _adapter(setting: str, options: dict, overrides: dict, device: torch.device) -> Matcher:
    ours = Matcher(setting=setting, setting_overrides=overrides, **options)
    ours.setup(device)
    ours.use_setting(setting, "", 1)
    ours.start_streams(0)
    return ours


def _time_adapter(ours: Matcher, episodes: list[Episode], device: torch.device):
    masks, seconds = [], []
    for ep in episodes:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        masks.append(ours.segment(ep).cpu())
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return masks, seconds


def adapter_child(job_path: str, out_path: str) -> None:
    """Child process: the installed adapter on a saved job (``--baseline-python``)."""
    job = torch.load(job_path, weights_only=True)
    device = torch.device(job["device"])
    episodes = [_episode(i, 0, (f"q{i}", f"r{i}"), e["query"].numpy(),
                         (e["supports"][0].numpy(), e["masks"][0].numpy()))
                for i, e in enumerate(job["episodes"])]
    ours = _adapter(job["setting"], job["options"], job["overrides"], device)
    masks, seconds = _time_adapter(ours, episodes, device)
    torch.save({"masks": masks, "seconds": seconds}, out_path)


def _baseline(python: str, job: dict, tmp: Path) -> dict:
    """The adapter installed for ``python`` on the official job's episodes."""
    job_path, out_path = tmp / "baseline_job.pt", tmp / "baseline_out.pt"
    torch.save(job, job_path)
    proc = subprocess.run([python, __file__, _CHILD, str(job_path), str(out_path)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"baseline adapter run failed ({proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return torch.load(out_path, weights_only=True)


def _print_table(columns: dict) -> None:
    """Seconds per episode of each column and the official time over each other's."""
    table = {k: np.array(v["seconds"]) for k, v in columns.items()}
    others = [k for k in columns if k != "official"]
    print(f"{'episode':>8}" + "".join(f"{k + ' s':>12}" for k in table)
          + "".join(f"{'official/' + k:>17}" for k in others))
    n = len(table["official"])
    for i in [*range(n), "mean"]:
        row = {k: (v.mean() if i == "mean" else v[i]) for k, v in table.items()}
        print(f"{i:>8}" + "".join(f"{row[k]:12.2f}" for k in table)
              + "".join(f"{row['official'] / row[k]:17.2f}" for k in others))


def compare(title: str, setting: str, episodes: list[Episode], options: dict,
            device: torch.device, extra: tuple[str, ...], baseline: str | None) -> None:
    overrides = {extra[i].lstrip("-"): int(extra[i + 1]) for i in range(0, len(extra), 2)}
    ours = _adapter(setting, options, overrides, device)
    job = matcher_official.job_for(ours, setting, episodes, extra)
    job["device"] = str(device)
    columns = {}
    with tempfile.TemporaryDirectory() as tmp:
        columns["official"] = matcher_official.launch(job, Path(tmp))
        if baseline:
            columns["before"] = _baseline(baseline, {
                "setting": setting, "options": options, "overrides": overrides,
                "device": str(device), "episodes": job["episodes"]}, Path(tmp))
    masks, seconds = _time_adapter(ours, episodes, device)
    columns["ours"] = {"masks": masks, "seconds": seconds}
    name = setting + (" " + " ".join(extra) if extra else "")
    print(f"\n{title}: {name} (weights seed {ours.spec.init_seed}), {len(episodes)} episodes, "
          f"{device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"emd_workers {ours.opts.emd_workers}")
    _print_table(columns)
    reference = columns["official"]["masks"]
    same = {k: sum(torch.equal(a, b) for a, b in zip(v["masks"], reference, strict=True))
            for k, v in columns.items() if k != "official"}
    stats = ours.cache.stats
    print("masks identical to the official code: "
          + ", ".join(f"{k} {n}/{len(episodes)}" for k, n in same.items())
          + f"; ours: EMD solved {ours.emd.solved} of {ours.emd.requested} scores (the "
          f"official code solves every proposal's), cache hits {stats.hits}, misses "
          f"{stats.misses}")
    if any(n != len(episodes) for n in same.values()):
        raise SystemExit(f"{title} {name}: masks differ from the official code: {same}")
    ratio = float(np.mean(columns["official"]["seconds"]) / np.mean(seconds))
    headline(f"matcher vs official code, {title}, {name}, {device.type}", ratio, TARGET,
             note=f"{len(episodes)} episodes, identical masks")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", nargs="+", choices=["new", "fold", "gpu"],
                   default=["new", "fold", "gpu"])
    p.add_argument("--settings", nargs="+", default=["fss", "coco"],
                   help="scripts of the new and gpu sections")
    p.add_argument("--fold-settings", nargs="+", default=["coco"])
    p.add_argument("--episodes", type=int, default=6, help="episodes of the new section")
    p.add_argument("--fold", type=int, nargs=3, default=[2, 3, 12],
                   metavar=("CLASSES", "PER_CLASS", "EPISODES"),
                   help="fold section: items walked in order (default: each query twice)")
    p.add_argument("--grid", type=int, default=16, help="COCO dense grid (script: 64)")
    p.add_argument("--fss-seed", type=int, default=1,
                   help="random-weight seed for FSS: seed 0's single-mask proposals all share "
                   "one 37 x 37 mask (one EMD per episode); seed 1's differ (every EMD runs)")
    p.add_argument("--baseline-python", default=None,
                   help="interpreter whose installed refseg_bench is the adapter version to "
                   "compare with (a 'before' column)")
    args = p.parse_args()
    if args.fold[1] < 2:
        p.error("--fold: PER_CLASS must be >= 2 (a reference is another image of the class)")
    if not os.environ.get(matcher_official.OFFICIAL_ENV):
        reason = (f"set {matcher_official.OFFICIAL_ENV} to a checkout of "
                  "github.com/aim-uofa/Matcher (and install cv2)")
        print(f"skipped: {reason}")
        skipped("matcher vs official code, per episode", reason, TARGET)
        return
    grid = ("--points_per_side", str(args.grid)) if args.grid != 64 else ()
    extra = {"coco": grid, "coco_5shot": grid, "lvis": grid, "lvis_5shot": grid}
    cpu = torch.device("cpu")

    def tiny(setting: str) -> dict:
        return {"size": "tiny", "model": {
            "init_seed": args.fss_seed if setting.startswith("fss") else 0}}

    if "new" in args.sections:
        for setting in args.settings:
            compare("new images", setting, new_episodes(args.episodes, seed=3), tiny(setting),
                    cpu, extra.get(setting, ()), args.baseline_python)
    if "fold" in args.sections:
        episodes = fold_episodes(*args.fold, seed=5)
        for setting in args.fold_settings:
            compare("fold (recurring images)", setting, episodes, tiny(setting), cpu,
                    extra.get(setting, ()), args.baseline_python)
    if "gpu" in args.sections:
        if not torch.cuda.is_available():
            print("\nGPU section skipped: CUDA is not available. It compares the official "
                  "code and the adapter per episode with SAM ViT-H at 1024 and DINOv2 "
                  "ViT-L/14 (random calibrated weights); run it on a machine with a GPU.")
            skipped("matcher vs official code, real size, cuda", "no CUDA device", TARGET)
            return
        real_random = {"size": "real", "model": {"sam_checkpoint": None,
                                                 "dinov2_checkpoint": None,
                                                 "sam_logit_scale": 400.0,
                                                 "sam_iou_offset": 0.85}}
        for setting in args.settings:
            compare("new images", setting, new_episodes(args.episodes, seed=3), real_random,
                    torch.device("cuda"), extra.get(setting, ()), args.baseline_python)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == _CHILD:
        adapter_child(sys.argv[2], sys.argv[3])
    else:
        main()
