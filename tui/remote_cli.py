"""Runs that outlive the terminal: `deeptui PRESET --detach`, `deeptui attach`, `deeptui ls`.

A detached run is the headless CLI in a background process of its own session (no controlling
terminal, so closing the terminal sends it nothing), writing to <run_dir>/deeptui.log. Every run,
detached or not, serves its events and commands on <run_dir>/control.sock (engine/remote.py).
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from engine.remote import SOCKET_NAME, RemoteError, RemoteSession, connect, encode

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOG_DIR = "runs"
LOG_NAME = "deeptui.log"


def fail(message: str, code: int = 2) -> int:
    print(f"deeptui: {message}", file=sys.stderr)
    return code


def main(argv: list[str]) -> int:
    cmd, rest = argv[0], argv[1:]
    return attach_main(rest) if cmd == "attach" else ls_main(rest)


def start_control_server(engine):
    """Serve the run on <run_dir>/control.sock. Returns the server; None (with a warning) when
    the socket cannot be made, the run goes on without it; exit code 2 when another live process
    already serves this run directory."""
    from engine.remote import ControlServer

    if not getattr(engine, "is_main", True):
        return None  # distributed: rank 0 serves the run
    try:
        return ControlServer(engine).start()
    except RemoteError as e:
        if (Path(engine.run_dir) / SOCKET_NAME).exists():
            engine.data.close()
            return fail(str(e))
        print(f"deeptui: warning: {e}; the run goes on without 'deeptui attach'", file=sys.stderr)
        return None


# ---- deeptui PRESET --detach -------------------------------------------------------------

def launch_detached(args, argv: list[str], wait_s: float = 120.0) -> int:
    """Start the run in a background process, wait until its control socket answers, print the
    run directory. Setup errors (bad preset, missing data) still come back here with exit 2."""
    from engine.config import load_config
    from engine.runlog import new_run_dir
    from tui.cli import QUICKSTART, _overrides, setup_errors

    try:
        if args.resume:
            target = Path(args.resume)
            run_dir = target if target.is_dir() else target.parent
        else:
            cfg = load_config(args.preset or str(QUICKSTART), _overrides(args))
            if cfg.run.kind == "landscape":
                return fail("--detach runs training presets; a landscape run takes seconds: run it "
                            "without --detach")
            run_dir = new_run_dir(args.log_dir or cfg.log.dir, cfg.run.name)
    except setup_errors() as e:
        return fail(str(e))
    run_dir = run_dir.resolve()
    child = [a for a in argv if a != "--detach"] + ["--headless", "--run-dir", str(run_dir)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    with open(run_dir / LOG_NAME, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tui.cli", *child], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    sock = run_dir / SOCKET_NAME
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            tail = _tail(run_dir / LOG_NAME, 5)
            print(tail, file=sys.stderr, end="" if tail.endswith("\n") else "\n")
            return fail(f"the detached run ended at once (exit {code}); its log: {run_dir / LOG_NAME}",
                        code or 1)
        if sock.exists():
            try:
                connect(sock, timeout=2.0).close()
                break
            except RemoteError:
                pass
        time.sleep(0.1)
    else:
        return fail(f"the detached run (pid {proc.pid}) did not open {sock} within {wait_s:.0f}s; "
                    f"its log: {run_dir / LOG_NAME}", 1)
    print(f"run directory: {run_dir}")
    print(f"deeptui: running in the background (pid {proc.pid}); watch and steer it with "
          f"'deeptui attach {run_dir}', list runs with 'deeptui ls'")
    return 0


def _tail(path: Path, n: int) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-n:])
    except OSError:
        return ""


# ---- deeptui attach ----------------------------------------------------------------------

def attach_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="deeptui attach",
                                description="Open the dashboard on a run started elsewhere (e.g. --detach): "
                                            "its history so far, then the live stream; q asks stop or detach.")
    p.add_argument("run_dir", nargs="?", help="the run directory (default: the most recent live run)")
    p.add_argument("--log-dir", default=DEFAULT_LOG_DIR, help=f"where to look for runs (default: {DEFAULT_LOG_DIR})")
    p.add_argument("--headless", action="store_true", help="print the event lines instead of the dashboard")
    args = p.parse_args(argv)
    if args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        live = [r for r in list_runs(Path(args.log_dir)) if r.live]
        if not live:
            return fail(f"no live run under {args.log_dir}; fix: start one with 'deeptui PRESET --detach' "
                        "or pass a run directory (deeptui ls lists them)")
        run_dir = live[0].path
    try:
        session = RemoteSession(run_dir)
        session.start()
    except RemoteError as e:
        return fail(str(e))
    except Exception as e:  # config.toml missing or unreadable: not a run directory
        return fail(f"{run_dir}: not a deeptui run directory ({e})")
    from tui.cli import wants_dashboard
    if not wants_dashboard(args):
        return attach_headless(session)
    from tui.app import run_dashboard
    return run_dashboard(session, attached=True)


def attach_headless(session: RemoteSession, printer=None) -> int:
    """Print the run's events; Ctrl+C, SIGTERM or a closed terminal only detach."""
    from tui.cli import SIGNAL_EXIT, HeadlessPrinter, print_events

    printer = printer or HeadlessPrinter()
    caught: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in SIGNAL_EXIT}
    try:
        print_events(session, printer, until=lambda: bool(caught))
    except BrokenPipeError:  # `deeptui attach --headless | head`: the reader left; so do we
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        caught.append(signal.SIGPIPE)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        session.detach()
    if caught or not session.final_state:
        printer.line(f"deeptui: detached; the run goes on: deeptui attach {session.run_dir}")
        return 0
    return {"finished": 0, "stopped": 0}.get(session.final_state, 1)


# ---- deeptui ls --------------------------------------------------------------------------

@dataclass
class RunInfo:
    path: Path
    state: str
    epoch: int | None = None
    step: int | None = None
    loss: float | None = None
    pid: int | None = None

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
    import json

    try:
        sock.settimeout(3.0)
        sock.sendall(encode({"type": "Status"}))
        f = sock.makefile("rb")
        for line in f:  # the history streams in first; the Status line comes between events
            obj = json.loads(line)
            if obj.get("type") == "Status":
                return RunInfo(run_dir, obj["state"], obj.get("epoch"), obj.get("step"),
                               obj.get("loss"), obj.get("pid"))
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
        print(f"{r.path.name:<{width}}  {r.state:<11} {r.epoch if r.epoch is not None else '-':>5} "
              f"{r.step if r.step is not None else '-':>7} {loss:>9}  {r.pid or '-'}")
    return 0


