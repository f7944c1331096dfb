"""Shared helpers for the VRP-SAM tests: tiny presets and the in-memory fake dataset."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared fakes

from fakes import ListDataset, begin, val_batch  # noqa: F401 (re-exported)

TINY_MODEL = {"sam": "tiny", "sam_checkpoint": None, "sam_image_size": 128,
              "backbone": "resnet_v2_tiny", "backbone_checkpoint": None, "image_size": 64,
              "prompt_scale": 8.0, "logit_scale": 20.0}
TINY_TRAIN = {"epochs": 2, "episodes_per_epoch": 8, "batch_size": 4, "lr": 1e-3}


def tiny_options(checkpoint_dir: Path, **overrides) -> dict:
    """``method_args`` for a VRPSAM with the tiny preset at 64 px and a 2 x 2-step budget."""
    train = {**TINY_TRAIN, **overrides.pop("train", {})}
    return {"size": "tiny", "presets": {"tiny": {"model": TINY_MODEL, "train": train}},
            "checkpoint_dir": str(checkpoint_dir), **overrides}


def tiny_method(checkpoint_dir: Path, dataset=None, **overrides):
    from refseg_bench.methods.vrpsam.adapter import VRPSAM

    method = VRPSAM.from_config(tiny_options(checkpoint_dir, **overrides))
    method.setup(torch.device("cpu"), dataset or ListDataset())
    return method


__all__ = ["ListDataset", "begin", "tiny_method", "tiny_options", "val_batch"]
