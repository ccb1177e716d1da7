"""What deeptui.watch costs a loop of your own: training steps/s of the same loop (examples/own_loop.py's
network and mixup loss, batches made in memory beforehand) plain, and watched (run.step after every
optimizer step: the loss summed on the device, one readback every --log-every steps, the layer
probe on one step in 50, the control socket served, the machine read once a second). Prints each
loop's median steps/s and the median of the paired ratios watched/plain with its 95% interval.

    .venv/bin/python benchmarks/watched.py [--rounds 30] [--seconds 2] [--threads N] [--log-every 50] [-v]

The two loops run as two processes side by side and take turns, as benchmarks/overhead.py's
variants do (the other frozen with SIGSTOP; its docstring says why): a round's two windows lie
within seconds of each other, so each round gives one paired ratio; the first round is warm-up.
Both loops time themselves the same way: a row (epoch, step, time.monotonic()) every --row-every
steps, read after the run; deeptui's own metrics.csv is not used for the timing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "examples"))

import torch  # noqa: E402
from overhead import counted_rates, finish, paired, ready, take_turns, wait_ready  # noqa: E402
from own_loop import Net, bars, mixup_loss  # noqa: E402

VARIANTS = ("plain", "watched")
BATCHES = 200  # batches made once, cycled


def loop(name: str, tmp: Path, row_every: int, log_every: int) -> None:
    """One of the two loops, until it is killed: the same steps; `watched` adds deeptui.watch."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    batches = [bars(64, g) for _ in range(BATCHES)]
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    run = None
    if name == "watched":
        import deeptui

        run = deeptui.watch(model, optimizer, name="bench", log_every=log_every, log_dir=tmp / "runs")
    out = (tmp / f"{name}.rows").open("w", buffering=1)
    model.train()
    ready(0.0)
    step = 0
    while True:
        for x, y in batches:
            loss, correct = mixup_loss(model, x, y, g)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if run is not None:
                run.step(loss, batch_size=len(x), correct=correct)
            step += 1
            if step % row_every == 0:
                out.write(f"1,{step},{time.monotonic()!r}\n")


def step_cost(tmp: Path, log_every: int, calls: int = 3000) -> float:
    """Seconds per run.step() call on its own (one batch's loss and count, already computed), its
    readbacks and layer probes included: what watching adds to each of the loop's steps, without
    the machine's noise of a whole step around it."""
    import deeptui

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = Net()
    x, y = bars(64, g)
    loss, correct = mixup_loss(model, x, y, g)
    loss = loss.detach()
    run = deeptui.watch(
        model, torch.optim.SGD(model.parameters(), lr=0.05), name="cost", log_every=log_every, log_dir=tmp
    )
    t0 = time.perf_counter()
    for _ in range(calls):
        run.step(loss, batch_size=64, correct=correct)
    seconds = (time.perf_counter() - t0) / calls
    run.close()
    return seconds


def read_rows(tmp: Path, name: str) -> list[tuple[int, int, float]]:
    lines = (tmp / f"{name}.rows").read_text().splitlines()
    return [(int(e), int(s), float(t)) for e, s, t in (line.split(",") for line in lines if line)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=30, help="counted rounds (one warm-up round more)")
    p.add_argument("--seconds", type=float, default=2.0, help="each loop's window per round")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads in both loops; 0: torch's default")
    p.add_argument("--log-every", type=int, default=50, help="the watched loop's logging interval (deeptui's default)")
    p.add_argument("--row-every", type=int, default=5, help="steps per timing row, in both loops")
    p.add_argument("-v", "--verbose", action="store_true", help="print every round's steps/s")
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.variant:  # a child process
        loop(args.variant, Path(args.tmp), args.row_every, args.log_every)
        return 0

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env = {**os.environ, "XDG_STATE_HOME": str(tmp / "state")}  # the watched run stays out of your run list
        procs = {}
        try:
            for name in VARIANTS:
                procs[name] = subprocess.Popen(
                    [sys.executable, __file__, "--variant", name, "--tmp", str(tmp), "--threads", str(args.threads)]
                    + [f"--log-every={args.log_every}", f"--row-every={args.row_every}"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            for name in VARIANTS:
                wait_ready(name, procs[name])
            windows = take_turns(procs, args.rounds, args.seconds)
        finally:
            finish(procs)
        rows = {name: read_rows(tmp, name) for name in VARIANTS}
        os.environ["XDG_STATE_HOME"] = env["XDG_STATE_HOME"]
        with contextlib.redirect_stderr(io.StringIO()):  # its "deeptui: watching ..." line
            cost = step_cost(tmp / "cost", args.log_every)

    rates = counted_rates(rows, windows, args.rounds)
    n = len(rates["plain"])
    if args.verbose:
        for i in range(n):
            print(f"round {i + 1:3d}: plain {rates['plain'][i]:6.1f}  watched {rates['watched'][i]:6.1f} steps/s")
    print(
        f"examples/own_loop.py's loop (mixup, batch 64), {torch.get_num_threads()} torch threads; {n} rounds of "
        f"{args.seconds:g} s windows per loop, taking turns; deeptui logs every {args.log_every} steps"
    )
    for name in VARIANTS:
        r = rates[name]
        print(f"  {name:8s} {statistics.median(r):7.1f} steps/s median   (range {min(r):.1f} - {max(r):.1f})")
    med, lo, hi = paired(rates, "watched", "plain")
    print("  paired ratio: median over rounds (95% confidence interval of the median)")
    print(f"  watched / plain   {med:.3f}   ({lo:.3f} - {hi:.3f})   target >= 0.98")
    step = 1 / statistics.median(rates["plain"])
    print(f"  run.step() alone: {cost * 1e6:.0f} us per call, {cost / step:.2%} of the plain loop's median step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
