"""`deeptui bench`: the lecture's batch-vs-loop ratio on each device, as plain lines (and, with
--sweep, a table and a plotext plot of time per sample against batch size)."""

from __future__ import annotations

import argparse
import sys

from deeptui.engine.device import resolve_device
from deeptui.engine.errors import EXIT_SETUP, DeviceError
from deeptui.engine.timing import LECTURE_RATIOS, LECTURE_SIZES, check_same, measure, sweep


def sweep_table(rows: list[tuple[int, float, float]]) -> str:
    lines = [f"{'batch':>6} {'batch us/sample':>16} {'loop us/sample':>15} {'ratio':>6}"]
    for b, tb, tl in rows:
        lines.append(f"{b:>6} {tb * 1e6:>16.2f} {tl * 1e6:>15.2f} {tl / tb:>6.1f}")
    return "\n".join(lines)


def sweep_plot(
    rows: list[tuple[int, float, float]], title: str = "", width: int = 80, height: int = 20, color: bool = False
) -> str:
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
    import torch

    if arg == "all":
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count()) if torch.cuda.is_available()]
    if arg == "auto":  # every device present, as the default; cuda means the current one
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [arg]


def bench_main(argv: list[str], out=print, err=None, sizes=LECTURE_SIZES) -> int:
    """`deeptui bench`: the lecture's batch-vs-loop ratio on each device (sizes: for tests)."""
    err = err or (lambda s: print(s, file=sys.stderr))
    p = argparse.ArgumentParser(
        prog="deeptui bench",
        description="Time y = x.mm(w.t()) against a loop of w.mv(x[k]) (x 2500x1000, w 1500x1000, "
        "float32) and print the speed ratio, as in Deep Learning lecture 5.",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="auto (every device present: cpu, and cuda if available), cpu, cuda, cuda:N "
        "or all (cpu and every CUDA device)",
    )
    p.add_argument("--repeats", type=int, default=51, help="timed runs per form; the median is kept")
    p.add_argument(
        "--sweep", action="store_true", help="also time batch sizes 1, 2, 4, ..., 2500 and plot time per sample"
    )
    p.add_argument("--sweep-repeats", type=int, default=5, help="timed runs per batch size in --sweep")
    args = p.parse_args(argv)
    for flag, n in (("--repeats", args.repeats), ("--sweep-repeats", args.sweep_repeats)):
        if n < 1:
            err(
                f"deeptui bench: {flag} {n} is too small; fix: use {flag} 1 or more (default 51)"
                if flag == "--repeats"
                else f"deeptui bench: {flag} {n} is too small; fix: use {flag} 1 or more (default 5)"
            )
            return 2
    try:
        devices = [resolve_device(d) for d in _devices(args.device)]
    except DeviceError as e:
        err(f"deeptui bench: {e}")
        return EXIT_SETUP
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
            out(sweep_plot(rows, title=f"{r.label} ({r.device}) time per sample", color=sys.stdout.isatty()))
    return 0
