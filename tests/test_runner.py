import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fakes import Flaky, register_fakes

from refseg_bench.config import resolve_config
from refseg_bench.runner import run

register_fakes()


def _cfg(tmp_path, *over):
    return resolve_config([f"results_dir={tmp_path / 'results'}", "progress=false",
                           "dataset=fake", "episodes=24", *over])


def test_oracle_scores_100_and_empty_0(tmp_path):
    s = run(_cfg(tmp_path, "method=oracle"))
    assert s["mean_miou"] == pytest.approx(100.0)
    assert s["mean_fbiou"] == pytest.approx(100.0)
    e = run(_cfg(tmp_path, "method=empty"))
    assert e["mean_miou"] == 0.0
    assert len(e["units"]) == 4 and all(u["n_scored"] == 24 for u in e["units"])


def test_record_contents(tmp_path):
    s = run(_cfg(tmp_path, "method=oracle", "fold=1", "save_predictions=true"))
    run_dir = tmp_path / "results" / s["run_id"]
    for name in ("config.yaml", "summary.json", "episodes.csv", "class_iou.png"):
        assert (run_dir / name).is_file(), name
    assert len(list((run_dir / "predictions" / "seed0_fold1").glob("*.png"))) == 24
    table = pd.read_csv(run_dir / "episodes.csv")
    assert len(table) == 24 and {"fg_inter", "fg_union", "query", "supports"} <= set(table.columns)
    summary = json.loads((run_dir / "summary.json").read_text())
    env = summary["environment"]
    assert env["packages"]["torch"] and env["device"]["type"] == "cpu"
    assert env["host_memory"] in ("keep", "unsupported")  # the default, as applied
    assert summary["protocol"]["name"] == "hsnet" and summary["seeds"] == [0]
    assert len(summary["units"][0]["manifest_sha256"]) == 64


def test_results_do_not_depend_on_batch_size_workers_or_host_memory(tmp_path):
    a = run(_cfg(tmp_path, "method=proto", "fold=0", "run_id=a", "batch_size=1"))
    b = run(_cfg(tmp_path, "method=proto", "fold=0", "run_id=b", "batch_size=7",
                 "num_workers=2", "host_memory=release"))
    assert a["units"][0]["manifest_sha256"] == b["units"][0]["manifest_sha256"]
    assert a["units"][0]["miou"] == b["units"][0]["miou"]
    assert a["units"][0]["fbiou"] == b["units"][0]["fbiou"]


@pytest.mark.parametrize("annotation", ["scribble", "point"])
def test_rows_are_identical_with_zero_and_several_loader_workers(tmp_path, annotation):
    # Weak annotations are simulated in the loader from each row's seed: the worker count
    # (and so which process simulates an episode) must not change a single row.
    rows = {}
    for workers in (0, 2):
        s = run(_cfg(tmp_path, "method=proto", "fold=[0,2]", f"annotation={annotation}",
                     f"num_workers={workers}", "batch_size=5", f"run_id=w{workers}"))
        assert s["num_workers"] == workers
        run_dir = tmp_path / "results" / s["run_id"]
        rows[workers] = ([p.read_text() for p in sorted(run_dir.glob("*/rows-rank0.jsonl"))],
                         pd.read_csv(run_dir / "episodes.csv"))
    assert rows[0][0] == rows[2][0] and len(rows[0][0]) == 2
    pd.testing.assert_frame_equal(rows[0][1], rows[2][1])


def test_num_workers_auto_is_resolved_and_recorded(tmp_path):
    from refseg_bench.errors import ConfigError
    from refseg_bench.loading import AUTO_WORKERS_MAX, resolve_workers

    assert 1 <= resolve_workers("auto") <= AUTO_WORKERS_MAX
    s = run(_cfg(tmp_path, "method=oracle", "fold=0", "episodes=4"))
    assert s["num_workers"] == resolve_workers("auto")
    for bad in ("many", "-1", "1.5", "true"):
        with pytest.raises(ConfigError, match="num_workers"):
            _cfg(tmp_path, f"num_workers={bad}")


def test_killed_run_resumes_without_redoing_or_double_counting(tmp_path):
    full = run(_cfg(tmp_path, "method=oracle", "run_id=full", "fold=0", "batch_size=4"))
    Flaky.calls = 0
    cfg = _cfg(tmp_path, "method=flaky", "run_id=r", "fold=0", "batch_size=4",
               "method_args.fail_after=3")
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    rows = (tmp_path / "results" / "r" / "seed0_fold0" / "rows-rank0.jsonl").read_text()
    assert len(rows.splitlines()) == 12  # three batches of four were finished and kept
    Flaky.calls = 0
    resumed = run(_cfg(tmp_path, "method=flaky", "run_id=r", "fold=0", "batch_size=4",
                       "method_args.fail_after=3"))
    assert Flaky.calls == 3  # only the 12 missing episodes were predicted
    assert resumed["units"][0]["n_episodes"] == 24
    assert resumed["units"][0]["miou"] == full["units"][0]["miou"]


def test_truncated_last_row_is_redone(tmp_path):
    cfg = _cfg(tmp_path, "method=oracle", "run_id=t", "fold=0")
    run(cfg)
    rows_path = tmp_path / "results" / "t" / "seed0_fold0" / "rows-rank0.jsonl"
    lines = rows_path.read_text().splitlines()
    rows_path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:15])  # a cut write
    again = run(cfg)
    assert again["units"][0]["n_episodes"] == 24 and again["mean_miou"] == pytest.approx(100)
    redone = rows_path.read_text().splitlines()
    assert len(redone) == 24 and [json.loads(x)["index"] for x in redone[:23]] == \
        [json.loads(x)["index"] for x in lines[:-1]]  # the cut row was removed, not kept


