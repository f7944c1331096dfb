"""What a user sees when a run is interrupted, the disk fails or a setting is wrong: one line
on stderr and a distinct exit status (errors.EXIT_*), never a traceback; and the rerun
resumes."""

import ctypes
import json
import os
import resource
import signal
import subprocess
import time

import pytest
from fakes import Flaky, fake_cli, register_fakes

from refseg_bench.cli import main
from refseg_bench.config import resolve_config
from refseg_bench.errors import EXIT_INTERRUPTED, EXIT_IO_ERROR, EXIT_USER_ERROR
from refseg_bench.records import read_rows
from refseg_bench.runner import run

register_fakes()

FAKE = ["dataset=fake", "fold=0", "episodes=24", "progress=false"]


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _rows(results, run_id):
    return results / run_id / "seed0_fold0" / "rows-rank0.jsonl"


def test_ctrl_c_says_how_far_and_the_rerun_resumes(tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["run", *FAKE, "method=flaky", "method_args.fail_after=3", "batch_size=4",
            f"results_dir={results}", "run_id=r"]
    Flaky.calls = 0
    assert main(argv) == EXIT_INTERRUPTED
    line = _one_line(capsys.readouterr().err)
    assert line == "interrupted at 12/24 episodes; rerun the same command to resume"
    Flaky.calls = 0
    assert main(argv) == 0
    assert "resuming run r: 12/24 episodes already done" in capsys.readouterr().err
    assert Flaky.calls == 3  # only the 12 missing episodes were predicted
    assert len(_rows(results, "r").read_text().splitlines()) == 24


def test_sigint_to_a_running_cli(tmp_path):
    """A real Ctrl-C (SIGINT) to a real CLI process in the middle of the episode loop."""
    results = tmp_path / "results"
    argv = fake_cli("run", *FAKE, "method=slow", "method_args.delay=0.1", "batch_size=1",
                    f"results_dir={results}", "run_id=s")
    # A suite started in the background of a shell without job control inherits SIGINT as
    # ignored, and Python then keeps ignoring it: the child gets the default back, as a
    # CLI started from a terminal has it.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    rows = _rows(results, "s")
    deadline = time.monotonic() + 120
    while not (rows.exists() and rows.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    done = len(read_rows(rows.parent))
    assert 0 < done < 24
    assert _one_line(err) == (f"interrupted at {done}/24 episodes; rerun the same command to "
                              "resume")
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"resuming run s: {done}/24 episodes already done" in again.stderr
    assert len(rows.read_text().splitlines()) == 24 and len(read_rows(rows.parent)) == 24


def _drop_dac_override():
    """In the child: lose root's power to write where permissions forbid it (the bounding
    set is inherited over exec), so a read-only folder is read-only for root too."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_read_only_results_dir_is_one_line_and_io_status(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o555)
    try:
        preexec = _drop_dac_override if os.geteuid() == 0 else None
        try:
            r = subprocess.run(fake_cli("run", *FAKE, "method=oracle", f"results_dir={results}"),
                               capture_output=True, text=True, timeout=120,
                               preexec_fn=preexec)
        except subprocess.SubprocessError as err:
            pytest.skip(f"cannot drop root's DAC override to make a read-only folder: {err}")
    finally:
        results.chmod(0o755)
    assert r.returncode == EXIT_IO_ERROR, r.stderr
    line = _one_line(r.stderr)
    assert line.startswith("I/O error: Permission denied") and str(results) in line
    assert "choose another results_dir=" in line


def test_full_disk_is_one_line_and_the_rerun_resumes(tmp_path):
    """A file-size limit (RLIMIT_FSIZE) stands in for a full disk: the rows file hits it."""
    results = tmp_path / "results"
    argv = fake_cli("run", *FAKE, "method=oracle", "batch_size=1", f"results_dir={results}",
                    "run_id=f")
    probe = tmp_path / "probe"  # the same run without a limit, to size the limit
    run(resolve_config([*FAKE, "method=oracle", "batch_size=1", f"results_dir={probe}",
                        "run_id=f"]))
    written = [p.stat().st_size for p in (probe / "f").rglob("*") if p.is_file()]
    rows_size = _rows(probe, "f").stat().st_size
    manifest_size = (probe / "f" / "seed0_fold0" / "manifest.json").stat().st_size
    limit = max(manifest_size, (probe / "f" / "config.yaml").stat().st_size) + 100
    assert rows_size > limit and max(written) > limit

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, preexec_fn=small_disk)
    assert r.returncode == EXIT_IO_ERROR, r.stderr
    line = _one_line(r.stderr)
    assert line.startswith("I/O error: File too large") and "rows-rank0.jsonl" in line
    assert "rerun the same command to resume" in line
    cut = _rows(results, "f").read_bytes()
    assert 0 < len(cut) <= limit
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "resuming run f:" in again.stderr
    lines = _rows(results, "f").read_text().splitlines()
    assert len(lines) == 24 and all(json.loads(x)["totals"] for x in lines)  # no cut row


@pytest.mark.parametrize("setting,expected", [
    ("device=tpu", "device must be auto, cpu, cuda, cuda:N or mps; got 'tpu'"),
    ("method_args.x=${nope:1}", "Unsupported interpolation type nope in method_args.x"),
    ("dataset_args.root=${oc.env:REFSEG_TEST_UNSET_VAR}", "dataset_args.root="),
    ("fold=[0", "cannot parse the setting 'fold=[0'"),
    ("dataset=synthetic dataset_args.n_per_clas=3",
     "unknown option 'n_per_clas' (did you mean 'n_per_class'?) in dataset_args of "
     "'synthetic'"),
])
def test_bad_settings_are_one_line_user_errors(tmp_path, capsys, setting, expected):
    code = main(["run", *FAKE, "method=oracle", f"results_dir={tmp_path}",
                 f"dataset_args.root={tmp_path / 'data'}", *setting.split()])
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR
    assert expected in _one_line(err)


def test_traceback_flag_shows_the_traceback(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        Flaky.calls = 0
        main(["--traceback", "run", *FAKE, "method=flaky", "method_args.fail_after=0",
              f"results_dir={tmp_path}"])
