"""What deeptui costs: training steps/s of (a) a plain PyTorch loop written as the lecture writes
it, (b) deeptui's engine headless, (c) the engine with the dashboard live under Textual's headless
driver. Same preset (quickstart's Monster on generated shapes), same data in memory, batch size and
optimizer; the engine variants run as the CLI runs them (engine built in its own thread, control
socket served). Prints each variant's median steps/s and the medians of the paired ratios
headless/plain, dashboard/plain and dashboard/headless.

    .venv/bin/python benchmarks/overhead.py [--rounds 30] [--seconds 2] [--threads N] [--preset P] [-v]
                                            [--device cpu|cuda] [--variants plain,headless,dashboard]

On CUDA it also says whether each loop is GPU-bound: the GPU time of a step (CUDA events around
steps sampled in the warm-up round, the host's launches kept out by a spin kernel that holds the
stream while the step is queued) beside the wall time per step, and NVML's utilisation read at
the end of each window (with nvidia-ml-py). A step whose GPU time is well under its wall time is
bound by the host: launches, Python, and for the dashboard the UI thread's share of the GIL.

How it measures. On a shared 2-core machine the speed of torch's two OpenMP threads swings by
+-15% from one second to the next (other tenants, kernel threads), more than the effect measured
here, so variants that run one after the other in whole runs compare the machine's moods, not the
code. Here the three variants run as three processes side by side and take turns: the benchmark
lets one run for `--seconds` (SIGCONT) while the other two are frozen (SIGSTOP), then the next,
for `--rounds` rounds, rotating who goes first. A round's three windows lie within a few seconds
of each other, so each round gives one paired ratio; the result is the median over rounds, with
its 95% confidence interval (distribution-free, from the order statistics). The first round is
warm-up (the dashboard mounts in it) and is not counted.

Speed is read from the rows each variant logs every `log.interval` steps (the engine's own
metrics.csv, on the engine's clock; the plain loop writes the same rows): the steps from the last
row before a window to the last row in it, over the time the process ran in between. A frozen
process's clock runs on, so its timed work falls due when it is continued (the dashboard redraws,
the engine flushes its log); that work is counted. With windows as short as the dashboard's
1-second frame it redraws a little more often than for a user: the error is against the
dashboard. Spans that hold an epoch end are left out (the engine evaluates there, the plain loop
does not); augmentation and the feature-freezing schedule are off, so the three do the same
arithmetic.

Each variant is its own process anyway: torch's OpenMP pools are per calling thread, and once a
process has run torch in more threads than it has cores, libgomp stops spin-waiting and every
later run in that process is slower.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from deeptui.engine.build import seed_everything  # noqa: E402
from deeptui.engine.config import load_config  # noqa: E402
from deeptui.engine.data import build_data  # noqa: E402
from deeptui.engine.models import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("plain", "headless", "dashboard")
EPOCH_BATCHES = 1500  # batches per epoch, generated once per process: tens of seconds of training


def config(preset: str, overrides: list[str] = (), device: str = "cpu"):
    probe = load_config(preset, [])
    batch = probe.data.batch_size
    return load_config(
        preset,
        [
            "run.epochs=100000",
            "run.max_steps=0",
            "run.auto_timing=false",
            f'run.device="{device}"',
            f"data.train_size={EPOCH_BATCHES * batch}",
            "data.test_size=100",
            "data.flip=false",
            "data.crop_padding=0",
            "data.shuffle=true",
            "schedule.freeze_features_epochs=0",
            "log.checkpoint_every=0",
            *overrides,
        ],
    )


# ---- the variants: each runs in its own process until it is terminated ---------------------


def ready(clock_offset: float) -> None:
    """Tell the parent we are set up (and how our clock maps to time.monotonic), then freeze
    until our first window."""
    print(f"ready {clock_offset!r}", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)


class GpuClock:
    """The GPU time of a training step without the host's share: a spin kernel holds the stream
    while the host queues the whole step behind it, so the CUDA events around the step time its
    kernels back to back. Samples steps skip+1 .. skip+n (in the warm-up round, not counted) and
    appends each in ms to `path`; on the CPU it does nothing."""

    def __init__(self, device: torch.device, path: Path, skip: int = 5, n: int = 10, hold_s: float = 0.05):
        self.on, self.path, self.skip, self.n, self.seen = device.type == "cuda", path, skip, n, 0
        if self.on:  # clock_rate: kHz
            self.cycles = int(torch.cuda.get_device_properties(device).clock_rate * 1000 * hold_s)

    @contextlib.contextmanager
    def step(self):
        self.seen += 1
        if not self.on or not self.skip < self.seen <= self.skip + self.n:
            yield
            return
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(self.cycles)
        start.record()
        yield
        end.record()
        end.synchronize()  # a sampled warm-up step waits here; the counted rounds do not
        with self.path.open("a") as f:
            f.write(f"{start.elapsed_time(end)!r}\n")


def plain(cfg, tmp: Path, rows: Path) -> None:
    """The lecture's loop over batches already in memory; a row every log.interval steps."""
    seed_everything(cfg.run.seed)
    device = torch.device(cfg.run.device)
    data = build_data(cfg, tmp / "data", device)
    batches = list(data.train)  # tensors in memory, cut once
    data.close()
    model = build_model(cfg.model, data.in_channels, data.image_size, data.num_classes).to(device)
    clock = GpuClock(device, tmp / "gpu.plain")
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum)
    model.train()
    interval = cfg.log.interval
    out = rows.open("w", buffering=1)
    ready(0.0)
    step, epoch = 0, 0
    while True:
        epoch += 1
        running_loss = 0.0
        for x, y in batches:
            with clock.step():
                output = model(x)
                loss = criterion(output, y)
                model.zero_grad()
                loss.backward()
                optimizer.step()
            running_loss += loss.item()
            step += 1
            if step % interval == 0:
                out.write(f"{epoch},{step},{time.monotonic()!r}\n")


