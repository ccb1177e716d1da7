"""The run directory: metrics.csv, events.csv and config.toml, written as things happen."""

from __future__ import annotations

import csv
import datetime as _dt
import os
import tempfile
import threading
import time
from pathlib import Path

import tomli_w

from .errors import RunDirError

METRICS_HEADER = [
    "time_s",
    "epoch",
    "step",
    "split",
    "loss",
    "accuracy",
    "lr",
    "optimizer",
    "frozen",
    "mode",
    "samples_per_s",
]
EVENTS_HEADER = ["time_s", "epoch", "step", "event", "detail"]


def new_run_dir(log_dir: str | Path, name: str) -> Path:
    """<log_dir>/<name>-<timestamp>/, made now; a suffix keeps two runs in one second apart."""
    base = Path(log_dir)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        base.mkdir(parents=True, exist_ok=True)
        for n in range(100):
            path = base / (f"{name}-{stamp}" + (f"-{n}" if n else ""))
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as e:
        raise RunDirError(
            f"{base}: log directory is not writable ({e.strerror}); fix: pass --log-dir "
            "to a writable directory or set log.dir in the preset"
        ) from None
    raise RunDirError(f"{base}: too many runs named {name} this second; fix: retry")


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class RunLog:
    """Appends rows to the run's CSV files; flushes every `flush_seconds` and on demand.

    Opened in append mode so a resumed run continues the same files; headers are written only
    to new files.
    """

    def __init__(self, run_dir: Path, flush_seconds: float = 2.0):
        self.run_dir = Path(run_dir)
        self.flush_seconds = flush_seconds
        self._files = {}
        self._writers = {}
        for name, header in (("metrics", METRICS_HEADER), ("events", EVENTS_HEADER)):
            path = self.run_dir / f"{name}.csv"
            new = not path.exists() or path.stat().st_size == 0
            f = open(path, "a", newline="", encoding="utf-8")
            w = csv.writer(f)
            if new:
                w.writerow(header)
            self._files[name], self._writers[name] = f, w
        self._last_flush = time.monotonic()
        self.closed = False
        self._lock = threading.RLock()  # rows come from the training thread, and notify_command's

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.csv"

    @property
    def events_path(self) -> Path:
        return self.run_dir / "events.csv"

    def metric(self, *, time_s, epoch, step, split, loss, accuracy, lr, optimizer, frozen, mode, samples_per_s) -> None:
        self._row("metrics", [time_s, epoch, step, split, loss, accuracy, lr, optimizer, frozen, mode, samples_per_s])

    def event(self, time_s: float, epoch: int, step: int, event: str, detail: str = "") -> None:
        self._row("events", [time_s, epoch, step, event, detail])

    def _row(self, name: str, values: list) -> None:
        with self._lock:
            if self.closed:
                return
            self._writers[name].writerow([_fmt(v) for v in values])
            if time.monotonic() - self._last_flush >= self.flush_seconds:
                self.flush()

    def flush_if_due(self) -> None:
        """Flush when flush_seconds have passed since the last flush (called while paused)."""
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if self.closed:
                return
            for f in self._files.values():
                f.flush()
                os.fsync(f.fileno())
            self._last_flush = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.flush()
                for f in self._files.values():
                    f.close()
                self.closed = True


def write_config(run_dir: Path, config: dict) -> Path:
    path = Path(run_dir) / "config.toml"
    atomic_write_bytes(path, tomli_w.dumps(config).encode())
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, then rename: never a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class NullLog:
    """The run log of a rank other than 0: accepts rows, writes nothing."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.csv"
        self.events_path = self.run_dir / "events.csv"

    def metric(self, **kw) -> None:
        pass

    def event(self, *a) -> None:
        pass

    def flush(self) -> None:
        pass

    def flush_if_due(self) -> None:
        pass

    def close(self) -> None:
        pass
