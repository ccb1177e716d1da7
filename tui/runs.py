"""`deeptui ls` and the run directories it finds: a live run's status asked over its control
socket, a finished or crashed one read from its files; when it started, how long it ran and its best
test error folded from its events; a run found by the name ls prints (or a unique prefix)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import io
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from deeptui.engine import events as E
from deeptui.engine.errors import ConfigError, RemoteError
from deeptui.engine.history import ended, tail_events
from deeptui.engine.remote.wire import MAX_EVENT_LINE, PID_NAME, SOCKET_NAME, connect, encode, lines
from deeptui.engine.runlog import JOURNAL
from deeptui.engine.state import RunState

from .options import default_log_dir, printable
from .view import RunView, fmt_duration, fmt_number


@dataclass
class RunInfo:
    path: Path
    state: RunState
    epoch: int | None = None
    step: int | None = None
    loss: float | None = None
    pid: int | None = None
    system: str = ""  # a live run's machine figures (engine.system.summary)
    started: float | None = None  # the wall clock (time.time()) when the run started
    duration: float | None = None  # the run's clock at its latest event, in seconds
    best: tuple[float, int] | None = None  # (lowest test error %, its epoch)

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


def _from_files(run_dir: Path) -> RunInfo:
    """State and progress of a run whose process is gone: the end of its events.jsonl (of a run
    made before that file existed, of its CSV files)."""
    journal = run_dir / JOURNAL
    if journal.exists():
        events = tail_events(journal)
        end = ended(events)
        info = RunInfo(run_dir, RunState.of(end.state) if end else RunState.INTERRUPTED)  # no end: killed or crashed
        last = next((e for e in reversed(events) if isinstance(e, E.StepMetrics)), None)
        if last is not None:
            info.epoch, info.step, info.loss = last.epoch, last.step, last.loss
        if events:  # where the run got to, as its summary says: its end (or last event), not its last logged row
            info.epoch, info.step = (end or events[-1]).epoch, (end or events[-1]).step
        return info
    info = RunInfo(run_dir, RunState.INTERRUPTED)
    for r in reversed(_last_rows(run_dir / "events.csv")):
        if len(r) == 5 and r[3] in (RunState.FINISHED, RunState.STOPPED, RunState.FAILED):
            info.state = RunState(r[3])
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
        for line in lines(f, MAX_EVENT_LINE):  # the history streams in first; the Status line among them
            obj = json.loads(line)
            if obj.get("type") == "Status":
                return RunInfo(
                    run_dir,
                    RunState.of(obj["state"]),
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


def stopped_pid(run_dir: Path) -> int | None:
    """The pid of the run's process when it exists but is stopped (SIGSTOP, ctrl+z): its socket
    still accepts, but nobody answers."""
    try:
        pid = int((run_dir / PID_NAME).read_text().split()[0])
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError, IndexError):
        return None
    state = stat.rsplit(")", 1)[-1].split()[0]  # the field after the command name in parentheses
    return pid if state in ("T", "t") else None


def run_info(run_dir: Path) -> RunInfo:
    pid = stopped_pid(run_dir)
    if pid is not None:
        info = _from_files(run_dir)
        info.state, info.pid = RunState.SUSPENDED, pid
        return _with_record(info)
    if (run_dir / SOCKET_NAME).exists():
        info = _from_socket(run_dir)
        if info is not None:
            return _with_record(info)
    return _with_record(_from_files(run_dir))


# The events that tell when a run started, how long it ran and its best test error: ls folds only
# these (a long run's events.jsonl is mostly training rows, which it skips unparsed).
TOLD = tuple(f'"type":"{name}"'.encode() for name in ("RunStarted", "EpochEnd", "Rewound", "Finished"))
STAMP = re.compile(r"-(\d{8}-\d{6})(?:-\d+)?$")  # runlog.new_run_dir's <name>-<timestamp>[-n]


def _with_record(info: RunInfo) -> RunInfo:
    """started, duration and best test error, folded by RunView from the run's events (a run made
    before events.jsonl: its start from the run directory's name)."""
    journal = info.path / JOURNAL
    view, first = RunView(), None
    try:
        with open(journal, "rb") as f:
            for line in f:
                if not any(t in line for t in TOLD):
                    continue
                ev = E.from_line(line)
                if ev is not None:
                    first = first or (ev if isinstance(ev, E.RunStarted) else None)
                    view.apply(ev)
    except OSError:
        pass
    last = tail_events(journal, keep=8192)
    if last or view.time_s:
        info.duration = max(view.time_s, last[-1].time_s if last else 0.0)
    info.best = view.best_test
    if first is not None and first.wall_time:
        info.started = first.wall_time - first.time_s
    else:
        stamp = STAMP.search(info.path.name)
        with contextlib.suppress(ValueError):
            info.started = datetime.datetime.strptime(stamp.group(1), "%Y%m%d-%H%M%S").timestamp() if stamp else None
    return info


