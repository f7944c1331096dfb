"""Run ids are names, overwrite removes only the run's own record, and one process at a time
writes a run (an advisory lock per run id)."""

import json
import subprocess
from pathlib import Path

import pytest
from fakes import fake_cli, register_fakes

from refseg_bench.cli import main
from refseg_bench.config import resolve_config
from refseg_bench.errors import ConfigError, RunInProgressError
from refseg_bench.records import read_rows
from refseg_bench.rundir import RunLock, check_run_id, remove_run_dir, run_path
from refseg_bench.runner import run

register_fakes()

COMMON = ["dataset=fake", "method=oracle", "fold=0", "episodes=8", "progress=false"]


@pytest.mark.parametrize("run_id", [".", "..", "../x", "/tmp/abs", "a/b", "a\\b", ".hidden",
                                    "-x", "", "a b", "x" * 129])
def test_paths_are_not_run_ids(run_id):
    with pytest.raises(ConfigError, match="a run id is a name, not a path"):
        check_run_id(run_id)


@pytest.mark.parametrize("run_id", ["a", "proto_synthetic_hsnet_1shot_mask_0123abcd",
                                    "v1.2-rc_3", "x" * 128])
def test_names_are_run_ids(run_id, tmp_path):
    assert run_path(tmp_path, run_id) == tmp_path / run_id


@pytest.mark.parametrize("run_id", [".", "..", "../escape", "ABS"])
def test_cli_refuses_path_run_ids_and_deletes_nothing(tmp_path, capsys, run_id):
    results = tmp_path / "parent" / "results"
    results.mkdir(parents=True)
    (results / "keep.txt").write_text("a finished record lives here")
    (tmp_path / "parent" / "sibling.txt").write_text("next to results_dir")
    if run_id == "ABS":
        run_id = str(tmp_path / "elsewhere")
    code = main(["run", *COMMON, f"results_dir={results}", f"run_id={run_id}",
                 "overwrite=true"])
    err = capsys.readouterr().err
    assert code == 2
    assert "a run id is a name, not a path" in err and len(err.strip().splitlines()) == 1
    assert (results / "keep.txt").is_file() and (tmp_path / "parent" / "sibling.txt").is_file()
    assert not (tmp_path / "escape").exists() and not (tmp_path / "elsewhere").exists()


def test_overwrite_removes_only_the_runs_own_directory(tmp_path):
    results = tmp_path / "results"
    run(resolve_config([*COMMON, f"results_dir={results}", "run_id=a"]))
    run(resolve_config([*COMMON, f"results_dir={results}", "run_id=b"]))
    (results / "notes.txt").write_text("mine")
    run(resolve_config([*COMMON, f"results_dir={results}", "run_id=a", "overwrite=true",
                        "shot=2"]))
    assert (results / "b" / "summary.json").is_file() and (results / "notes.txt").is_file()
    assert json.loads((results / "a" / "summary.json").read_text())["shot"] == 2


def test_overwrite_refuses_a_directory_that_is_not_a_run_record(tmp_path):
    results = tmp_path / "results"
    (results / "photos").mkdir(parents=True)
    (results / "photos" / "cat.jpg").write_bytes(b"not a run")
    with pytest.raises(ConfigError, match="not a run record"):
        run(resolve_config([*COMMON, f"results_dir={results}", "run_id=photos",
                            "overwrite=true"]))
    assert (results / "photos" / "cat.jpg").read_bytes() == b"not a run"


def test_overwrite_refuses_a_symlinked_run_dir(tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "config.yaml").write_text("looks like a record\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "linked").symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        remove_run_dir(tmp_path / "results" / "linked")
    assert (target / "config.yaml").is_file()


def test_a_held_run_is_refused_and_other_runs_go_on(tmp_path, capsys):
    results = tmp_path / "results"
    with RunLock(results / "busy"):
        code = main(["run", *COMMON, f"results_dir={results}", "run_id=busy"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert "is already running in pid" in err and "choose another run_id" in err
        assert not (results / "busy").exists()  # refused before writing anything
        assert main(["run", *COMMON, f"results_dir={results}", "run_id=other"]) == 0
    with pytest.raises(RunInProgressError):  # held again while a run holds it
        with RunLock(results / "x"), RunLock(results / "x"):
            pass
    assert main(["run", *COMMON, f"results_dir={results}", "run_id=busy"]) == 0  # released


def test_two_concurrent_identical_runs_give_one_record_without_duplicate_rows(tmp_path):
    results = tmp_path / "results"
    argv = fake_cli("run", "dataset=fake", "method=slow", "method_args.delay=0.05", "fold=0",
                    "episodes=24", "batch_size=2", "progress=false", f"results_dir={results}")
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(code for code, _ in outcomes)
    # Either they overlapped (one refused) or the second found the first finished (resumed).
    assert codes in ([0, 0], [0, 2]), outcomes
    if codes == [0, 2]:
        assert any("is already running" in err for code, err in outcomes if code == 2)
    runs = [d for d in results.iterdir() if not d.name.startswith(".")]
    assert len(runs) == 1
    rows_file = runs[0] / "seed0_fold0" / "rows-rank0.jsonl"
    lines = rows_file.read_text().splitlines()
    assert len(lines) == 24 and len(read_rows(rows_file.parent)) == 24
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["units"][0]["n_episodes"] == 24


def test_lock_file_is_outside_the_run_dir(tmp_path):
    lock = RunLock(tmp_path / "r")
    assert lock.path.parent == tmp_path / ".locks" and Path(lock.path).name == "r.lock"
