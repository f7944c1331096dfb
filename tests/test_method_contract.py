"""The method contract, checked through the real runner for every registered method:
weak-annotation episodes carry no support label, each unit is announced before its first
``predict``, and ``predict`` runs in the autograd mode the method declares."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes import register_fakes  # noqa: E402

from refseg_bench.registry import METHODS  # noqa: E402
from refseg_bench.regress import tiny_args  # noqa: E402

# The smallest configuration of each registered method (tiny random weights, untrained
# heads), from configs/regress.yaml: one list for this test and `refseg-bench regress`.
TINY_ARGS = tiny_args()


def test_every_registered_method_has_a_tiny_configuration():
    register_fakes()
    builtin = {n for n in METHODS.names() if not METHODS.entry(n).target.startswith("fakes:")}
    missing = sorted(builtin - set(TINY_ARGS))
    assert not missing, f"add a tiny configuration for {missing} to configs/regress.yaml"


def _spy_run(monkeypatch, tmp_path, method: str, annotation: str, folds="[0,2]") -> list:
    """Run ``method`` on the fake dataset with the real runner; returns the calls seen by
    ``begin_unit`` and ``predict`` in order."""
    from refseg_bench import runner
    from refseg_bench.config import resolve_config

    calls: list = []
    real_build = runner.build_method

    def build(cfg):
        m = real_build(cfg)
        real_begin, real_predict = m.begin_unit, m.predict

        def begin_unit(unit):
            calls.append(("unit", unit.fold, unit.split, unit.shot, unit.annotation))
            real_begin(unit)

        def predict(batch):
            calls.append(("predict", [e.spec.fold for e in batch],
                          [e.support_masks is None for e in batch],
                          torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
            return real_predict(batch)

        m.begin_unit, m.predict = begin_unit, predict
        return m

    monkeypatch.setattr(runner, "build_method", build)
    cfg = resolve_config([f"method={method}", "dataset=fake", f"annotation={annotation}",
                          "shot=2", f"fold={folds}", "episodes=3", "batch_size=2",
                          f"results_dir={tmp_path}", "progress=false", *TINY_ARGS[method]])
    runner.run(cfg)
    return calls


@pytest.mark.parametrize("method", sorted(TINY_ARGS))
@pytest.mark.parametrize("annotation", ["box", "point", "scribble", "mask"])
def test_contract_through_the_runner(monkeypatch, tmp_path, method, annotation):
    register_fakes()
    calls = _spy_run(monkeypatch, tmp_path, method, annotation)
    units = [c for c in calls if c[0] == "unit"]
    assert units == [("unit", 0, "val", 2, annotation), ("unit", 2, "val", 2, annotation)]
    current = None
    for call in calls:
        if call[0] == "unit":
            current = call[1]
            continue
        _, folds, no_labels, inference, grad = call
        assert set(folds) == {current}  # announced before its first predict
        assert all(no_labels) if annotation != "mask" else not any(no_labels)
        declared = METHODS.get(method).test_time_grad
        assert inference is (not declared) and not grad


def test_resumed_unit_is_announced_even_with_nothing_left(monkeypatch, tmp_path):
    register_fakes()
    _spy_run(monkeypatch, tmp_path, "proto", "box", folds="0")
    calls = _spy_run(monkeypatch, tmp_path, "proto", "box", folds="0")
    assert calls == [("unit", 0, "val", 2, "box")]


def test_loader_refuses_labels_under_weak_annotations(synthetic_root):
    """The loader drops support labels by itself; training loaders keep them."""
    from refseg_bench.datasets.synthetic import SyntheticDataset
    from refseg_bench.loading import load_episode
    from refseg_bench.protocols import load_protocol
    from refseg_bench.sampler import sample_episodes

    ds = SyntheticDataset(synthetic_root)
    spec = sample_episodes(ds, 1, "val", 1, 1, 0, load_protocol("hsnet")).episodes[0]
    for kind in ("box", "point", "scribble"):
        assert load_episode(ds, spec, kind).episode.support_masks is None
        kept = load_episode(ds, spec, kind, support_labels=True).episode.support_masks
        assert kept is not None and kept[0].dtype.name == "uint8"
    assert load_episode(ds, spec, "mask").episode.support_masks is not None


def test_runner_draws_annotations_in_the_protocols_style(monkeypatch, tmp_path):
    """The ``vrp-sam`` preset's scribbles (``annotation_style: vrp-sam``) reach predict."""
    import numpy as np

    from refseg_bench import runner
    from refseg_bench.config import resolve_config
    from refseg_bench.loading import load_episode

    register_fakes()
    seen = []
    real_build = runner.build_method

    def build(cfg):
        m = real_build(cfg)
        real_predict = m.predict

        def predict(batch):
            seen.extend(batch.episodes)
            return real_predict(batch)

        m.predict = predict
        return m

    monkeypatch.setattr(runner, "build_method", build)
    cfg = resolve_config(["method=proto", "dataset=fake", "annotation=scribble", "fold=1",
                          "episodes=3", "protocol=vrp-sam", f"results_dir={tmp_path}",
                          "progress=false"])
    runner.run(cfg)
    ds = runner.plan_run(cfg).dataset
    assert len(seen) == 3
    for ep in seen:
        want = load_episode(ds, ep.spec, "scribble", "vrp-sam").episode.annotations
        harness = load_episode(ds, ep.spec, "scribble").episode.annotations
        assert all(np.array_equal(a.raster, b.raster)
                   for a, b in zip(ep.annotations, want, strict=True))
        assert not all(np.array_equal(a.raster, b.raster)
                       for a, b in zip(ep.annotations, harness, strict=True))