# ---- where runs live: the log directory and a per-user list of the runs started anywhere


def state_dir() -> Path:
    """$XDG_STATE_HOME/deeptui (default ~/.local/state/deeptui)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "deeptui"


REMEMBERED = "runs.txt"  # one absolute run directory per line, newest last; bytes, as the file system has them
KEEP_REMEMBERED = 200
_named: set[tuple[str, tuple[int, ...]]] = set()  # bad lines already named, each once


def remember(run_dir: Path) -> None:
    """Add a run to the per-user list, so that ls and attach find it from any folder. Never fatal:
    a path is written as its bytes (a folder name need not be UTF-8)."""
    path = state_dir() / REMEMBERED
    entry = os.fsencode(Path(run_dir).resolve())
    if b"\n" in entry:
        return  # not one line: ls --log-dir still finds it
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(entry + b"\n")
        lines = path.read_bytes().splitlines()
        if len(lines) > 2 * KEEP_REMEMBERED:
            path.write_bytes(b"\n".join(lines[-KEEP_REMEMBERED:]) + b"\n")
    except OSError:
        pass


def remembered() -> list[Path]:
    """The runs of the per-user list that still exist, newest first, each once. A line that is no
    absolute path (a stray byte, a NUL, an editor's mistake) is skipped and named once."""
    path = state_dir() / REMEMBERED
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return []
    seen, out, bad = set(), [], []
    for number, line in reversed(list(enumerate(lines, 1))):
        if not line.strip():
            continue
        try:
            if not line.startswith(b"/") or b"\0" in line:
                raise ValueError(line)
            p = Path(os.fsdecode(line))
            run = p not in seen and (p / "config.toml").is_file()
        except (OSError, ValueError):
            bad.append(number)
            continue
        if run:
            seen.add(p)
            out.append(p)
    _name_bad_lines(path, sorted(bad))
    return out


def _name_bad_lines(path: Path, numbers: list[int]) -> None:
    if not numbers or (str(path), tuple(numbers)) in _named:
        return
    _named.add((str(path), tuple(numbers)))
    which = f"line {numbers[0]}" if len(numbers) == 1 else "lines " + ", ".join(map(str, numbers[:10]))
    with contextlib.suppress(OSError, ValueError):
        print(
            f"deeptui: {printable(str(path))}: {which} not a run directory's absolute path, skipped; "
            "fix: delete the line (or the file: it only helps ls and attach find runs)",
            file=sys.stderr,
        )


def run_dirs(log_dir: Path | None = None) -> list[Path]:
    """The run directories under log_dir (default: $DEEPTUI_LOG_DIR or ./runs) and the ones
    remembered from other folders, each once, newest first (by events.csv's last write)."""
    folder = Path(log_dir if log_dir is not None else default_log_dir())
    dirs = [d for d in folder.iterdir() if d.is_dir() and (d / "config.toml").is_file()] if folder.is_dir() else []
    dirs = list({d.resolve(): None for d in [*dirs, *remembered()]})

    def mtime(d: Path) -> float:
        try:
            return (d / "events.csv").stat().st_mtime
        except OSError:
            return d.stat().st_mtime

    return sorted(dirs, key=mtime, reverse=True)


def list_runs(log_dir: Path | None = None) -> list[RunInfo]:
    """Every run of run_dirs(), with its state and progress, newest first."""
    return [run_info(d) for d in run_dirs(log_dir)]


def find_run(name: str, log_dir: Path | None = None) -> Path:
    """A run directory: a path to one as it is, or the run whose name `deeptui ls` prints (the
    newest of that name), or the one run whose name starts with `name`. ConfigError (exit 2,
    one line) when none or several match."""
    path = Path(name)
    if (path / "config.toml").is_file():
        return path
    dirs = run_dirs(log_dir) if name and "/" not in name else []
    exact = [d for d in dirs if d.name == name]
    matches = exact[:1] or [d for d in dirs if d.name.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(printable(d.name) for d in matches[:4]) + (", ..." if len(matches) > 4 else "")
        raise ConfigError(
            f"{printable(name)}: {len(matches)} runs start with it ({shown})", fix="type more of the name"
        )
    path_like = "/" in name or path.exists()
    where = "not a deeptui run directory (no config.toml)" if path_like else "no run of that name or prefix"
    raise ConfigError(
        f"{printable(name)}: {where}",
        fix="pass a run directory, or a name that deeptui ls prints",
    )


def ls_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="deeptui ls",
        description="List runs: state, progress, last loss, pid; from the log directory and every run "
        "started from other folders.",
    )
    p.add_argument("--log-dir", help="where to look too (default: $DEEPTUI_LOG_DIR, else ./runs)")
    args = p.parse_args(argv)
    runs = list_runs(Path(args.log_dir) if args.log_dir else None)
    if not runs:
        print("no runs")
        return 0
    for line in ls_table(runs, shutil.get_terminal_size((100, 24)).columns):
        print(line)
    return 0


# ls's columns after the run's name, in their order: (title, left-aligned, the priority that keeps
# it on a narrow terminal (the lowest goes first), the cell of a RunInfo).
COLUMNS = [
    ("state", True, 9, lambda r: str(r.state)),
    ("started", False, 3, lambda r: fmt_started(r.started)),
    ("time", False, 5, lambda r: fmt_duration(r.duration) if r.duration is not None else "-"),
    ("epoch", False, 4, lambda r: str(r.epoch) if r.epoch is not None else "-"),
    ("step", False, 8, lambda r: str(r.step) if r.step is not None else "-"),
    ("loss", False, 7, lambda r: fmt_number(r.loss) if isinstance(r.loss, (int, float)) else "-"),
    ("best", False, 6, lambda r: f"{r.best[0]:.2f}% e{r.best[1]}" if r.best else "-"),
    ("pid", False, 2, lambda r: str(r.pid or "-")),
]
NAME_MAX = 60  # a longer run name is cut in the middle; a shorter one is always shown whole


def fmt_started(t: float | None) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%m-%d %H:%M") if t else "-"


def ls_table(runs: list[RunInfo], width: int) -> list[str]:
    """The runs grouped by folder (a line naming it, then its runs, newest first), in columns as
    wide as their cells, never past `width`: a run's name is shown whole (it is what show, attach
    and --resume take), so on a narrow terminal the columns of lowest priority go (pid only when
    a run is live); only a name longer than what is left is cut in the middle."""
    live = any(r.live for r in runs)
    columns = [c for c in COLUMNS if c[0] != "pid" or live]
    cells = {c[0]: [middle_cut(c[3](r), 14) for r in runs] for c in columns}
    widths = {c[0]: max(len(c[0]), *(len(v) for v in cells[c[0]])) for c in columns}
    name_w = min(NAME_MAX, max(len(printable(r.path.name)) for r in runs), max(3, width - 2))

    def span() -> int:
        return 2 + name_w + sum(widths[c[0]] + 1 for c in columns)

    while columns and span() > width:
        columns.remove(min(columns, key=lambda c: c[2]))
    name_w = max(3, min(name_w, width - span() + name_w))

    def row(first: str, values: list[str]) -> str:
        text = "  " + f"{first:<{name_w}}"
        for (title, left, _, _), value in zip(columns, values):
            text += " " + (f"{value:<{widths[title]}}" if left else f"{value:>{widths[title]}}")
        return text.rstrip()[:width]

    lines = [row("run", [c[0] for c in columns])]
    home = os.path.expanduser("~")
    groups: dict[Path, list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault(r.path.parent, []).append(i)
    for folder, members in groups.items():
        shown = str(folder).replace(home, "~", 1) if home != "/" else str(folder)
        lines.append(middle_cut(printable(shown) + "/", width))
        for i in members:
            r = runs[i]
            lines.append(row(middle_cut(printable(r.path.name), name_w), [cells[c[0]][i] for c in columns]))
            if r.system:  # a live run's machine, on a line of its own under its row
                lines.append(middle_cut(f"    machine: {r.system}", width))
    return lines


def middle_cut(text: str, width: int) -> str:
    """text, or its start and end around an ellipsis when it is longer than width."""
    if len(text) <= width:
        return text
    keep = max(1, width - 1)
    return text[: (keep + 1) // 2] + "…" + text[len(text) - keep // 2 :]
