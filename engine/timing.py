"""Batch vs loop timing, as in Fleuret's Deep Learning lecture 5.

One matrix product `x.mm(w.t())` against the same product computed row by row with `w.mv(x[k])`.
The batched form wins because one large kernel amortises dispatch overhead and uses the
hardware's parallelism; the ratio is the lecture's argument for mini-batches.

`deeptui bench` (deeptui.tui.bench) prints these figures; the `t` key times on the run's device.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .device import resolve_device, synchronize

LECTURE_SIZES = (2500, 1500, 1000)  # rows of x, rows of w, shared inner dimension
LECTURE_RATIOS = {"CPU": 5.1, "GPU": 76.0}
CUDA_WARMUP_S = 1.0  # a GPU ramps its clocks up under load


class TimingAborted(Exception):
    """should_stop() returned True between two runs."""


@dataclass(frozen=True)
class TimingReport:
    device: str  # "cpu", "cuda:0", ...
    batch_s: float  # median seconds for the whole batched product
    loop_s: float  # median seconds for the row-by-row loop
    ratio: float  # loop_s / batch_s
    batch_gflops: float
    loop_gflops: float

    @property
    def label(self) -> str:
        return "GPU" if self.device.startswith("cuda") else "CPU"

    def line(self) -> str:
        """The lecture's line, e.g. 'CPU batch vs. loop speed ratio 5.1'."""
        return f"{self.label} batch vs. loop speed ratio {self.ratio:.1f}"

    def details(self) -> str:
        return (
            f"{self.label} ({self.device}): batch {self.batch_s * 1e3:.2f} ms "
            f"({self.batch_gflops:.1f} GFLOP/s), loop {self.loop_s * 1e3:.2f} ms "
            f"({self.loop_gflops:.1f} GFLOP/s)"
        )

    def event_fields(self) -> dict:
        """The fields of events.TimingResult besides time_s, epoch and step."""
        return dict(
            device=self.device,
            batch_ms=self.batch_s * 1e3,
            loop_ms=self.loop_s * 1e3,
            ratio=self.ratio,
            batch_gflops=self.batch_gflops,
            loop_gflops=self.loop_gflops,
        )


def _operands(device: torch.device, sizes) -> tuple[torch.Tensor, torch.Tensor]:
    n, m, d = sizes
    # A private generator, so timing never moves the global RNG of a seeded run.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g).to(device)
    w = torch.randn(m, d, generator=g).to(device)
    return x, w


def _batch(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.mm(x, w.t(), out=y)


def _loop(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    for k in range(x.size(0)):
        y[k] = w.mv(x[k])
    return y


def warmup_seconds(device: torch.device) -> float:
    """How long a timing first runs untimed: a GPU ramps its clocks up under load; a CPU needs one call."""
    return CUDA_WARMUP_S if device.type == "cuda" else 0.0


def _median_time(
    fn,
    x,
    w,
    y,
    repeats: int,
    should_stop: Callable[[], bool] | None,
    progress: Callable[[int], None] | None = None,
    offset: int = 0,
    warm_s: float | None = None,
) -> float:
    """Median seconds of `repeats` calls of fn(x, w, y), after a warm-up: one call on the CPU
    (first-call allocations, lazy init); on CUDA, calls for CUDA_WARMUP_S, so that the GPU is
    timed at its working clocks, not at idle (warm_s: another length, 0 for a warm device).
    CUDA times come from CUDA events on the device."""
    cuda = x.device.type == "cuda"
    warm_until = time.perf_counter() + (warmup_seconds(x.device) if warm_s is None else warm_s)
    while True:
        if should_stop is not None and should_stop():
            raise TimingAborted
        fn(x, w, y)
        synchronize(x.device)
        if time.perf_counter() >= warm_until:
            break
    times = []
    for _ in range(repeats):
        if should_stop is not None and should_stop():
            raise TimingAborted
        if cuda:
            with torch.cuda.device(x.device):  # events record on the current device's stream
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn(x, w, y)
                end.record()
                end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn(x, w, y)
            times.append(time.perf_counter() - t0)
        if progress is not None:
            progress(offset + len(times))
    return statistics.median(times)


def measure(
    device: str | torch.device = "cpu",
    repeats: int = 51,
    sizes=LECTURE_SIZES,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[int], None] | None = None,
) -> TimingReport:
    """Median time of `repeats` runs of the batched product and of the loop, after one warm-up each.

    should_stop is polled between runs; when it returns True, TimingAborted is raised. progress is
    called with the number of timed runs done (of 2 x repeats).
    """
    if repeats < 1:
        raise ValueError(f"repeats = {repeats}; fix: use at least 1")
    dev = resolve_device(device)
    x, w = _operands(dev, sizes)
    y = torch.empty(x.size(0), w.size(0), device=dev)
    batch_s = _median_time(_batch, x, w, y, repeats, should_stop, progress)
    loop_s = _median_time(_loop, x, w, y, repeats, should_stop, progress, offset=repeats)
    flops = 2.0 * sizes[0] * sizes[1] * sizes[2]
    return TimingReport(
        device=str(dev),
        batch_s=batch_s,
        loop_s=loop_s,
        ratio=loop_s / batch_s,
        batch_gflops=flops / batch_s / 1e9,
        loop_gflops=flops / loop_s / 1e9,
    )


def check_same(device: str | torch.device = "cpu", sizes=LECTURE_SIZES) -> bool:
    """Both forms compute the same y, up to float32 rounding (sums of ~1000 terms)."""
    dev = resolve_device(device)
    x, w = _operands(dev, sizes)
    yb = _batch(x, w, torch.empty(x.size(0), w.size(0), device=dev))
    yl = _loop(x, w, torch.empty(x.size(0), w.size(0), device=dev))
    return torch.allclose(yb, yl, rtol=1e-4, atol=1e-3)


def default_batch_sizes(n: int = LECTURE_SIZES[0]) -> list[int]:
    """1, 2, 4, ... below n, then n itself."""
    sizes, b = [], 1
    while b < n:
        sizes.append(b)
        b *= 2
    return sizes + [n]


def sweep(
    device: str | torch.device = "cpu",
    batch_sizes=None,
    repeats: int = 5,
    sizes=LECTURE_SIZES,
    should_stop: Callable[[], bool] | None = None,
) -> list[tuple[int, float, float]]:
    """(batch size, batched seconds per sample, loop seconds per sample) for each batch size."""
    if repeats < 1:
        raise ValueError(f"repeats = {repeats}; fix: use at least 1")
    dev = resolve_device(device)
    n, m, d = sizes
    batch_sizes = default_batch_sizes(n) if batch_sizes is None else sorted(set(batch_sizes))
    x_all, w = _operands(dev, (max(batch_sizes), m, d))
    rows = []
    for i, b in enumerate(batch_sizes):
        x = x_all[:b]
        y = torch.empty(b, m, device=dev)
        tb = _median_time(_batch, x, w, y, repeats, should_stop, warm_s=None if i == 0 else 0.0)  # warm once
        tl = _median_time(_loop, x, w, y, repeats, should_stop, warm_s=0.0)
        rows.append((b, tb / b, tl / b))
    return rows
