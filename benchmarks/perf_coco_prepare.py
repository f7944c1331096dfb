"""Time and peak memory of ``refseg-bench data prepare coco20i`` against annotation count.

Generates COCO2014-layout replicas (``instances_{train,val}2014.json`` with the real 80
categories, polygons, uncompressed crowd RLEs and compressed RLEs, 640x480 images listed
as empty placeholder files since ``prepare`` never decodes pixels) with N, 2N and 4N
annotations, runs ``Coco20i.prepare`` for each in a fresh subprocess, and prints wall and
CPU time (CPU time is the one to compare on a shared machine), CPU time per annotation and
the subprocess's peak RSS (``ru_maxrss``), next to the peak RSS of merely ``json.load``-ing
the same files, which is what a non-streaming prepare would pay before any mask work.

    .venv/bin/python benchmarks/perf_coco_prepare.py            # 20k, 40k, 80k annotations
    .venv/bin/python benchmarks/perf_coco_prepare.py --sizes 20000 160000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from perf_report import headline

H, W = 480, 640
ANNS_PER_IMAGE = 7  # COCO2014 averages about 7.3 instances per image


def _polygon(rng: np.random.Generator) -> list[list[float]]:
    """A star-shaped polygon with 8-30 vertices, 20-150 px radius."""
    n = int(rng.integers(8, 31))
    cx, cy = rng.uniform(50, W - 50), rng.uniform(50, H - 50)
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(20, 150) * rng.uniform(0.5, 1.0, n)
    xs = np.clip(cx + rad * np.cos(ang), 0, W - 1)
    ys = np.clip(cy + rad * np.sin(ang), 0, H - 1)
    return [np.round(np.stack([xs, ys], 1).ravel(), 2).tolist()]


def _rle(rng: np.random.Generator, compressed: bool) -> dict:
    from pycocotools import mask as mask_utils

    plane = np.zeros((H, W), np.uint8)
    y0, x0 = int(rng.integers(0, H - 100)), int(rng.integers(0, W - 150))
    plane[y0:y0 + int(rng.integers(20, 100)), x0:x0 + int(rng.integers(30, 150))] = 1
    rle = mask_utils.encode(np.asfortranarray(plane))
    if compressed:
        return {"size": [H, W], "counts": rle["counts"].decode()}
    flat = plane.ravel(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
    counts = runs.tolist() if flat[0] == 0 else [0, *runs.tolist()]
    return {"size": [H, W], "counts": counts}


def write_instances(path: Path, subset: str, n_ann: int, image_dir: Path, seed: int) -> None:
    """Stream an instances JSON of ``n_ann`` annotations to ``path`` (top-level key order as
    in the official files: info, images, licenses, annotations, categories)."""
    from refseg_bench.datasets.coco import coco_categories

    rng = np.random.default_rng(seed)
    cat_ids = [i for i, _ in coco_categories()]
    n_img = max(1, n_ann // ANNS_PER_IMAGE)
    image_dir.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write('{"info": {"year": 2014}, "images": [')
        for i in range(n_img):
            name = f"COCO_{subset}_{i + 1:012d}.jpg"
            (image_dir / name).touch()
            f.write(("," if i else "") + json.dumps(
                {"id": i + 1, "file_name": name, "height": H, "width": W, "license": 1}))
        f.write('], "licenses": [{"id": 1}], "annotations": [')
        # Annotation order is by category in the official files, not by image.
        image_of = rng.integers(1, n_img + 1, n_ann)
        cats = np.sort(rng.choice(cat_ids, n_ann, p=_frequencies(len(cat_ids))))
        for k in range(n_ann):
            r = rng.random()
            segm = _rle(rng, compressed=r < 0.05) if r < 0.10 else _polygon(rng)
            f.write(("," if k else "") + json.dumps(
                {"id": k + 1, "image_id": int(image_of[k]), "category_id": int(cats[k]),
                 "segmentation": segm, "iscrowd": int(0.05 <= r < 0.10), "area": 0.0,
                 "bbox": [0, 0, 1, 1]}))
        f.write('], "categories": ' + json.dumps(
            [{"id": i, "name": n, "supercategory": "x"} for i, n in coco_categories()]) + "}")


def _frequencies(n: int) -> np.ndarray:
    """A long-tailed class frequency (person-heavy, as in COCO)."""
    w = 1.0 / np.arange(1, n + 1) ** 0.8
    return w / w.sum()


def generate(root: Path, n_total: int, seed: int = 0) -> None:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for k, subset in enumerate(("train2014", "val2014")):
        write_instances(root / "annotations" / f"instances_{subset}.json", subset,
                        n_total // 2, root / subset, seed + k)


def child_prepare(root: Path) -> dict:
    """Runs in a fresh process: prepare, then report time and peak RSS."""
    import resource

    from refseg_bench.datasets.coco import Coco20i

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    ds = Coco20i(root, cache_dir=str(root / "cache"))
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu0 = time.perf_counter(), cpu()
    ds.prepare(log=lambda s: None)
    seconds, cpu_s = time.perf_counter() - start, cpu() - cpu0
    counts = [len(ds.query_items(f, "val")) for f in range(4)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "cpu_seconds": cpu_s, "peak_rss_mb": peak / 1024,
            "rss_after_imports_mb": base_rss / 1024, "val_queries": counts}


def child_json_load(root: Path) -> dict:
    import resource

    for subset in ("train2014", "val2014"):
        with open(root / "annotations" / f"instances_{subset}.json") as f:
            doc = json.load(f)
        del doc
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(mode: str, root: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, f"--child-{mode}", str(root)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 40_000, 80_000],
                        help="total annotations (train + val) per replica")
    parser.add_argument("--child-prepare", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-json-load", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_prepare:
        print(json.dumps(child_prepare(args.child_prepare)))
        return
    if args.child_json_load:
        print(json.dumps(child_json_load(args.child_json_load)))
        return
    print(f"{'annotations':>11} {'json MB':>8} {'wall s':>7} {'CPU s':>6} {'CPU us/ann':>10} "
          f"{'peak RSS MB':>11} {'(imports)':>9} {'json.load RSS MB':>16}")
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "coco"
            generate(root, n)
            mb = sum(p.stat().st_size for p in (root / "annotations").glob("*.json")) / 2**20
            r = run_child("prepare", root)
            j = run_child("json-load", root)
        rows.append((n, r["cpu_seconds"]))
        print(f"{n:>11} {mb:>8.1f} {r['seconds']:>7.2f} {r['cpu_seconds']:>6.2f} "
              f"{1e6 * r['cpu_seconds'] / n:>10.1f} {r['peak_rss_mb']:>11.0f} "
              f"{r['rss_after_imports_mb']:>9.0f} {j['peak_rss_mb']:>16.0f}", flush=True)
    if len(rows) > 1:
        (n0, t0), (n1, t1) = rows[0], rows[-1]
        print(f"CPU time ratio {t1 / t0:.2f} for {n1 / n0:.0f}x the annotations "
              f"(linear: {n1 / n0:.0f})")
        headline(f"data prepare coco20i: CPU time for {n1 / n0:.0f}x the annotations",
                 t1 / t0, n1 / n0, higher=False, note="target = linear growth")


if __name__ == "__main__":
    main()
