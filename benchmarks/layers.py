"""What the per-layer statistics cost, as a ratio against the same engine without them, in the
same run. Two ways:

    .venv/bin/python benchmarks/layers.py [--steps 400] [--interval N] [--preset P]
    .venv/bin/python benchmarks/layers.py --windows [--rounds 20] [--seconds 6] [-v]

By default, paired steps in one process: the engine's own training step, watched (statistics
gathered and read back) and plain, taking turns step by step, so each pair lies within a fraction
of a second of itself on a machine whose speed swings by +-15% (and far more when others load
it) from one second to the next. The cost at an interval of N steps is one watched step's extra
time over N plain steps: median over pairs of (watched - plain), over N x the median plain step.

--windows measures as benchmarks/overhead.py does (read its docstring): the engine headless with
`log.layers_interval` at N (on) and at 0 (off) as two processes that take turns in windows of
`--seconds`, the other frozen with SIGSTOP; the median of the per-round ratios on/off, and the
ratio of total steps over total running time. A window should hold a few intervals (with the
quickstart's 5-10 steps/s on 2 shared cores and N = 50, 6 s); under heavy load from other work
the windows' rates swing too much for a 2% effect, and the paired steps are the figure to quote.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import overhead  # noqa: E402
import torch  # noqa: E402

from deeptui.engine.config import LogConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def total_rate(rows: list, windows: list) -> float:
    """Steps from the first row after the warm-up round to the last row, over the time the
    process ran in between (frozen time left out); epoch ends fall in both variants alike."""
    after = [r for r in rows if r[2] >= windows[1][0]]
    (_, s0, t0), (_, s1, t1) = after[0], after[-1]
    ran = sum(max(0.0, min(t1, w1) - max(t0, w0)) for w0, w1 in windows)
    return (s1 - s0) / ran


def paired_steps(args) -> int:
    """Watched and plain training steps of one engine, taking turns; prints the cost at N."""
    from deeptui.engine.build import build_engine

    cfg = overhead.config(args.preset, [*args.set, "log.layers_interval=1", "data.shuffle=false"])
    with tempfile.TemporaryDirectory() as d:
        eng = build_engine(cfg, data_root=Path(d) / "data", log_dir=Path(d) / "runs")
        batches, times = iter(eng.data.train), {True: [], False: []}
        try:
            for i in range(2 * args.steps + 10):
                watched = i % 2 == 1
                eng.layers.interval = 1 if watched else 2**62  # watch(step): every step, or never
                x, y = next(batches)
                t0 = time.perf_counter()
                eng._train_step(x, y)
                eng.train.step += 1
                rows = eng.layers.read()  # the readback, the one host sync of a watched step
                eng.sums.loss_sum.item()  # every step ends on the host alike (a no-op on the CPU)
                t1 = time.perf_counter()
                assert (rows is not None) == watched
                if i >= 10:  # warm-up
                    times[watched].append(t1 - t0)
        finally:
            eng.data.close()
    plain = statistics.median(times[False])
    extra = statistics.median(w - p for w, p in zip(times[True], times[False]))
    print(
        f"{cfg.run.name}: {cfg.model.name} blocks={cfg.model.blocks} channels={cfg.model.channels}, batch "
        f"{cfg.data.batch_size}, {len(eng.layers.layers)} layers, {torch.get_num_threads()} torch threads; "
        f"{args.steps} pairs of steps, watched and plain taking turns"
    )
    print(f"  plain step   {1000 * plain:8.2f} ms median")
    print(f"  watched step {1000 * statistics.median(times[True]):8.2f} ms median, {1000 * extra:+.2f} ms paired")
    for n in sorted({args.interval, 10, 50, 200}):
        cost = extra / (n * plain)
        print(
            f"  cost at log.layers_interval = {n:3d}: {100 * cost:5.2f}% of the training time "
            f"(steps/s ratio on/off {1 / (1 + cost):.4f})"
        )
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default=str(ROOT / "presets" / "quickstart.toml"))
    p.add_argument("--rounds", type=int, default=20, help="counted rounds (one warm-up round more)")
    p.add_argument("--seconds", type=float, default=6.0, help="each variant's window per round")
    p.add_argument("--interval", type=int, default=LogConfig().layers_interval, help="log.layers_interval when on")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0: torch's default")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="one more preset override")
    p.add_argument("-v", "--verbose", action="store_true", help="print every round's steps/s")
    p.add_argument("--steps", type=int, default=400, help="pairs of steps (paired-steps mode)")
    p.add_argument("--windows", action="store_true", help="two processes taking turns in windows instead")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.windows:
        return paired_steps(args)
    variants = {"off": 0, "on": args.interval}
    with tempfile.TemporaryDirectory() as d:
        procs, offsets, tmps = {}, {}, {}
        try:
            for name, interval in variants.items():
                tmps[name] = Path(d) / name
                tmps[name].mkdir()
                child = argparse.Namespace(
                    preset=args.preset, threads=args.threads, set=[*args.set, f"log.layers_interval={interval}"]
                )
                procs[name], offsets[name] = overhead.spawn("headless", child, tmps[name])
            windows = overhead.take_turns(procs, args.rounds, args.seconds)
        finally:
            overhead.finish(procs)
        rows = {name: overhead.read_rows("headless", tmps[name], offsets[name]) for name in variants}
    rates = overhead.counted_rates(rows, windows, args.rounds)
    if args.verbose:
        for i in range(len(rates["on"])):
            print(f"round {i + 1:3d}: " + "  ".join(f"{n} {rates[n][i]:5.2f}" for n in variants))
    cfg = overhead.config(args.preset, args.set)
    print(
        f"{cfg.run.name}: {cfg.model.name} blocks={cfg.model.blocks} channels={cfg.model.channels}, batch "
        f"{cfg.data.batch_size}, log.interval {cfg.log.interval}, {torch.get_num_threads()} torch threads; "
        f"{len(rates['on'])} rounds of {args.seconds:g} s windows per variant, taking turns"
    )
    for n, interval in variants.items():
        print(f"  layers {n:3s} (log.layers_interval={interval:3d}) {statistics.median(rates[n]):7.2f} steps/s median")
    med, lo, hi = overhead.paired(rates, "on", "off")
    print(f"  on / off, paired ratio: median {med:.3f}   (95% CI {lo:.3f} - {hi:.3f})   target >= 0.98")
    total = total_rate(rows["on"], windows["on"]) / total_rate(rows["off"], windows["off"])
    print(f"  on / off, total steps over total running time: {total:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
