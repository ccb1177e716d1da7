"""What deeptui costs: training steps/s of (a) a plain PyTorch loop written as the lecture writes
it, (b) deeptui's engine headless, (c) the engine with the dashboard live under Textual's headless
driver. Same preset (quickstart's Monster on generated shapes), same data in memory, batch size,
optimizer and number of steps; the variants run interleaved and each prints the median of its
repeats, then the ratios headless/plain, dashboard/plain and dashboard/headless.

    .venv/bin/python benchmarks/overhead.py [--steps 200] [--repeats 5] [--threads N] [--preset P]

Throughput is measured over the training steps only: for the engine from its first to its last
logged interval (engine clock, so setup, data generation and the end-of-run evaluation are not
counted); for the plain loop over the same steps after the same warm-up steps. Augmentation and
the feature-freezing schedule are switched off so that the three do the same arithmetic.

Each measurement runs in a fresh process: torch's OpenMP pools are per calling thread, and once a
process has run torch in more threads than it has cores, libgomp stops spin-waiting and every
later run in that process is slower, which would punish whichever variant ran last.

On 2 CPU cores any other busy process makes torch's intra-op threads wait on each other; run it
on a quiet machine, or pass --threads 1 to compare single-threaded.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from engine import events as E  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.data import build_data  # noqa: E402
from engine.engine import Engine, seed_everything  # noqa: E402
from engine.models import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def config(preset: str, steps: int):
    probe = load_config(preset, [])
    batch = probe.data.batch_size
    return load_config(preset, [
        "run.epochs=1", "run.max_steps=0", "run.timing_at_start=false", 'run.device="cpu"',
        f"data.train_size={steps * batch}", "data.test_size=100", "data.flip=false",
        "data.crop_padding=0", "data.shuffle=true", "schedule.freeze_features_epochs=0",
        "log.checkpoint_every=0",
    ])


def plain(cfg, root: Path, warmup: int) -> float:
    """The lecture's loop over batches already in memory; steps/s after `warmup` steps."""
    seed_everything(cfg.run.seed)
    data = build_data(cfg, root, torch.device("cpu"))
    batches = list(data.train)  # tensors in memory, cut once
    data.close()
    model = build_model(cfg.model, data.in_channels, data.image_size, data.num_classes)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum)
    model.train()
    running_loss = 0.0
    t0 = None
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            t0 = time.perf_counter()
        out = model(x)
        loss = criterion(out, y)
        model.zero_grad()
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
    return (len(batches) - warmup) / (time.perf_counter() - t0)


def engine_rate(events: list[E.Event]) -> float:
    steps = [e for e in events if isinstance(e, E.StepMetrics)]
    first, last = steps[0], steps[-1]
    return (last.step - first.step) / (last.time_s - first.time_s)


def headless(cfg, root: Path, runs: Path) -> float:
    from tui.cli import HeadlessPrinter, run_headless

    eng = Engine.create_in_thread(cfg, data_root=root, log_dir=runs)  # as the CLI does
    run_headless(eng, HeadlessPrinter(out=io.StringIO()))
    return engine_rate(eng.events.read(0)[0])


def dashboard(cfg, root: Path, runs: Path, size=(100, 30)) -> float:
    from tui.app import DeeptuiApp

    eng = Engine.create_in_thread(cfg, data_root=root, log_dir=runs)  # as the CLI does
    app = DeeptuiApp(eng)

    async def drive():
        # The app runs as a user's would (headless driver, no Pilot: Pilot.pause messages every
        # widget to wait for idle, which would load the UI thread far more than a user does).
        async def quit_when_finished():
            while not app.view.finished:
                await asyncio.sleep(0.25)
            app.exit()

        watcher = asyncio.ensure_future(quit_when_finished())
        await app.run_async(headless=True, size=size)
        watcher.cancel()

    asyncio.run(drive())
    return engine_rate(eng.events.read(0)[0])


def measure(name: str, args) -> float:
    """One run of one variant in a fresh interpreter; returns its steps/s."""
    cmd = [sys.executable, __file__, "--variant", name, "--steps", str(args.steps), "--preset", args.preset]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def one(name: str, cfg) -> float:
    warmup = cfg.log.interval  # the engine's first logged interval is its warm-up
    with tempfile.TemporaryDirectory() as tmp:
        root, runs = Path(tmp) / "data", Path(tmp) / "runs"
        if name == "plain":
            return plain(cfg, root, warmup)
        if name == "headless":
            return headless(cfg, root, runs)
        return dashboard(cfg, root, runs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default=str(ROOT / "presets" / "quickstart.toml"))
    p.add_argument("--steps", type=int, default=200, help="training steps per run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0: torch's default")
    p.add_argument("--variant", choices=("plain", "headless", "dashboard"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config(args.preset, args.steps)
    if args.variant:  # a child process: one measurement, printed last
        print(one(args.variant, cfg))
        return 0
    results: dict[str, list[float]] = {"plain": [], "headless": [], "dashboard": []}
    for r in range(args.repeats):
        order = ["plain", "headless", "dashboard"]
        order = order[r % 3:] + order[:r % 3]  # rotate, so no variant always runs first
        for name in order:
            results[name].append(measure(name, args))
        print(f"repeat {r + 1}/{args.repeats}: " + "  ".join(
            f"{k} {v[-1]:.1f}" for k, v in results.items()), flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\n{cfg.run.name}: {cfg.model.name} blocks={cfg.model.blocks} channels={cfg.model.channels}, "
          f"batch {cfg.data.batch_size}, {args.steps} steps, {torch.get_num_threads()} torch threads, "
          f"median of {args.repeats}, each run in a fresh process")
    for k in ("plain", "headless", "dashboard"):
        print(f"  {k:9s} {med[k]:7.2f} steps/s   (all: {', '.join(f'{v:.1f}' for v in results[k])})")
    print(f"  headless / plain      {med['headless'] / med['plain']:.3f}   (target >= 0.98)")
    print(f"  dashboard / plain     {med['dashboard'] / med['plain']:.3f}   (target >= 0.95)")
    print(f"  dashboard / headless  {med['dashboard'] / med['headless']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