def engine_variant(name: str, cfg, tmp: Path, size=(100, 30)) -> None:
    from deeptui.engine.build import build_in_thread
    from deeptui.engine.loop import Engine
    from deeptui.tui.runner import serving

    clock, train_step = GpuClock(torch.device(cfg.run.device), tmp / f"gpu.{name}"), Engine._train_step

    def timed_step(self, x, y):
        with clock.step():
            train_step(self, x, y)

    Engine._train_step = timed_step  # the benchmark's own probe, in this process only
    eng = build_in_thread(cfg, data_root=tmp / "data", log_dir=tmp / "runs" / name)  # as the CLI does
    ready(time.monotonic() - eng.now())
    with serving(eng):
        if name == "headless":
            from deeptui.tui.headless import HeadlessPrinter, run_headless

            run_headless(eng, HeadlessPrinter(out=io.StringIO()))  # SIGTERM: stop, flush, return
        else:
            # The app runs as a user's would (headless driver, no Pilot: Pilot.pause messages every
            # widget to wait for idle, which would load the UI thread far more than a user does).
            from deeptui.tui.app import DeeptuiApp

            eng.interactive = True
            app = DeeptuiApp(eng, handle_signals=True)  # SIGTERM: stop the engine, flush, exit
            app.run(headless=True, size=size)
            app.stop_session("quit")


# ---- the parent: windows, rows, ratios ------------------------------------------------------


def read_rows(name: str, tmp: Path, offset: float) -> list[tuple[int, int, float]]:
    """(epoch, step, time.monotonic) of each logged training row."""
    if name == "plain":
        lines = (tmp / "plain.rows").read_text().splitlines()
        return [(int(e), int(s), float(t)) for e, s, t in (line.split(",") for line in lines if line)]
    (metrics,) = (tmp / "runs" / name).glob("*/metrics.csv")
    with metrics.open() as f:
        return [
            (int(r["epoch"]), int(r["step"]), float(r["time_s"]) + offset)
            for r in csv.DictReader(f)
            if r["split"] == "train"
        ]


def window_rate(rows, windows: list[tuple[float, float]], k: int) -> float | None:
    """Steps/s in window k: from the last row logged before the window to the last row logged
    in it, over the time the process ran in between (SIGSTOPped time excluded). So the work a
    variant does right after it is continued (the dashboard's redraw, the engine's log flush,
    which a frozen clock makes due) is counted, not lost between rows. None if the span holds
    an epoch end (the engine evaluates there, the plain loop does not) or has no rows."""
    t0, t1 = windows[k]
    before = [r for r in rows if r[2] < t0]
    inside = [r for r in rows if t0 <= r[2] <= t1]
    if not before or not inside:
        return None
    (ea, sa, ta), (eb, sb, tb) = before[-1], inside[-1]
    if ea != eb:
        return None
    ran = sum(max(0.0, min(tb, w1) - max(ta, w0)) for w0, w1 in windows)
    return (sb - sa) / ran if ran > 0 else None


