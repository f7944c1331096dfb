"""Shared helpers for the FSS-SAM2 tests: tiny presets, a tiny network and the fake dataset."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared fakes

from fakes import ListDataset, begin, val_batch  # noqa: F401 (re-exported)

TINY_MODEL = {"sam2": "tiny", "sam2_version": "2.0", "sam2_checkpoint": None,
              "image_size": 64, "dino": "tiny", "dino_checkpoint": None, "dino_size": 70}
TINY_TRAIN = {"epochs": 2, "episodes_per_epoch": 8, "batch_size": 4, "lr": 1e-3,
              "sampler": "file_order"}
CPU = torch.device("cpu")


def tiny_options(checkpoint_dir: Path, **overrides) -> dict:
    """``method_args`` for FSSAM with the tiny networks at 64 px and a 2 x 2-step budget."""
    train = {**TINY_TRAIN, **overrides.pop("train", {})}
    model = {**TINY_MODEL, **overrides.pop("model", {})}
    return {"size": "tiny", "presets": {"tiny": {"model": model, "train": train}},
            "checkpoint_dir": str(checkpoint_dir), **overrides}


def tiny_method(checkpoint_dir: Path, dataset=None, **overrides):
    from refseg_bench.methods.fss_sam2.adapter import FSSAM

    method = FSSAM.from_config(tiny_options(checkpoint_dir, **overrides))
    method.setup(CPU, dataset or ListDataset())
    return method


def tiny_net(image_size: int = 64, dino_size: int = 70, seed: int = 0, **stages):
    """An FSSAMNet on tiny random weights."""
    from refseg_bench.methods.fss_sam2.build import build_net
    from refseg_bench.methods.fss_sam2.network import Stages
    from refseg_bench.methods.fss_sam2.settings import ModelSpec

    spec = ModelSpec(sam2="tiny", sam2_checkpoint=None, image_size=image_size, dino="tiny",
                     dino_checkpoint=None, dino_size=dino_size, init_seed=seed)
    return build_net(spec, CPU, Stages(**stages))


__all__ = ["CPU", "ListDataset", "begin", "tiny_method", "tiny_net", "tiny_options",
           "val_batch"]
