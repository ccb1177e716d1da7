"""Data-parallel runs on torch.distributed: one engine per rank, steered through rank 0.

torchrun (or `deeptui --nproc N`, which uses torchrun's machinery) starts the ranks and sets
RANK / WORLD_SIZE / LOCAL_RANK. Rank 0 reads the user's commands; at every step boundary it
broadcasts them, and every rank applies the same commands at the same step, so optimizers,
freeze state and modes never drift apart. Metrics are summed across ranks at readback only.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo | None:
    """The rank this process is, when started by torchrun with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(info: DistInfo, device_type: str) -> None:
    if dist.is_initialized():
        return
    # A paused run broadcasts every 0.1 s, so a long timeout only matters for the one-off
    # collectives (timing on rank 0, evaluation on rank 0): allow them a generous hour.
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=datetime.timedelta(hours=1))


def device_for(info: DistInfo, spec: str) -> torch.device:
    if spec.startswith("cuda") or (spec == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def broadcast_object(obj, info: DistInfo):
    """rank 0's `obj` on every rank (small and picklable: a list of commands, a path)."""
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