def median_ci(xs: list[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median: (x_(k), x_(n+1-k)), k the largest
    with P(Binomial(n, 1/2) <= k-1) <= (1-level)/2."""
    xs, n = sorted(xs), len(xs)
    tail, k = 0.0, 0
    while tail + math.comb(n, k) / 2**n <= (1 - level) / 2:
        tail += math.comb(n, k) / 2**n
        k += 1
    return (xs[k - 1], xs[n - k]) if k else (xs[0], xs[-1])


def wait_stopped(proc: subprocess.Popen) -> None:
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    if not os.WIFSTOPPED(status):
        err = proc.stderr.read() if proc.stderr else ""
        raise SystemExit(f"overhead.py: a variant exited during the benchmark:\n{err[-2000:]}")


def spawn(name: str, args, tmp: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        __file__,
        "--variant",
        name,
        "--tmp",
        str(tmp),
        "--preset",
        args.preset,
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ] + [f"--set={s}" for s in args.set]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(name: str, proc: subprocess.Popen) -> float:
    """Its clock offset, once it has built everything and stopped itself before its first step."""
    line = proc.stdout.readline()
    if not line.startswith("ready "):
        raise SystemExit(f"overhead.py: variant {name} did not start:\n{proc.stderr.read()[-2000:]}")
    wait_stopped(proc)
    return float(line.split()[1])


def has_row(name: str, tmp: Path) -> bool:
    """Whether the variant has logged a training row (the engines write their first at once)."""
    if name == "plain":
        path = tmp / "plain.rows"
        return path.exists() and path.stat().st_size > 0
    return any(len(m.read_text().splitlines()) >= 2 for m in (tmp / "runs" / name).glob("*/metrics.csv"))


def take_turns(
    procs: dict[str, subprocess.Popen],
    rounds: int,
    seconds: float,
    tmp: Path | None = None,
    sample=None,
    samples: dict[str, list] | None = None,
) -> dict[str, list[tuple[float, float]]]:
    """Let each process run for `seconds` while the others are frozen, for `rounds` rounds and one
    warm-up round, rotating who goes first; the (start, end) of every process's windows. The
    warm-up window lasts until the variant's first logged row (the dashboard starts its app in
    it; on a loaded machine 2 s were not enough, and no later window had a row before it).
    sample(): read at the end of each window into samples[name] (NVML's utilisation)."""
    names = list(procs)
    windows: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(rounds + 1):
        k = r % len(names)
        for name in names[k:] + names[:k]:  # rotate, so no variant always goes first
            proc = procs[name]
            t0 = time.monotonic()
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(seconds)
            deadline = time.monotonic() + 120
            while r == 0 and tmp is not None and not has_row(name, tmp) and time.monotonic() < deadline:
                time.sleep(0.05)
            if sample is not None and samples is not None:
                samples.setdefault(name, []).append(sample())
            os.kill(proc.pid, signal.SIGSTOP)
            t1 = time.monotonic()
            wait_stopped(proc)
            windows[name].append((t0, t1))
    return windows


def counted_rates(rows: dict[str, list], windows: dict[str, list], rounds: int) -> dict[str, list[float]]:
    """Steps/s of each variant in each counted round (the warm-up round and any round where a
    variant's window cannot be measured are left out, for every variant alike)."""
    rates = {n: [window_rate(rows[n], windows[n], k) for k in range(1, rounds + 1)] for n in rows}
    counted = [i for i in range(rounds) if all(rates[n][i] is not None for n in rows)]
    if not counted:
        seen = ", ".join(f"{n}: {sum(r is not None for r in rates[n])}/{rounds} ({len(rows[n])} rows)" for n in rows)
        raise SystemExit(
            f"no round with a measurable window for every variant ({seen}); "
            "pass a longer --seconds or --set log.interval=<fewer steps>"
        )
    return {n: [rates[n][i] for i in counted] for n in rows}


def paired(rates: dict[str, list[float]], a: str, b: str) -> tuple[float, float, float]:
    """Median of the per-round ratios a/b, and its 95% confidence interval."""
    ratios = [x / y for x, y in zip(rates[a], rates[b])]
    return (statistics.median(ratios), *median_ci(ratios))


def nvml_utilisation(device: torch.device):
    """A function reading the GPU's utilisation in %, or None (not CUDA, or no NVML)."""
    if device.type != "cuda":
        return None
    try:
        import pynvml

        from deeptui.engine.system import nvml_handle

        pynvml.nvmlInit()
        handle = nvml_handle(pynvml, device.index or 0)
    except Exception:  # no nvidia-ml-py, no driver library
        return None
    return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)


def gpu_ms(tmp: Path, name: str) -> float | None:
    """The median GPU time of the variant's sampled steps, in ms (None on the CPU)."""
    path = tmp / f"gpu.{name}"
    values = [float(v) for v in path.read_text().split()] if path.exists() else []
    return statistics.median(values) if values else None


def verdict(name: str, gpu: float | None, wall: float) -> str:
    """Whether the variant's loop waits for the GPU or the GPU waits for it."""
    if gpu is None:
        return f"{name}: no GPU time (not on CUDA)"
    busy = gpu / wall
    if busy >= 0.8:
        return f"{name}: GPU-bound (the GPU works {busy:.0%} of each step)"
    host = "launches, Python" + (" and the UI thread" if name == "dashboard" else "")
    return f"{name}: host-bound (the GPU works {busy:.0%} of each step; {host} take the rest)"


def finish(procs: dict[str, subprocess.Popen]) -> None:
    """Engines stop as on Ctrl-C (flushing metrics.csv); the plain loop is killed."""
    for name, p in procs.items():
        os.kill(p.pid, signal.SIGKILL if name == "plain" else signal.SIGTERM)
        os.kill(p.pid, signal.SIGCONT)
    for p in procs.values():
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default=str(ROOT / "presets" / "quickstart.toml"))
    p.add_argument("--rounds", type=int, default=30, help="counted rounds (one warm-up round more)")
    p.add_argument("--seconds", type=float, default=2.0, help="each variant's window per round")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0: torch's default")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="one more preset override (as deeptui --set)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="print every round's steps/s")
    p.add_argument("--device", default="cpu", help="cpu or cuda: where every variant trains")
    p.add_argument("--variants", default=",".join(VARIANTS), help="a comma list of plain, headless, dashboard")
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config(args.preset, args.set, args.device)
    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    if args.variant:  # a child process
        tmp = Path(args.tmp)
        if args.variant == "plain":
            plain(cfg, tmp, tmp / "plain.rows")
        else:
            engine_variant(args.variant, cfg, tmp)
        return 0

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        procs, offsets, utilisation = {}, {}, {}
        sample = nvml_utilisation(torch.device(args.device))
        try:
            for name in variants:  # built side by side: each stops itself when ready
                procs[name] = spawn(name, args, tmp)
            for name in variants:
                offsets[name] = wait_ready(name, procs[name])
            windows = take_turns(procs, args.rounds, args.seconds, tmp, sample, utilisation)
        finally:
            finish(procs)
        rows = {name: read_rows(name, tmp, offsets[name]) for name in variants}
        gpu = {name: gpu_ms(tmp, name) for name in variants}

    rates = counted_rates(rows, windows, args.rounds)
    n_rounds = len(rates[variants[0]])
    if args.verbose:
        for i in range(n_rounds):
            print(f"round {i + 1:3d}: " + "  ".join(f"{n} {rates[n][i]:5.1f}" for n in variants))

    print(
        f"{cfg.run.name}: {cfg.model.name} blocks={cfg.model.blocks} channels={cfg.model.channels}, "
        f"batch {cfg.data.batch_size}, {torch.get_num_threads()} torch threads; {n_rounds} rounds "
        f"of {args.seconds:g} s windows per variant, taking turns, on {args.device}"
    )
    for n in variants:
        wall = 1000 / statistics.median(rates[n])
        util = [u for u in utilisation.get(n, [])[1:] if u == u]  # the counted windows
        gpu_text = f"GPU {gpu[n]:.1f} ms/step" if gpu[n] is not None else "GPU n/a"
        util_text = f"NVML {statistics.median(util):.0f}%" if util else "NVML n/a"
        print(
            f"  {n:9s} {statistics.median(rates[n]):7.2f} steps/s median   "
            f"(range {min(rates[n]):.1f} - {max(rates[n]):.1f})   wall {wall:.1f} ms/step, {gpu_text}, {util_text}"
        )
    for n in variants:
        print(f"  verdict: {verdict(n, gpu[n], 1000 / statistics.median(rates[n]))}")
    print("  paired ratio: median over rounds (95% confidence interval of the median)")
    for a, b, target in (("headless", "plain", 0.98), ("dashboard", "plain", 0.95), ("dashboard", "headless", None)):
        if a not in rates or b not in rates:
            continue
        med, lo, hi = paired(rates, a, b)
        goal = f"   target >= {target}" if target else ""
        print(f"  {a + ' / ' + b:22s} {med:.3f}   ({lo:.3f} - {hi:.3f}){goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
