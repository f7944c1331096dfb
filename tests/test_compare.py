"""`refseg-bench compare`: paired comparison of two runs on the same manifests."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes import register_fakes  # noqa: E402

from refseg_bench.cli import main  # noqa: E402
from refseg_bench.compare import compare, load_run  # noqa: E402
from refseg_bench.stats import bootstrap_miou, paired_miou_replicates, percentile_interval  # noqa: E402,E501


def _run(results: Path, method: str, *extra: str) -> Path:
    from refseg_bench.config import resolve_config
    from refseg_bench.runner import run

    summary = run(resolve_config([f"method={method}", "dataset=fake", "fold=[0,2]",
                                  "episodes=8", "shot=1", "device=cpu", "progress=false",
                                  f"results_dir={results}", *extra]))
    return Path(summary["run_dir"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    from refseg_bench.regress import cpu_paths

    register_fakes()
    results = tmp_path_factory.mktemp("results")
    with cpu_paths():  # one thread: quicker on a shared machine
        return {"oracle": _run(results, "oracle"), "empty": _run(results, "empty"),
                "mask": _run(results, "proto"),
                "box": _run(results, "proto", "annotation=box"),
                "seed1": _run(results, "proto", "seed=1"),
                "fewer": _run(results, "proto", "episodes=5")}


def test_oracle_against_empty_loses_everything(runs):
    c = compare(load_run(runs["oracle"]), load_run(runs["empty"]), n_boot=200)
    o = c.overall
    assert (o["miou_a"], o["miou_b"], o["diff"]) == (100.0, 0.0, -100.0)
    assert (o["ci_low"], o["ci_high"]) == (-100.0, -100.0)
    assert (o["win"], o["tie"], o["loss"]) == (0, 0, 16) and o["paired_episodes"] == 16
    assert list(c.folds["fold"]) == [0, 2]
    assert set(c.classes["class"]) == {"class1", "class2", "class5", "class6"}
    assert (c.classes["loss"] == c.classes["episodes"]).all()


def test_mask_against_box_is_paired_and_matches_the_summaries(runs):
    a, b = load_run(runs["mask"]), load_run(runs["box"])
    c = compare(a, b, n_boot=500)
    o = c.overall
    assert o["miou_a"] == pytest.approx(a.summary["mean_miou"])
    assert o["miou_b"] == pytest.approx(b.summary["mean_miou"])
    assert o["ci_low"] <= o["diff"] <= o["ci_high"]
    assert o["win"] + o["tie"] + o["loss"] == 16 == len(c.episodes)
    for _, f in c.folds.iterrows():
        assert f["ci_low"] <= f["diff"] <= f["ci_high"]
    ep = c.episodes
    assert np.allclose(ep["diff"], ep["iou_b"] - ep["iou_a"])
    assert ((ep["outcome"] == "win") == (ep["iou_b"] > ep["iou_a"])).all()
    assert c.classes["episodes"].sum() == 16


def test_command_prints_and_writes_csv_and_markdown(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(runs["mask"]), str(runs["box"]), "--out", str(out),
                 "--n-boot", "200"]) == 0
    printed = capsys.readouterr().out
    assert "mIoU B - A:" in printed and "Per class" in printed and "95% interval" in printed
    md = (out / "compare.md").read_text()
    assert "paired class-stratified bootstrap" in md and "## Per class" in md
    assert {p.name for p in out.iterdir()} == {"compare.md", "episodes.csv", "folds.csv",
                                               "classes.csv", "comparison.json"}


@pytest.mark.parametrize("other, expected", [
    ("seed1", "seed 0 fold 0 is only in run A"),
    ("fewer", "seed 0 fold 0: manifest"),
])
def test_different_manifests_are_refused(runs, other, expected, capsys):
    assert main(["compare", str(runs["mask"]), str(runs[other])]) == 2
    err = capsys.readouterr().err
    assert "not evaluated on the same episodes" in err and expected in err


def test_unknown_run_is_a_user_error(tmp_path, capsys):
    assert main(["compare", "nope", "nada", "--results-dir", str(tmp_path)]) == 2
    assert "no finished run there" in capsys.readouterr().err


def _totals(seed, shift=0.0):
    rng = np.random.default_rng(seed)
    cls = np.repeat(np.arange(1, 6), 30)
    union = rng.integers(500, 5000, size=len(cls))
    quality = np.clip(0.3 + 0.1 * cls + rng.normal(0, 0.2, len(cls)), 0, 1)
    return cls, (quality * union).astype(np.int64), (np.clip(quality + shift, 0, 1)
                                                     * union).astype(np.int64), union


def test_paired_replicates_reuse_the_class_stratified_bootstrap():
    cls, inter_a, inter_b, union = _totals(0, shift=0.03)
    classes = [1, 2, 3, 4, 5, 6]
    reps = paired_miou_replicates(cls, inter_a, union, inter_b, union, classes, n_boot=400,
                                  rng=np.random.default_rng(7))
    # Run A's replicates are exactly those of the unpaired bootstrap with the same seed.
    assert percentile_interval(reps[0]) == pytest.approx(
        bootstrap_miou(cls, inter_a, union, classes, n_boot=400, seed=7))
    paired = percentile_interval(reps[1] - reps[0])
    lo_a, hi_a = percentile_interval(reps[0])
    assert 0 < paired[0] < paired[1]  # B is better on every class: the interval excludes 0
    assert paired[1] - paired[0] < (hi_a - lo_a) / 3  # pairing removes the episode spread
    same = paired_miou_replicates(cls, inter_a, union, inter_a, union, classes, n_boot=50,
                                  rng=np.random.default_rng(0))
    assert (same[0] == same[1]).all()
