"""CAV-SAM end to end through the real runner, offline, on tiny random weights: the
embedded synthetic benchmark and cross-domain replicas (PATNet protocol)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cavsam_testing import MICRO_ARGS
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "datasets"))

from replica_layouts import make_deepglobe, make_isic  # noqa: E402

pytest.importorskip("diffusers")


def _run(tmp_path, *args):
    from refseg_bench import runner
    from refseg_bench.config import resolve_config

    cfg = resolve_config(["method=cavsam", f"results_dir={tmp_path / 'results'}",
                          "progress=false", *args])
    return runner.run(cfg)


def _check(summary, episodes: int):
    assert summary["complete"]
    info = summary["method_info"]
    assert info["weights"] == "random" and info["model"].startswith("cavsam/")
    assert sum(u["n_scored"] for u in summary["units"]) == episodes
    assert info["counts"]["supports"] >= episodes
    return info


@pytest.mark.parametrize("annotation", ["mask", "box"])
def test_synthetic_benchmark_offline(tmp_path, synthetic_root, monkeypatch, annotation):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    summary = _run(tmp_path, "dataset=synthetic", f"dataset_args.root={synthetic_root}",
                   "fold=0", "shot=1", f"annotation={annotation}", "episodes=2", *MICRO_ARGS)
    info = _check(summary, 2)
    assert info["counts"]["ttga_runs"] == 2
    assert info["dbst_counts"]["lora_trained"] + info["dbst_counts"]["lora_cached"] == 4
    saved = OmegaConf.load(Path(tmp_path) / "results" / summary["run_id"] / "config.yaml")
    assert saved.method_args.dbst.num_frames == 4 and info["dbst"]["num_frames"] == 4


def test_cross_domain_replica_with_class_name_prompts(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rep = make_isic(tmp_path, patnet_folders=True)
    summary = _run(tmp_path, "dataset=isic2018", f"dataset_args.root={rep.root}",
                   "protocol=patnet-cdfss", "seed=0", "shot=1", "annotation=mask", "episodes=3",
                   *MICRO_ARGS)
    info = _check(summary, 3)
    assert summary["protocol"]["name"] == "patnet-cdfss"
    assert info["dbst"]["prompt_template"] == "{class_name}"


@pytest.mark.slow
def test_tiny_preset_as_make_bench_runs_it(tmp_path, synthetic_root, monkeypatch):
    """The packaged tiny preset unchanged (what `make bench METHOD=cavsam` runs offline)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    summary = _run(tmp_path, "dataset=synthetic", f"dataset_args.root={synthetic_root}",
                   "fold=0", "shot=1", "annotation=mask", "episodes=3",
                   "method_args.size=tiny")
    info = _check(summary, 3)
    assert info["frames"] == 5 and info["model_spec"]["sam2_image_size"] == 128


@pytest.mark.slow
def test_deepglobe_replica_two_shot_box_tiny_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rep = make_deepglobe(tmp_path)
    summary = _run(tmp_path, "dataset=deepglobe", f"dataset_args.root={rep.root}",
                   "seed=0", "shot=2", "annotation=box", "episodes=2", "method_args.size=tiny")
    info = _check(summary, 2)
    assert info["counts"]["supports"] == 4
