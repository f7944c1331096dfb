"""``refseg-bench train method=fss_sam2`` and ``run`` on what it wrote; and (slow) that a
short CPU training on the synthetic benchmark raises novel-class mIoU over the untrained
model."""

from __future__ import annotations

import json

import pytest
from fakes import register_fakes

from refseg_bench.cli import main
from refseg_bench.config import resolve_config
from refseg_bench.runner import run

TINY = ["method=fss_sam2", "progress=false", "method_args.size=tiny",
        "method_args.model.image_size=64", "method_args.model.dino_size=70"]
FAKE = ["dataset=fake", "method_args.train.epochs=1", "method_args.train.episodes_per_epoch=4",
        "method_args.train.batch_size=2", "method_args.train.sampler=file_order"]


def test_train_command_writes_the_checkpoint_run_uses(tmp_path, capsys):
    register_fakes()
    results = tmp_path / "results"
    assert main(["train", f"results_dir={results}", "fold=1", "annotation=box", *TINY,
                 *FAKE]) == 0
    directory = (results / "checkpoints" / "fss_sam2" / "fake" / "fold1"
                 / "sam2.0-tiny_dino-tiny_1shot_64px")
    info = json.loads((directory / "train.json").read_text())
    assert info["complete"] and info["steps"] == 2
    assert "sha256" in capsys.readouterr().out
    cfg = resolve_config([f"results_dir={results}", "fold=1", "annotation=scribble",
                          "episodes=4", "method_args.train_if_missing=false", *TINY, *FAKE])
    method = run(cfg)["method_info"]
    assert method["trained_weights"] == "trained" and method["weights"] == "random"
    assert method["checkpoint_sha256"] == info["weights_sha256"]


@pytest.mark.slow
def test_short_cpu_training_raises_novel_class_miou(synthetic_root, tmp_path):
    """Fold 0 of the synthetic benchmark, tiny preset at 128 px, 600 training episodes
    (about 5 minutes on a loaded 2-core CPU), 200 evaluation episodes of the novel
    classes: trained against untrained weights on the same episodes."""
    common = ["method=fss_sam2", "dataset=synthetic", f"dataset_args.root={synthetic_root}",
              "fold=0", "shot=1", "episodes=200", f"results_dir={tmp_path}",
              "progress=false", "method_args.size=tiny", "method_args.train.epochs=3",
              "method_args.train.episodes_per_epoch=200"]
    untrained = run(resolve_config([*common, "method_args.untrained=true"]))
    trained = run(resolve_config(common))
    before, after = untrained["folds"]["0"]["miou"], trained["folds"]["0"]["miou"]
    print(f"\nfold 0 mIoU: untrained {before:.2f}, trained {after:.2f}")
    assert trained["method_info"]["fold_weights"]["0"]["source"] == "trained"
    assert after > before + 5
