"""The headline lines benchmarks print and the ``make perf`` summary reads back."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from perf_report import headline, parse, skipped  # noqa: E402
from perf_summary import benchmark_scripts, verdict  # noqa: E402


def test_headlines_round_trip_and_verdicts(capsys):
    print("a table line for people")
    headline("scorer x", 12.5, 10.0, note="wall 11x")
    headline("harness share", 6.0, 5.0, unit="%", higher=False)
    headline("informative", 2.0)
    skipped("gpu row", "no CUDA device", 3.0)
    rows = parse(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["scorer x", "harness share", "informative", "gpu row"]
    assert rows[0]["value"] == 12.5 and rows[0]["note"] == "wall 11x"
    assert [verdict(r) for r in rows] == ["met", "NOT met", "-", "skipped"]
    with pytest.raises(ValueError, match="not a finite number"):
        headline("bad", float("nan"))


def test_every_benchmark_script_is_found_and_helpers_are_not():
    names = {p.name for p in benchmark_scripts()}
    assert {"perf_core.py", "vs_official.py", "perf_models_gpu.py"} <= names
    assert not names & {"perf_report.py", "perf_summary.py", "blob_episodes.py",
                        "official_persam.py", "official_vrpsam.py", "official_data.py",
                        "official_common.py", "official_episodes.py", "official_matcher.py",
                        "official_fss_sam2.py"}
