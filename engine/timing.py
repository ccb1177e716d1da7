"""Batch vs loop timing, as in Fleuret's Deep Learning lecture 5.

One matrix product `x.mm(w.t())` against the same product computed row by row with `w.mv(x[k])`.
The batched form wins because one large kernel amortises dispatch overhead and uses the
hardware's parallelism; the ratio is the lecture's argument for mini-batches.

`deeptui bench` is `bench_main(argv)`; the dashboard calls `measure()` once at start.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

LECTURE_SIZES = (2500, 1500, 1000)  # rows of x, rows of w, shared inner dimension
LECTURE_RATIOS = {"CPU": 5.1, "GPU": 76.0}


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
        return (f"{self.label} ({self.device}): batch {self.batch_s * 1e3:.2f} ms "
                f"({self.batch_gflops:.1f} GFLOP/s), loop {self.loop_s * 1e3:.2f} ms "
                f"({self.loop_gflops:.1f} GFLOP/s)")

    def event_fields(self) -> dict:
        """The fields of events.TimingResult besides time_s, epoch and step."""
        return dict(device=self.device, batch_ms=self.batch_s * 1e3, loop_ms=self.loop_s * 1e3,
                    ratio=self.ratio, batch_gflops=self.batch_gflops, loop_gflops=self.loop_gflops)


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


def _median_time(fn, x, w, y, repeats: int, should_stop: Callable[[], bool] | None) -> float:
    cuda = x.is_cuda
    fn(x, w, y)  # warm-up: first-call allocations, kernel selection, lazy init
    times = []
    for _ in range(repeats):
        if should_stop is not None and should_stop():
            raise TimingAborted
        if cuda:
            torch.cuda.synchronize()  # start from an idle GPU
        t0 = time.perf_counter()
        fn(x, w, y)
        if cuda:
            torch.cuda.synchronize()  # kernels are asynchronous: wait before reading the clock
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda when present, else cpu. Raises ValueError for a CUDA device that is absent."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("CUDA is not available on this machine; fix: use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"there is no {dev} (this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s)); fix: use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return dev


def _name(dev: torch.device) -> str:
    if dev.type == "cuda" and dev.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(dev)


def measure(device: str | torch.device = "cpu", repeats: int = 51, sizes=LECTURE_SIZES,
            should_stop: Callable[[], bool] | None = None) -> TimingReport:
    """Median time of `repeats` runs of the batched product and of the loop, after one warm-up each.

    should_stop is polled between runs; when it returns True, TimingAborted is raised.
    """
    if repeats < 1:
        raise ValueError(f"repeats = {repeats}; fix: use at least 1")
    dev = resolve_device(device)
    x, w = _operands(dev, sizes)
    y = torch.empty(x.size(0), w.size(0), device=dev)
    batch_s = _median_time(_batch, x, w, y, repeats, should_stop)
    loop_s = _median_time(_loop, x, w, y, repeats, should_stop)
    flops = 2.0 * sizes[0] * sizes[1] * sizes[2]
    return TimingReport(device=_name(dev), batch_s=batch_s, loop_s=loop_s, ratio=loop_s / batch_s,
                        batch_gflops=flops / batch_s / 1e9, loop_gflops=flops / loop_s / 1e9)


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


def sweep(device: str | torch.device = "cpu", batch_sizes=None, repeats: int = 5,
          sizes=LECTURE_SIZES, should_stop: Callable[[], bool] | None = None
          ) -> list[tuple[int, float, float]]:
    """(batch size, batched seconds per sample, loop seconds per sample) for each batch size."""
    if repeats < 1:
        raise ValueError(f"repeats = {repeats}; fix: use at least 1")
    dev = resolve_device(device)
    n, m, d = sizes
    batch_sizes = default_batch_sizes(n) if batch_sizes is None else sorted(set(batch_sizes))
    x_all, w = _operands(dev, (max(batch_sizes), m, d))
    rows = []
    for b in batch_sizes:
        x = x_all[:b]
        y = torch.empty(b, m, device=dev)
        tb = _median_time(_batch, x, w, y, repeats, should_stop)
        tl = _median_time(_loop, x, w, y, repeats, should_stop)
        rows.append((b, tb / b, tl / b))
    return rows


def sweep_table(rows: list[tuple[int, float, float]]) -> str:
    lines = [f"{'batch':>6} {'batch us/sample':>16} {'loop us/sample':>15} {'ratio':>6}"]
    for b, tb, tl in rows:
        lines.append(f"{b:>6} {tb * 1e6:>16.2f} {tl * 1e6:>15.2f} {tl / tb:>6.1f}")
    return "\n".join(lines)


def sweep_plot(rows: list[tuple[int, float, float]], title: str = "", width: int = 80,
               height: int = 20, color: bool = False) -> str:
    """Time per sample against batch size (log-log) as plotext text."""
    import plotext as plt  # only the bench needs it

    plt.clear_figure()
    bs = [r[0] for r in rows]
    # distinct markers, so the plot still reads without colour (pipes, logs)
    plt.plot(bs, [r[1] * 1e6 for r in rows], label="batch", marker="*")
    plt.plot(bs, [r[2] * 1e6 for r in rows], label="loop", marker="o")
    plt.xscale("log")
    plt.yscale("log")
    plt.xlabel("batch size")
    plt.ylabel("us per sample")
    plt.title(title or "time per sample")
    plt.plotsize(width, height)
    plt.theme("clear")
    text = plt.build()
    if not color:
        text = plt.uncolorize(text)
    plt.clear_figure()
    return text


def _devices(arg: str) -> list[str]:
    if arg == "all":
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())
                          if torch.cuda.is_available()]
    if arg == "auto":  # every device present, as the default; cuda means the current one
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [arg]


def bench_main(argv: list[str], out=print, err=None, sizes=LECTURE_SIZES) -> int:
    """`deeptui bench`: the lecture's batch-vs-loop ratio on each device (sizes: for tests)."""
    err = err or (lambda s: print(s, file=sys.stderr))
    p = argparse.ArgumentParser(
        prog="deeptui bench",
        description="Time y = x.mm(w.t()) against a loop of w.mv(x[k]) (x 2500x1000, w 1500x1000, "
                    "float32) and print the speed ratio, as in Deep Learning lecture 5.")
    p.add_argument("--device", default="auto",
                   help="auto (every device present: cpu, and cuda if available), cpu, cuda, cuda:N "
                        "or all (cpu and every CUDA device)")
    p.add_argument("--repeats", type=int, default=51, help="timed runs per form; the median is kept")
    p.add_argument("--sweep", action="store_true",
                   help="also time batch sizes 1, 2, 4, ..., 2500 and plot time per sample")
    p.add_argument("--sweep-repeats", type=int, default=5, help="timed runs per batch size in --sweep")
    args = p.parse_args(argv)
    for flag, n in (("--repeats", args.repeats), ("--sweep-repeats", args.sweep_repeats)):
        if n < 1:
            err(f"deeptui bench: {flag} {n} is too small; fix: use {flag} 1 or more (default 51)"
                if flag == "--repeats" else
                f"deeptui bench: {flag} {n} is too small; fix: use {flag} 1 or more (default 5)")
            return 2
    devices = _devices(args.device)
    try:
        devices = [resolve_device(d) for d in devices]
    except (ValueError, RuntimeError) as e:
        msg = str(e) if isinstance(e, ValueError) else f"unknown device {args.device!r}"
        if "fix:" not in msg:
            msg += "; fix: use --device auto, cpu, cuda, cuda:N or all"
        err(f"deeptui bench: {msg}")
        return 2
    for dev in devices:
        r = measure(dev, repeats=args.repeats, sizes=sizes)
        out(r.line())
        out(r.details() + f"; the lecture measured {LECTURE_RATIOS[r.label]}")
        if not check_same(dev, sizes=sizes):
            err(f"deeptui bench: on {r.device} the batched and looped products differ")
            return 1
        if args.sweep:
            rows = sweep(dev, repeats=args.sweep_repeats, sizes=sizes)
            out(sweep_table(rows))
            out(sweep_plot(rows, title=f"{r.label} ({r.device}) time per sample",
                           color=sys.stdout.isatty()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(bench_main(sys.argv[1:]))
