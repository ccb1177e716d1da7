"""Data-parallel runs on torch.distributed: one engine per rank, steered through rank 0.

torchrun (or `deeptui --nproc N`, which uses torchrun's machinery) starts the ranks and sets
RANK / WORLD_SIZE / LOCAL_RANK. Rank 0 reads the user's commands; at every step boundary it
broadcasts them, and every rank applies the same commands at the same step, so optimizers,
freeze state and modes never drift apart. Metrics are summed across ranks at readback only.
"""

from __future__ import annotations

import datetime
import os
import signal
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import DeviceError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo | None:
    """The rank this process is, when torchrun started it (also as the only rank: a 1-process
    data-parallel run takes the same code path, NCCL included, as a larger one)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    world = int(os.environ["WORLD_SIZE"])
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


# The group that control messages (commands, the run directory, a restored checkpoint) travel on:
# gloo, on CPU tensors. On CUDA the main group is NCCL, where broadcast_object_list copies through
# the GPU and syncs the host; None means the default group (gloo already, on CPU).
_control = None
_heartbeat_s = 15.0  # a quarter of the collective timeout: how often rank 0 says it is still evaluating


def init(info: DistInfo, device_type: str, timeout_s: float = 60.0) -> None:
    """The process group; a collective that waits more than timeout_s for a rank (dead, or
    killed with its launcher) fails, and the run ends on every rank. A paused run broadcasts
    every 0.1 s: a heartbeat, so a rank that dies while paused is noticed too."""
    global _control, _heartbeat_s
    if dist.is_initialized():
        return
    die_with_parent()
    _heartbeat_s = timeout_s / 4
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=timeout)
    _control = dist.new_group(backend="gloo", timeout=timeout) if device_type == "cuda" else None


def die_with_parent() -> None:
    """Linux: SIGTERM this rank when its launcher dies (even by kill -9), so that no rank trains
    on as an orphan; the rank then stops with a checkpoint like any SIGTERM."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the launcher died before the call above
        os.kill(os.getpid(), signal.SIGTERM)


def device_for(info: DistInfo, spec: str) -> torch.device:
    """This rank's device: the GPU of its local rank (refused when there is no such GPU), or the CPU."""
    if spec.startswith("cuda") or (spec == "auto" and torch.cuda.is_available()):
        # torchrun started more ranks here than there are GPUs (deeptui --nproc checks first): every
        # rank says so, rank 0 prints it, before any of them waits for the others
        gpus, local = torch.cuda.device_count(), int(os.environ.get("LOCAL_WORLD_SIZE", info.local_rank + 1))
        if max(local, info.local_rank + 1) > gpus:
            n = max(gpus, 1)
            raise DeviceError(
                f"torchrun started {local} processes on this machine, which has {gpus} GPU(s), one per process; "
                f"fix: torchrun --nproc-per-node {n} (or deeptui --nproc {n}), or --device cpu"
            )
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def broadcast_object(obj, info: DistInfo):
    """rank 0's `obj` on every rank (picklable: a list of commands, a path, a checkpoint)."""
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def broadcast_count(n: int, info: DistInfo) -> int:
    """rank 0's `n` on every rank: one small CPU collective on the control group, no GPU sync."""
    t = torch.tensor([n if info.is_main else 0], dtype=torch.int64)
    dist.broadcast(t, src=0, group=_control)
    return int(t[0])


def with_heartbeat(batches, info: DistInfo):
    """Rank 0's test batches, telling the waiting ranks between batches (at most every quarter of
    the collective timeout) that it is still evaluating: a test set that takes longer than the
    timeout would otherwise end the run, while a rank that dies is still noticed in time."""
    last = time.monotonic()
    for batch in batches:
        if time.monotonic() - last > _heartbeat_s:
            broadcast_count(1, info)
            last = time.monotonic()
        yield batch


def evaluated(info: DistInfo) -> None:
    """Rank 0: the evaluation is over (the other ranks stop waiting)."""
    broadcast_count(0, info)


def wait_for_evaluation(info: DistInfo) -> None:
    """The ranks other than 0: wait while rank 0 evaluates, one heartbeat at a time."""
    while broadcast_count(0, info):
        pass


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def close(clean: bool = True) -> None:
    """The process group's end. After a run that did not finish (a rank died, or the launcher's
    SIGTERM when one did), NCCL's is aborted: destroy_process_group can wait for the dead peer
    until NCCL's watchdog gives up."""
    global _control
    if dist.is_initialized():
        if not clean and dist.get_backend() == "nccl":
            dist.distributed_c10d._abort_process_group()
        else:
            dist.destroy_process_group()
    _control = None
