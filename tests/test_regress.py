"""`refseg-bench regress`: the golden records of the repository cover every registered
method with the plan's current settings; a perturbed method fails naming the method, fold
and episodes; `--update` accepts the change."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes import register_fakes  # noqa: E402

from refseg_bench import regress  # noqa: E402
from refseg_bench.cli import main  # noqa: E402
from refseg_bench.regress_check import check_case, failure_message  # noqa: E402

PLAN = """\
run: {dataset: fake, fold: [0, 2], episodes: 4, shot: 1, seed: 0, device: cpu}
methods:
  proto: {tiny: [], annotations: [mask, box]}
  oracle: {tiny: []}
"""


def _builtin_methods() -> list[str]:
    register_fakes()  # other tests may have registered fakes: they need no golden
    from refseg_bench.registry import METHODS

    return [m for m in METHODS.names() if not METHODS.entry(m).target.startswith("fakes:")]


def test_every_registered_method_has_a_golden_with_the_current_settings():
    plan = regress.load_plan()
    golden_dir = regress.default_golden_dir()
    missing = [m for m in _builtin_methods()
               if not regress.golden_path(golden_dir, m).is_file()]
    assert not missing, (f"no golden record for {missing}: run `refseg-bench regress --update "
                         f"--method NAME` and commit configs/goldens/NAME.json")
    for case in regress.cases(plan):
        golden = regress.read_golden(regress.golden_path(golden_dir, case.method))
        recorded = golden["cases"].get(case.annotation)
        assert recorded is not None, f"{case.method} ({case.annotation}) has no golden entry"
        assert recorded["settings"] == list(case.settings), (
            f"configs/regress.yaml changed the settings of {case.method} ({case.annotation}); "
            f"regenerate: refseg-bench regress --update --method {case.method}")
        assert recorded["folds"] and all(f["episodes"] for f in recorded["folds"].values())


def test_no_golden_without_a_registered_method():
    names = {p.stem for p in regress.default_golden_dir().glob("*.json")}
    assert names <= set(_builtin_methods()), f"goldens of unregistered methods: " \
        f"{sorted(names - set(_builtin_methods()))}"


def _regress(tmp_path, *extra) -> list[str]:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    return ["regress", "--plan", str(plan), "--goldens", str(tmp_path / "goldens"),
            "--workdir", str(tmp_path / "work"), "--method", "proto", "--method", "oracle",
            *extra]


def test_perturbed_method_fails_naming_method_fold_and_episodes_then_update_accepts(
        tmp_path, monkeypatch, capsys):
    register_fakes()
    assert main(_regress(tmp_path, "--update")) == 0
    assert (tmp_path / "goldens" / "proto.json").is_file()
    assert main(_regress(tmp_path)) == 0
    capsys.readouterr()

    from refseg_bench.methods.baselines import Prototype

    real_predict = Prototype.predict

    def perturbed(self, batch):  # fold 2 only: flip the prediction of episode 1
        out = real_predict(self, batch)
        return [1 - p if self.unit.fold == 2 and e.spec.index == 1 else p
                for p, e in zip(out, batch, strict=True)]

    monkeypatch.setattr(Prototype, "predict", perturbed)
    assert main(_regress(tmp_path)) == 1
    out = capsys.readouterr().out
    assert "proto (mask) fold 2: 1 of 4 episodes moved" in out
    assert "proto (box) fold 2: 1 of 4 episodes moved" in out
    assert "episode #1 (" in out
    assert "fold 0" not in out.split("REGRESSION")[1]  # only the perturbed fold is named
    assert "oracle (mask)" not in out.split("REGRESSION")[1]
    assert "refseg-bench regress --update --method proto" in out

    assert main(_regress(tmp_path, "--update")) == 0
    out = capsys.readouterr().out
    assert "proto.json: rewritten" in out and "oracle.json: unchanged" in out
    diff = [line for line in out.splitlines() if line.startswith(("-  ", "+  "))]
    assert len(diff) == 2 * 4  # per case: episode 1 of fold 2 and fold 2's mIoU, - and +
    assert main(_regress(tmp_path)) == 0
    assert "every episode matches" in capsys.readouterr().out


def test_regress_runs_on_one_thread_without_onednn_and_restores_both():
    before = torch.get_num_threads(), torch.backends.mkldnn.enabled
    with regress.cpu_paths():
        assert torch.get_num_threads() == 1 and not torch.backends.mkldnn.enabled
    assert (torch.get_num_threads(), torch.backends.mkldnn.enabled) == before


def test_cpu_kernels_are_pinned_before_torch_runs(tmp_path):
    """In a fresh process, `refseg-bench regress` pins ATen to AVX2 kernels whatever the
    machine has (an AVX-512 machine would otherwise compute other floats)."""
    import subprocess

    code = ("import sys, torch\n"
            "from refseg_bench import regress\n"
            "regress.pin_cpu_paths()\n"
            "torch.ones(3).sum()\n"
            "print(regress.cpu_capability())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    assert out in ("AVX2", "DEFAULT"), out  # DEFAULT: a machine without AVX2


def _case(totals, manifest="m1", weights=None, settings=("method=x",)) -> dict:
    episodes = [{"index": i, "class_id": 1, "query": f"q{i}", "totals": t}
                for i, t in enumerate(totals)]
    return {"settings": list(settings), "folds": {"0": {
        "manifest_sha256": manifest, "weights_sha256": weights, "miou": 50.0,
        "episodes": episodes}}}


def test_check_names_why_a_fold_differs():
    golden = _case([[1, 2, 3, 4], [2, 4, 3, 4]])
    assert check_case("x", "mask", golden, _case([[1, 2, 3, 4], [2, 4, 3, 4]]))[0].passed
    (c,) = check_case("x", "mask", golden, _case([[1, 2, 3, 4], [3, 4, 3, 4]]))
    assert [m.index for m in c.moved] == [1] and c.max_iou_change == pytest.approx(25.0)
    assert "#1 (q1, class 1): IoU 50.00 -> 75.00" in failure_message([c])
    (c,) = check_case("x", "mask", golden, _case([[1, 2, 3, 4], [2, 4, 3, 4]], manifest="m2"))
    assert "manifest sha256" in c.notes[0] and not c.passed
    (c,) = check_case("x", "mask", golden, _case([[1, 2, 3, 4], [2, 4, 3, 4]], weights="w"))
    assert "other trained weights" in c.notes[0]
    (c,) = check_case("x", "mask", golden, _case([[1, 2, 3, 4], [2, 4, 3, 4]],
                                                 settings=("method=x", "episodes=9")))
    assert c.notes == ["run settings changed: +episodes=9"]
    (c,) = check_case("x", "mask", None, _case([[1, 2, 3, 4]]))
    assert c.notes == ["no golden record"]
    (c,) = check_case("x", "mask", golden, _case([[1, 2, 3, 4]]))
    assert [m.describe() for m in c.moved] == ["#1 (q1, class 1): episode gone"]


def test_unknown_method_and_bad_plan_are_user_errors(tmp_path, capsys):
    assert main(["regress", "--method", "nope"]) == 2
    assert "no regression entry for ['nope']" in capsys.readouterr().err
    bad = tmp_path / "plan.yaml"
    bad.write_text("run: {seed: 0}\nmethods: {proto: {tiny: [size]}}\n")
    assert main(["regress", "--plan", str(bad)]) == 2
    assert "list of key=value" in capsys.readouterr().err


def test_golden_text_has_one_episode_per_line():
    record = regress.golden_record("x", {"mask": _case([[1, 2, 3, 4], [2, 4, 3, 4]])})
    text = regress.format_golden(record)
    assert '{"index": 1, "class_id": 1, "query": "q1", "totals": [2, 4, 3, 4]}' in text
    import json

    assert json.loads(text) == json.loads(json.dumps(record))


def test_cached_weights_are_dropped_when_asked_or_when_sources_change(tmp_path):
    cache = tmp_path / "checkpoints"
    cache.mkdir()
    assert regress.prepare_cache(tmp_path) == ("the sources changed since those weights "
                                               "were trained")  # no stamp yet
    cache.mkdir()
    assert regress.prepare_cache(tmp_path) is None and cache.exists()
    (tmp_path / "checkpoints.source-sha256").write_text("other\n")
    assert regress.prepare_cache(tmp_path) is not None and not cache.exists()
    cache.mkdir()
    assert regress.prepare_cache(tmp_path, retrain=True) == "--retrain" and not cache.exists()
