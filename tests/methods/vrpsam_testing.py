"""Shared helpers for the VRP-SAM tests: tiny presets and the in-memory fake dataset."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared fakes

from fakes import ListDataset

from refseg_bench.episodes import EpisodeBatch
from refseg_bench.loading import load_episode
from refseg_bench.protocols import load_protocol
from refseg_bench.sampler import sample_episodes

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


def begin(method, fold: int, annotation: str = "mask", shot: int = 1) -> None:
    """Announce a unit of ``method.dataset`` as the runner does before predicting it."""
    from refseg_bench.methods.base import Unit

    method.begin_unit(Unit(method.dataset, fold, "val", shot, annotation, 0))


def val_batch(dataset, fold: int, shot: int, annotation: str, n: int = 3) -> EpisodeBatch:
    manifest = sample_episodes(dataset, fold, "val", shot, n, 0, load_protocol("hsnet"))
    episodes = [load_episode(dataset, s, annotation).episode for s in manifest.episodes]
    return EpisodeBatch(episodes, annotation)


__all__ = ["ListDataset", "begin", "tiny_method", "tiny_options", "val_batch"]
