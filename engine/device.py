"""Which torch device a run or a timing uses, its name, how to wait for it, and what its
autocast dtype costs there."""

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


FAST_FP16 = {"avx512_fp16", "amx_fp16"}  # x86 flags of CPUs with native fp16 arithmetic
FAST_BF16 = {"avx512_bf16", "amx_bf16"}


def cpu_flags() -> set[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def amp_note(device: torch.device, amp: str) -> str:
    """A word on an autocast dtype that costs more than it saves where it runs: fp16 on a CPU
    without native fp16 arithmetic is emulated (measured 6x slower than fp32 on the quickstart)."""
    if device.type != "cpu" or amp != "fp16":
        return ""
    flags = cpu_flags()
    if flags & FAST_FP16:
        return ""
    other = "'bf16', which this CPU computes natively, or 'off'" if flags & FAST_BF16 else "'off' (fp32)"
    return (
        "perf.amp = 'fp16' on a CPU without fast fp16 kernels (no AVX512-FP16 or AMX-FP16): autocast "
        f"emulates it, measured 6x slower than fp32 on the quickstart; fix: perf.amp = {other}"
    )
