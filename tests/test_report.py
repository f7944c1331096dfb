"""`refseg-bench report`: one Markdown + PNG report per leaderboard, from records only."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes import register_fakes  # noqa: E402

from refseg_bench.cli import main  # noqa: E402
from refseg_bench.report_grid import pick_episodes  # noqa: E402


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    from refseg_bench.config import resolve_config
    from refseg_bench.regress import cpu_paths
    from refseg_bench.runner import run

    register_fakes()
    results = tmp_path_factory.mktemp("results")
    with cpu_paths():  # one thread: quicker on a shared machine
        for method, extra in (("oracle", ["save_predictions=true"]), ("proto", []),
                              ("proto", ["annotation=box", "save_predictions=true"])):
            run(resolve_config([f"method={method}", "dataset=fake", "fold=[0,2]",
                                "episodes=6", "device=cpu", "progress=false",
                                f"results_dir={results}", *extra]))
    return results


def test_one_report_per_leaderboard_with_grids_and_bars(results, tmp_path, capsys, monkeypatch):
    import refseg_bench.methods.baselines as baselines

    def no_model(*args, **kwargs):
        raise AssertionError("the report must not run a model")

    monkeypatch.setattr(baselines.Prototype, "predict", no_model)
    monkeypatch.setattr(baselines.Oracle, "predict", no_model)
    out = tmp_path / "report"
    assert main(["report", "--results-dir", str(results), "--out", str(out),
                 "--episodes", "2"]) == 0
    mask = out / "fake_hsnet_val_1shot_mask"
    box = out / "fake_hsnet_val_1shot_box"
    assert sorted(p.name for p in out.iterdir()) == sorted(["index.md", mask.name, box.name])
    text = (mask / "report.md").read_text()
    assert "## Leaderboard" in text and "## Per-class IoU" in text
    assert "### oracle (weights: none)" in text and "### proto (weights: none)" in text
    # proto (mask) saved no predictions, oracle did: only proto's grid says so.
    assert text.count("saved no predictions") == 1
    assert "saved no predictions" not in (box / "report.md").read_text()
    pngs = sorted(p.name for p in mask.glob("*.png"))
    assert len(pngs) == 4 and {"class_iou.png", "miou.png"} < set(pngs)  # + a grid per run
    assert all(f"({name})" in text for name in pngs)
    for png in mask.glob("*.png"):
        w, h = Image.open(png).size
        assert w > 300 and h > 150
    index = (out / "index.md").read_text()
    assert f"({mask.name}/report.md)" in index and f"({box.name}/report.md)" in index


def test_best_and_worst_are_distinct_and_ordered():
    df = pd.DataFrame({"sampling_seed": 0, "fold": [0, 0, 0, 2, 2],
                       "index": [0, 1, 2, 0, 1], "iou": [50.0, 90.0, 10.0, 90.0, 30.0],
                       "skip": [None, None, None, None, "empty support"]})
    picks = pick_episodes(df, 2)
    assert [(p.tag, p.row["fold"], p.row["index"]) for p in picks] == [
        ("best 1", 0, 1), ("best 2", 2, 0), ("worst 1", 0, 2), ("worst 2", 0, 0)]
    assert [p.tag for p in pick_episodes(df, 5)] == ["best 1", "best 2", "best 3", "best 4"]