@pytest.mark.parametrize("content,kept", [(b"", b""), (b"no newline at all", b""),
                                          (b'{"a": 1}\n', b'{"a": 1}\n'),
                                          (b'{"a": 1}\n{"b": 2}\n{"c"', b'{"a": 1}\n{"b": 2}\n'),
                                          (b"x" * 50 + b"\n" + b"y" * 20, b"x" * 50 + b"\n")])
def test_drop_cut_last_line(tmp_path, content, kept):
    from refseg_bench.records import drop_cut_last_line

    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    assert drop_cut_last_line(path, block=7) == len(content) - len(kept)  # blocks < a line
    assert path.read_bytes() == kept


def test_saved_config_has_interpolations_resolved(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    monkeypatch.setenv("REFSEG_TEST_SHOT", "2")
    s = run(_cfg(tmp_path, "method=empty", "fold=0", "episodes=4", "run_id=i",
                 "shot=${oc.env:REFSEG_TEST_SHOT}", "dataset_args.note=${shot}-shot"))
    text = (tmp_path / "results" / "i" / "config.yaml").read_text()
    assert "${" not in text
    saved = OmegaConf.load(tmp_path / "results" / "i" / "config.yaml")
    assert saved.shot == 2 and saved.dataset_args.note == "2-shot" and s["shot"] == 2


def test_changed_settings_under_same_run_id_are_refused(tmp_path):
    from refseg_bench.errors import ConfigError

    run(_cfg(tmp_path, "method=empty", "run_id=x", "fold=0"))
    with pytest.raises(ConfigError, match="other settings"):
        run(_cfg(tmp_path, "method=empty", "run_id=x", "fold=0", "shot=2"))
    run(_cfg(tmp_path, "method=empty", "run_id=x", "fold=0", "shot=2", "overwrite=true"))


def test_empty_support_mask_is_a_counted_skip(tmp_path):
    s = run(_cfg(tmp_path, "method=oracle", "dataset=fake_empty", "fold=0", "episodes=60"))
    unit = s["units"][0]
    assert unit["n_skipped"] > 0
    assert unit["n_scored"] + unit["n_skipped"] == 60
    assert sum(unit["skip_reasons"].values()) == unit["n_skipped"]
    assert s["mean_miou"] == pytest.approx(100.0)  # skipped episodes never enter the totals


def test_multi_seed_protocol_reports_mean_and_spread(tmp_path):
    s = run(_cfg(tmp_path, "method=proto", "fold=0", "episodes=8", "protocol_args.seeds=[1,2,3]"))
    assert s["seeds"] == [1, 2, 3] and len(s["units"]) == 3
    assert s["seed_std_miou"] is not None
    assert s["mean_miou"] == pytest.approx(sum(u["miou"] for u in s["units"]) / 3)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "refseg_bench", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


@pytest.mark.parametrize("arg,expected", [
    ("method=nope", "Known methods:"),
    ("dataset=nope", "Known datasets:"),
    ("protocol=nope", "Known protocols:"),
    ("annotation=lasso", "annotation must be one of"),
    ("shot=0", "shot must be >= 1"),
])
def test_cli_bad_names_and_values(tmp_path, arg, expected):
    r = _cli("run", arg, f"results_dir={tmp_path}", f"data_root={tmp_path}")
    assert r.returncode == 2, r.stderr
    assert expected in r.stderr and "Traceback" not in r.stderr


def test_torchrun_two_ranks_equal_one_process(tmp_path, synthetic_root):
    common = ["method=proto", "dataset=synthetic", "fold=0", "episodes=40", "progress=false",
              f"dataset_args.root={synthetic_root}", f"results_dir={tmp_path}"]
    one = _cli("run", *common, "run_id=one")
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_port=29531", "-m", "refseg_bench", "run", *common, "run_id=two"],
        capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    s1 = json.loads((Path(tmp_path) / "one" / "summary.json").read_text())
    s2 = json.loads((Path(tmp_path) / "two" / "summary.json").read_text())
    assert s2["world_size"] == 2
    assert s1["units"][0]["manifest_sha256"] == s2["units"][0]["manifest_sha256"]
    for key in ("miou", "fbiou", "class_iou", "n_scored"):
        assert s1["units"][0][key] == s2["units"][0][key], key
    assert len(list((Path(tmp_path) / "two" / "seed0_fold0").glob("rows-rank*.jsonl"))) == 2


@pytest.mark.gpu
def test_pinned_episode_keeps_values_and_is_page_locked():
    import numpy as np
    import torch

    from refseg_bench.episodes import Annotation, Episode, EpisodeSpec
    from refseg_bench.loading import LoadedEpisode

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA (pinned memory)")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    label = (rng.random((5, 7)) < 0.5).astype(np.uint8)
    spec = EpisodeSpec(0, 0, 1, "q", ("s",), 0)
    ep = Episode(spec, "c", image, [image[::-1]], [Annotation("mask", raster=label > 0)],
                 [label])
    pinned = LoadedEpisode(spec, ep, label).pin_memory()
    for before, after in ((image, pinned.episode.query_image), (label, pinned.label),
                          (image[::-1], pinned.episode.support_images[0])):
        np.testing.assert_array_equal(before, after)
        assert torch.from_numpy(after).is_pinned()
