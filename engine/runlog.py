"""The run directory: metrics.csv, events.csv and config.toml, written as things happen, only
where they belong (no symlinks, mode 0600), one process at a time (RunLock), one history after a
resume (cut_history_after), a full disk named as such."""

from __future__ import annotations

import csv
import datetime as _dt
import errno
import fcntl
import os
import shutil
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
LAYERS_HEADER = [
    "time_s",
    "epoch",
    "step",
    "layer",
    "depth",
    "weight_norm",
    "grad_norm",
    "update_ratio",
    "activation_mean",
    "activation_std",
]


def disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_message(path: Path) -> str:
    """'disk full at PATH (N MB free); fix: ...' for a write that ran out of space or quota."""
    try:
        free = f"{shutil.disk_usage(Path(path).parent if not Path(path).is_dir() else path).free / 2**20:.0f} MB free"
    except OSError:
        free = "free space unknown"
    return f"disk full at {path} ({free}); fix: free space, or --log-dir on another disk"


def open_private(path: Path, append: bool = True):
    """A file of the run directory for writing: created 0600, never through a symlink (a run
    directory someone else could write into must not make deeptui write elsewhere)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RunDirError(
                f"{path}: is a symbolic link; fix: remove it (deeptui writes run files only where they are)"
            ) from None
        raise
    return os.fdopen(
        fd, "a" if append else "w", newline="", encoding="utf-8", errors="surrogateescape"
    )  # a path's bytes as they are


def open_run_file(run_dir: Path, name: str, append: bool = True):
    """A file a launcher writes into a run directory (deeptui.log), opened as open_private does
    and only there: `name` is one path component, looked up in the directory itself (dir_fd), so
    neither a link nor a path can send the bytes elsewhere. Binary, for a child's output."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{name!r}: not a file name")
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    path = Path(run_dir) / name
    try:
        dir_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RunDirError(
                f"{path}: is a symbolic link; fix: remove it (deeptui writes run files only where they are)"
            ) from None
        if disk_full(e):
            raise RunDirError(disk_full_message(path)) from None
        raise RunDirError(
            f"{path}: cannot write it ({e.strerror}); fix: check the run directory's permissions"
        ) from None
    return os.fdopen(fd, "ab" if append else "wb")


def new_run_dir(log_dir: str | Path, name: str) -> Path:
    """<log_dir>/<name>-<timestamp>/, made now (mode 0700); a suffix keeps two runs in one second
    apart. `name` is one path component (config.safe_name)."""
    base = Path(log_dir)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        base.mkdir(parents=True, exist_ok=True)
        for n in range(100):
            path = base / (f"{name}-{stamp}" + (f"-{n}" if n else ""))
            try:
                path.mkdir(mode=0o700)
                return path
            except FileExistsError:
                continue
    except OSError as e:
        if disk_full(e):
            raise RunDirError(disk_full_message(base)) from None
        raise RunDirError(
            f"{base}: log directory is not writable ({e.strerror}); fix: pass --log-dir "
            "to a writable directory or set log.dir in the preset"
        ) from None
    raise RunDirError(f"{base}: too many runs named {name} this second; fix: retry")


class RunLock:
    """An exclusive lock on a run directory for the run's life (fcntl.flock on .lock): a second
    run or resume of the same directory stops at once instead of writing into it too."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            raise RunDirError(
                disk_full_message(self.path)
                if disk_full(e)
                else f"{self.path}: cannot lock the run directory ({e.strerror}); fix: check its permissions"
            ) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise RunDirError(
                f"{run_dir}: another deeptui process (pid {holder}) runs in this directory; "
                f"fix: deeptui attach {run_dir}, or wait for it to end"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the lock
            self.fd = -1


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Temporary checkpoint and config files a killed process left (.last.pt.XXXX.tmp): the lock
    is held, so nobody is writing them."""
    stale = [p for p in Path(run_dir).glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def cut_history_after(run_dir: Path, step: int) -> int:
    """A resume from a checkpoint at `step`: the metrics rows logged after it (by the process that
    was killed) move to metrics.csv.orphaned, so that the resumed run writes each step once; a
    torn last line (a crash mid-write) goes there too. Returns the number of rows moved."""
    path = Path(run_dir) / "metrics.csv"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0
    lines = text.splitlines(keepends=True)
    if len(lines) <= 1:
        return 0
    keep, moved = [lines[0]], []
    for line in lines[1:]:
        fields = line.split(",")
        try:
            whole = line.endswith("\n") and len(fields) == len(METRICS_HEADER)
            ok = whole and int(fields[2]) <= step
        except ValueError:
            ok = False
        (keep if ok else moved).append(line if line.endswith("\n") else line + "\n")
    if not moved:
        return 0
    with open_private(path.with_name("metrics.csv.orphaned")) as f:
        f.writelines(moved)
    tmp = path.with_name(".metrics.csv.tmp")
    with open_private(tmp, append=False) as f:
        f.writelines(keep)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(moved)


def repair_torn_line(path: Path) -> None:
    """A file a crash left without its last newline: end it, so the next row starts a line."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
    except OSError:
        return
    if last != b"\n":
        with open_private(path) as f:
            f.write("\n")


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
            self._open(name, header)
        self._last_flush = time.monotonic()
        self._first_point = True  # the curve's first point goes to disk at once, not within 2 s
        self.closed = False
        self._lock = threading.RLock()  # rows come from the training thread, and notify_command's

    def _open(self, name: str, header: list[str]) -> None:
        path = self.run_dir / f"{name}.csv"
        new = not path.exists() or path.stat().st_size == 0
        if not new:
            repair_torn_line(path)
        f = open_private(path)
        w = csv.writer(f)
        if new:
            w.writerow(header)
        self._files[name], self._writers[name] = f, w

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

    def layer(self, values: list) -> None:
        """One row of layers.csv (LAYERS_HEADER's columns); the file is made at the first row."""
        if "layers" not in self._files and not self.closed:
            self._open("layers", LAYERS_HEADER)
        self._row("layers", values)

    def _row(self, name: str, values: list) -> None:
        with self._lock:
            if self.closed:
                return
            self._writers[name].writerow([_fmt(v) for v in values])
            first = self._first_point and name == "metrics"
            if first:
                self._first_point = False
            if first or time.monotonic() - self._last_flush >= self.flush_seconds:
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
    try:
        atomic_write_bytes(path, tomli_w.dumps(config).encode())
    except OSError as e:
        raise RunDirError(
            disk_full_message(path)
            if disk_full(e)
            else f"{path}: cannot write the run's config ({e.strerror}); fix: check the run directory's permissions"
        ) from None
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

    def layer(self, values: list) -> None:
        pass

    def flush(self) -> None:
        pass

    def flush_if_due(self) -> None:
        pass

    def close(self) -> None:
        pass
