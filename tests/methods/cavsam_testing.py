"""Shared helpers for the CAV-SAM tests: the packaged presets with a micro budget, and
episodes from the in-memory fake dataset."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared fakes

from fakes import ListDataset

from refseg_bench.episodes import Episode
from refseg_bench.loading import load_episode
from refseg_bench.protocols import load_protocol
from refseg_bench.sampler import sample_episodes

# The tiny preset, smaller still: every stage runs, each for one step; Nv = 4 gives two
# generated frames, the first of which TTGA prompts.
MICRO = {"model": {"sam2_image_size": 64, "sd_resolution": 16},
         "dbst": {"num_frames": 4, "lora_steps": 1, "lora_rank": 2, "inversion_steps": 1},
         "ttga": {"steps": 1}}
# The same as method_args dotlist overrides for the runner.
MICRO_ARGS = ["method_args.size=tiny"] + [
    f"method_args.{section}.{k}={v}" for section, body in MICRO.items() for k, v in body.items()]


def packaged_options() -> dict:
    """``configs/methods/cavsam.yaml`` as the runner would pass it."""
    text = resources.files("refseg_bench.configs").joinpath("methods/cavsam.yaml").read_text()
    return OmegaConf.to_container(OmegaConf.create(text), resolve=True)


def micro_method(**overrides):
    """A set-up CAVSAM on the CPU with the micro budget; ``overrides`` merge per section."""
    from refseg_bench.methods.cavsam.adapter import CAVSAM

    options = {**packaged_options(), "size": "tiny"}
    for section, body in MICRO.items():
        options[section] = {**body, **overrides.pop(section, {})}
    options.update(overrides)
    method = CAVSAM.from_config(options)
    method.setup(torch.device("cpu"), ListDataset())
    return method


def fake_episodes(annotation: str = "mask", shot: int = 1, n: int = 2) -> list[Episode]:
    ds = ListDataset()
    specs = sample_episodes(ds, 0, "val", shot, n, 0, load_protocol("hsnet")).episodes
    return [load_episode(ds, s, annotation).episode for s in specs]
