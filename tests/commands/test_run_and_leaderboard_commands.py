"""`run --help` documents every setting; `leaderboard` takes results_dir= like every other
command (and still --results-dir)."""

import dataclasses

import pytest
from fakes import register_fakes

from refseg_bench.cli import main
from refseg_bench.config import RunConfig, resolve_config
from refseg_bench.runner import run

register_fakes()


def test_run_help_lists_every_setting(capsys):
    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    missing = [f.name for f in dataclasses.fields(RunConfig)
               if f"{f.name}=" not in text and f"{f.name}.X=" not in text]
    assert not missing, f"run --help does not document {missing}"
    for key in ("results_dir=", "data_root=", "run_id=", "progress="):
        assert key in text


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("lb") / "my results"
    run(resolve_config([f"results_dir={out}", "progress=false", "dataset=fake", "episodes=4",
                        "method=oracle", "fold=0"]))
    return out


@pytest.mark.parametrize("args", [["results_dir={}"], ["--results-dir", "{}"],
                                  ["results_dir={}", "--results-dir", "{}"]])
def test_leaderboard_takes_results_dir_both_ways(results, args, capsys):
    assert main(["leaderboard", *(a.format(results) for a in args)]) == 0
    out = capsys.readouterr().out
    assert "oracle" in out and (results / "leaderboard.csv").is_file()


def test_leaderboard_dataset_filter_as_a_setting(results, capsys):
    assert main(["leaderboard", f"results_dir={results}", "dataset=fake"]) == 0
    assert "oracle" in capsys.readouterr().out
    assert main(["leaderboard", f"results_dir={results}", "dataset=other"]) == 0
    assert "oracle" not in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["result_dir=x"], "leaderboard takes results_dir=..., dataset=...; got 'result_dir=x'"),
    (["results"], "got 'results'"),
    (["results_dir=a", "--results-dir", "b"], "results_dir is given twice"),
])
def test_leaderboard_bad_settings_are_user_errors(args, message, capsys):
    assert main(["leaderboard", *args]) == 2
    assert message in capsys.readouterr().err
