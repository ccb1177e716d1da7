"""Which torch device a run or a timing uses, its name, and how to wait for it."""

from __future__ import annotations

import torch

from .config import DEVICES_HELP
from .errors import DeviceError


def resolve_device(spec: str | torch.device) -> torch.device:
    """'auto' -> cuda when present, else cpu; 'cuda' -> the current CUDA device. Raises
    DeviceError (one line with the fix) for a CUDA device this machine does not have."""
    spec = str(spec)
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise DeviceError(f"unknown device {spec!r}", fix=f"use {DEVICES_HELP}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA is not available on this machine", fix="use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= count:
            raise DeviceError(
                f"there is no {dev} (this machine has {count} CUDA device(s)); "
                f"fix: use --device cuda:0 .. cuda:{count - 1}"
            )
    elif dev.type != "cpu":
        raise DeviceError(f"unknown device {spec!r}", fix=f"use {DEVICES_HELP}")
    return dev


def device_label(device: torch.device) -> str:
    """'cpu' or e.g. 'cuda:0 NVIDIA H100 80GB HBM3'."""
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{idx} {torch.cuda.get_device_name(idx)}"
    return "cpu"


def activate(device: torch.device) -> None:
    """Make `device` the calling thread's current CUDA device (each thread has its own): kernels
    launched without a device, and torch.cuda calls without one, then go to the run's GPU."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def synchronize(device: torch.device) -> None:
    """Wait for the kernels queued on `device` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
