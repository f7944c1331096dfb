"""`refseg-bench train` (generic) and the train-then-evaluate path of `refseg-bench run`."""

from __future__ import annotations

import json

import pytest
from fakes import register_fakes

from refseg_bench.cli import main
from refseg_bench.config import resolve_config
from refseg_bench.runner import run

register_fakes()

TINY = ["method=vrpsam", "dataset=fake", "progress=false", "method_args.size=tiny",
        "method_args.model.image_size=64", "method_args.model.sam_image_size=128",
        "method_args.train.epochs=1", "method_args.train.episodes_per_epoch=4",
        "method_args.train.batch_size=2"]


def test_train_command_writes_the_checkpoint_run_uses(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["train", f"results_dir={results}", "fold=1", "annotation=box", *TINY]) == 0
    directory = (results / "checkpoints" / "vrpsam" / "fake" / "fold1"
                 / "resnet_v2_tiny_tiny_box_1shot_64px")
    info = json.loads((directory / "train.json").read_text())
    assert info["complete"] and info["steps"] == 2
    assert "sha256" in capsys.readouterr().out
    cfg = resolve_config([f"results_dir={results}", "fold=1", "annotation=box", "episodes=6",
                          "method_args.train_if_missing=false", *TINY])
    summary = run(cfg)
    method = summary["method_info"]
    assert method["trained_weights"] == "trained" and method["weights"] == "random"
    assert method["checkpoint_sha256"] == info["weights_sha256"]


def test_run_trains_a_missing_fold_first_and_says_so(tmp_path, capsys):
    cfg = resolve_config([f"results_dir={tmp_path}", "fold=2", "episodes=4", *TINY])
    summary = run(cfg)
    assert "TRAINING IT NOW" in capsys.readouterr().err
    assert summary["method_info"]["fold_weights"]["2"]["weights"] == "trained"


def test_train_refuses_methods_without_a_training_step(tmp_path, capsys):
    assert main(["train", "method=proto", "dataset=fake", f"results_dir={tmp_path}"]) == 2
    assert "no training step" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["method_args.size=huge", "method_args.train.lr_max=1"])
def test_bad_vrpsam_options_are_user_errors(tmp_path, capsys, bad):
    assert main(["train", f"results_dir={tmp_path}", "fold=0", *TINY, bad]) == 2
    assert "vrpsam" in capsys.readouterr().err


def test_a_full_disk_while_saving_weights_is_one_line_and_the_rerun_trains(tmp_path):
    """A file-size limit stands in for a full disk: torch reports the failed write as an
    opaque RuntimeError ("unexpected pos"); the CLI must name the file and what to do."""
    import resource
    import subprocess

    from fakes import fake_cli

    from refseg_bench.cli import EXIT_IO_ERROR

    results = tmp_path / "results"
    argv = fake_cli("train", f"results_dir={results}", "fold=1", *TINY)
    limit = 64 * 1024  # below the tiny encoder's weights file, above every json written

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, preexec_fn=small_disk)
    assert r.returncode == EXIT_IO_ERROR, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("I/O error: File too large") and ".pt" in last, r.stderr
    assert "rerun the same command to resume" in last
    assert not list(results.rglob("*.tmp"))  # no half-written file is left behind
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    info = json.loads(next(results.rglob("train.json")).read_text())
    assert info["complete"]
