import json
import subprocess
import sys

import pandas as pd
from fakes import register_fakes

from refseg_bench.config import resolve_config
from refseg_bench.leaderboard import write
from refseg_bench.runner import run

register_fakes()


def _run(results, method):
    return run(resolve_config([f"results_dir={results}", "progress=false", "dataset=fake",
                               "episodes=12", f"method={method}", "fold=[0,1]"]))


def test_leaderboard_from_records_only(tmp_path):
    results = tmp_path / "results"
    _run(results, "oracle")
    empty = _run(results, "empty")
    # A copy of a record that claims random weights must land in the separate table.
    rand_dir = results / "random_copy"
    rand_dir.mkdir()
    rand = {**empty, "run_id": "random_copy",
            "method_info": {"model": "tiny", "weights": "random"}}
    (rand_dir / "summary.json").write_text(json.dumps(rand))
    # An unfinished run (no summary) is not a row.
    (results / "unfinished").mkdir()

    df = write(results)
    assert len(df) == 3
    assert list(df["fold0"])[:2] == [100.0, 0.0]  # sorted by mean within a setting
    assert df.loc[df["run_id"] == "random_copy", "random_weights"].item()
    assert {"method", "model", "weights", "dataset", "protocol", "shot", "annotation", "fold0",
            "fold1", "mean", "fbiou", "episodes", "ci95"} <= set(df.columns)
    csv = pd.read_csv(results / "leaderboard.csv")
    assert len(csv) == 3
    md = (results / "leaderboard.md").read_text()
    real, _, rand_part = md.partition("## Random weights")
    assert "| oracle |" in real and "| empty |" in real and "tiny" not in real
    assert "| tiny |" in rand_part
    assert (results / "leaderboard.png").stat().st_size > 0


def test_leaderboard_cli_prints_table(tmp_path):
    results = tmp_path / "results"
    _run(results, "oracle")
    out = subprocess.run([sys.executable, "-m", "refseg_bench", "leaderboard",
                          "--results-dir", str(results)], capture_output=True, text=True,
                         check=True)
    assert "oracle" in out.stdout and "100.0" in out.stdout
    assert (results / "leaderboard.md").is_file()


def test_empty_results_dir_writes_an_empty_leaderboard(tmp_path):
    from refseg_bench import leaderboard

    df = leaderboard.write(tmp_path)
    assert df.empty
    assert "_no runs yet_" in (tmp_path / "leaderboard.md").read_text()
    assert (tmp_path / "leaderboard.csv").read_text().startswith("method,")
