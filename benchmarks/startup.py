"""Launch to first curve point: how long `deeptui quickstart` takes from the command to its first
training row in metrics.csv (the first point of the loss curve), headless and in the dashboard
(under a pseudo-terminal, also the time to its first frame), beside a plain PyTorch script that
does the least the same row needs (import torch, the quickstart's model on random data, SGD with
momentum, 10 steps, a CSV row). Median of --repeats launches, interleaved.

  python benchmarks/startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def first_row(log_dir: Path) -> bool:
    for metrics in log_dir.glob("*/metrics.csv"):
        if metrics.read_text().count("\n") >= 2:  # the header and a train row
            return True
    return False


# The floor: what any PyTorch script pays before its first logged row (the model class is
# deeptui's, imported alone: the same network, not the same program).
PLAIN = r"""
import sys, time, pathlib
import torch
from deeptui.engine.models import Monster
torch.manual_seed(0)
model = Monster(4, 32, num_classes=10)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
x, y = torch.randn(640, 3, 32, 32), torch.randint(0, 10, (640,))
for i in range(10):
    loss = torch.nn.functional.cross_entropy(model(x[i * 64:(i + 1) * 64]), y[i * 64:(i + 1) * 64])
    opt.zero_grad()
    loss.backward()
    opt.step()
out = pathlib.Path(sys.argv[1]) / "plain"
out.mkdir()
(out / "metrics.csv").write_text(f"step,loss\n10,{loss.item()}\n")
"""


def headless(extra: list[str], timeout: float, plain: bool = False) -> float:
    with tempfile.TemporaryDirectory() as logs:
        t0 = time.monotonic()
        argv = (
            ["-c", PLAIN, logs] if plain else ["-m", "deeptui", "quickstart", "--headless", "--log-dir", logs, *extra]
        )
        proc = subprocess.Popen(
            [sys.executable, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while not first_row(Path(logs)):
                if (proc.poll() is not None and not first_row(Path(logs))) or time.monotonic() - t0 > timeout:
                    raise RuntimeError("no training row: the run ended or took too long")
                time.sleep(0.02)
            return time.monotonic() - t0
        finally:
            proc.terminate()
            proc.wait(60)


def dashboard(extra: list[str], timeout: float) -> tuple[float, float]:
    """(seconds to the first frame, seconds to the first training row) in a 100x30 pseudo-terminal."""
    with tempfile.TemporaryDirectory() as logs:
        t0 = time.monotonic()
        pid, fd = pty.fork()
        if pid == 0:  # the child: deeptui in the terminal
            os.environ.update(COLUMNS="100", LINES="30", TERM="xterm-256color")
            os.execv(sys.executable, [sys.executable, "-m", "deeptui", "quickstart", "--log-dir", logs, *extra])
        frame = None
        try:
            while True:
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError("no training row within the timeout")
                ready, _, _ = select.select([fd], [], [], 0.02)
                if ready:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        raise RuntimeError("the dashboard ended") from None
                    if frame is None and b"deeptui" in data:
                        frame = time.monotonic() - t0
                if frame is not None and first_row(Path(logs)):
                    return frame, time.monotonic() - t0
        finally:
            os.kill(pid, 15)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # drain, so that it can write its last lines and exit
                if select.select([fd], [], [], 0.1)[0]:
                    try:
                        if not os.read(fd, 65536):
                            break
                    except OSError:
                        break
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    break


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    extra = ["--device", args.device]
    heads, frames, rows, plains = [], [], [], []
    for _ in range(args.repeats):  # interleaved, so that a drift in load hits all alike
        plains.append(headless(extra, args.timeout, plain=True))
        heads.append(headless(extra, args.timeout))
        frame, row = dashboard(extra, args.timeout)
        frames.append(frame)
        rows.append(row)
    med = statistics.median
    print(f"quickstart on {args.device}, median of {args.repeats} launches (load average {os.getloadavg()[0]:.2f}):")
    print(f"  plain torch: first row        {med(plains):5.2f} s   (runs: {', '.join(f'{v:.2f}' for v in plains)})")
    print(f"  headless:  first training row {med(heads):5.2f} s   (runs: {', '.join(f'{v:.2f}' for v in heads)})")
    print(f"  dashboard: first frame        {med(frames):5.2f} s   (runs: {', '.join(f'{v:.2f}' for v in frames)})")
    print(f"  dashboard: first training row {med(rows):5.2f} s   (runs: {', '.join(f'{v:.2f}' for v in rows)})")
    ratios = [h / p for h, p in zip(heads, plains)]
    print(f"  headless / plain: median {med(ratios):.2f} (+{med(heads) - med(plains):.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
