"""`deeptui ls` and the run directories it finds: a live run's status asked over its control
socket, a finished or crashed one read from its CSV files."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from deeptui.engine.errors import RemoteError
from deeptui.engine.remote.wire import SOCKET_NAME, connect, encode

from .options import fail

DEFAULT_LOG_DIR = "runs"


@dataclass
class RunInfo:
    path: Path
    state: str
    epoch: int | None = None
    step: int | None = None
    loss: float | None = None
    pid: int | None = None
    system: str = ""  # a live run's machine figures (engine.system.summary)

    @property
    def live(self) -> bool:
        return self.pid is not None


def _last_rows(path: Path, keep: int = 64 * 1024) -> list[list[str]]:
    """The CSV rows in the last `keep` bytes of a file (the first may be cut: it is skipped)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - keep))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    rows = list(csv.reader(io.StringIO(data)))
    return rows[1:] if size > keep else rows


def _from_csv(run_dir: Path) -> RunInfo:
    """State and progress of a run whose process is gone, from its CSV files."""
    info = RunInfo(run_dir, "interrupted")  # no final record: killed or crashed
    for r in reversed(_last_rows(run_dir / "events.csv")):
        if len(r) == 5 and r[3] in ("finished", "stopped", "failed"):
            info.state = r[3]
            if r[3] == "stopped" and r[4].startswith("signal "):
                info.state = "interrupted"
            break
    rows = [r for r in _last_rows(run_dir / "metrics.csv") if len(r) >= 5 and r[3] == "train"]
    if rows:
        try:
            info.epoch, info.step, info.loss = int(rows[-1][1]), int(rows[-1][2]), float(rows[-1][4])
        except ValueError:
            pass
    return info


def _from_socket(run_dir: Path) -> RunInfo | None:
    """A live run's own status, asked over its socket; None when nobody answers."""
    try:
        sock = connect(run_dir / SOCKET_NAME, timeout=2.0)
    except RemoteError:
        return None
    try:
        sock.settimeout(3.0)
        sock.sendall(encode({"type": "Status"}))
        f = sock.makefile("rb")
        for line in f:  # the history streams in first; the Status line comes between events
            obj = json.loads(line)
            if obj.get("type") == "Status":
                return RunInfo(
                    run_dir,
                    obj["state"],
                    obj.get("epoch"),
                    obj.get("step"),
                    obj.get("loss"),
                    obj.get("pid"),
                    obj.get("system", ""),
                )
    except (OSError, ValueError):
        pass
    finally:
        sock.close()
    return None


def run_info(run_dir: Path) -> RunInfo:
    if (run_dir / SOCKET_NAME).exists():
        info = _from_socket(run_dir)
        if info is not None:
            return info
    return _from_csv(run_dir)


def list_runs(log_dir: Path) -> list[RunInfo]:
    """Run directories under log_dir, newest first (by events.csv's last write)."""
    if not log_dir.is_dir():
        return []
    dirs = [d for d in log_dir.iterdir() if d.is_dir() and (d / "config.toml").is_file()]

    def mtime(d: Path) -> float:
        try:
            return (d / "events.csv").stat().st_mtime
        except OSError:
            return d.stat().st_mtime

    return [run_info(d) for d in sorted(dirs, key=mtime, reverse=True)]


def ls_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="deeptui ls", description="List runs: state, progress, last loss, pid.")
    p.add_argument("--log-dir", default=DEFAULT_LOG_DIR, help=f"where to look (default: {DEFAULT_LOG_DIR})")
    args = p.parse_args(argv)
    log_dir = Path(args.log_dir)
    if not log_dir.is_dir():
        return fail(f"{log_dir}: no such log directory; fix: pass --log-dir DIR")
    runs = list_runs(log_dir)
    if not runs:
        print(f"no runs under {log_dir}")
        return 0
    width = max(len(r.path.name) for r in runs)
    print(f"{'run':<{width}}  {'state':<11} {'epoch':>5} {'step':>7} {'loss':>9}  pid")
    for r in runs:
        loss = f"{r.loss:.4f}" if isinstance(r.loss, (int, float)) else "-"
        print(
            f"{r.path.name:<{width}}  {r.state:<11} {r.epoch if r.epoch is not None else '-':>5} "
            f"{r.step if r.step is not None else '-':>7} {loss:>9}  {r.pid or '-'}"
        )
        if r.system:  # a live run's machine, on a line of its own under its row
            print(f"  machine: {r.system}")
    return 0
