"""Rank handling for runs launched under ``torchrun``.

Episodes are sharded by rank from the one manifest (episode ``i`` goes to rank
``i % world``); totals are summed across ranks. A single process is world size 1 and
needs no process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def shard(self, indices: list[int]) -> list[int]:
        return [i for i in indices if i % self.size == self.rank]


def init_world(device: torch.device) -> World:
    """Join the process group torchrun describes in the environment (gloo on the CPU,
    NCCL on CUDA). Without ``WORLD_SIZE`` > 1 this is a single-process world."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def local_device(device: torch.device) -> torch.device:
    """On multi-GPU nodes each rank takes the GPU named by ``LOCAL_RANK``."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def shutdown(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
