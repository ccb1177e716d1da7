"""`deeptui run SCRIPT.py [ARGS...]`: a training script of your own (one that calls deeptui.watch)
in a child process, with the dashboard in front, or plain lines without a terminal. The run
directory is made here and handed to the script's watch() in $DEEPTUI_RUN_DIR; the script's stdout
and stderr go to the run's log (deeptui.log) and the dashboard's output panel, never over the
dashboard. q stops the run (the script's run.step() returns False) and waits for the script."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from deeptui.engine import events as E
from deeptui.engine.commands import Stop
from deeptui.engine.config import from_table, safe_name
from deeptui.engine.errors import SIGNAL_EXIT, STOP_SIGNALS, RemoteError, SetupError, exit_code
from deeptui.engine.history import HistorySession, ended, tail_events
from deeptui.engine.remote.client import RemoteSession
from deeptui.engine.remote.wire import SOCKET_NAME, connect
from deeptui.engine.runlog import ENV_INTERACTIVE, ENV_RUN_DIR, JOURNAL, new_run_dir, open_run_file

from .hangup import to_run_log
from .headless import HeadlessPrinter, print_events
from .launch import Launch
from .options import default_log_dir, fail, front_end
from .runs import remember

LOG_NAME = "deeptui.log"  # as a detached run's: the process's own output
KEEP_LINES = 500  # the output panel's memory
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")


class ScriptEnded(SetupError):
    """The script ended, or was stopped, before its deeptui.watch() served the run."""


class ScriptProcess:
    """The script in a session of its own (terminal signals reach deeptui, which stops the run at
    a step boundary), its stdin closed; a thread copies its output to the run's log, keeps the
    last lines for the panel and hands each finished line to `echo` (plain lines)."""

    def __init__(self, script: Path, args: list[str], run_dir: Path, interactive: bool, echo=None):
        self.script, self.args, self.run_dir, self.interactive = script, list(args), run_dir, interactive
        self.echo: Callable[[str], None] | None = echo
        self.lines: deque[str] = deque(maxlen=KEEP_LINES)
        self.partial = ""  # the line being written (a progress bar redraws it with \r)
        self.proc: subprocess.Popen | None = None
        self.cancelled = threading.Event()
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()  # the lines, between the reader and the panel
        self._life = threading.Lock()  # start and stop, between the launch thread and a quit

    def start(self) -> None:
        """Start the script, unless it was stopped before it started (a quit at once)."""
        env = {**os.environ, ENV_RUN_DIR: str(self.run_dir), ENV_INTERACTIVE: "1" if self.interactive else "0"}
        env["PYTHONUNBUFFERED"] = "1"  # its lines as it prints them, not at exit
        with self._life:
            if self.cancelled.is_set():
                raise self.ended_early()
            log = open_run_file(self.run_dir, LOG_NAME)
            self.proc = subprocess.Popen(
                [sys.executable, str(self.script), *self.args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self._reader = threading.Thread(target=self._read, args=(log,), name="deeptui-script-output", daemon=True)
        self._reader.start()

    def _read(self, log) -> None:
        fd = self.proc.stdout.fileno()
        pending = b""
        with log:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                log.write(data)
                log.flush()
                *done, pending = (pending + data).split(b"\n")
                for raw in done:
                    self._line(raw.decode(errors="replace"), finished=True)
                self._line(pending.decode(errors="replace"), finished=False)
            if pending:
                self._line(pending.decode(errors="replace"), finished=True)
        self.proc.stdout.close()

    def _line(self, text: str, finished: bool) -> None:
        shown = ANSI.sub("", text.rstrip("\r").rsplit("\r", 1)[-1])  # what a terminal would show last
        with self._lock:
            if finished:
                self.lines.append(shown)
                self.partial = ""
            else:
                self.partial = shown
        if finished and self.echo is not None:
            self.echo(text.rstrip("\r"))

    def tail(self, n: int) -> list[str]:
        """The last n lines of the script's output (the line it is writing last)."""
        with self._lock:
            lines = list(self.lines) + ([self.partial] if self.partial else [])
        return lines[-n:] if n > 0 else []

    def wait_served(self) -> bool:
        """Wait until the script's watch() serves the run's socket (True), or the script ended or
        was cancelled (False)."""
        sock = self.run_dir / SOCKET_NAME
        while not self.cancelled.is_set() and self.proc.poll() is None:
            if sock.exists():
                with contextlib.suppress(RemoteError):
                    connect(sock, timeout=2.0).close()
                    return True
            self.cancelled.wait(0.1)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the script's process group, SIGKILL after `timeout`."""
        with self._life:  # a start under way ends first: then it is stopped, or never starts
            self.cancelled.set()
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                continue

    def wait(self) -> int:
        """The script's exit code, once it and its output have ended."""
        code = self.proc.wait()
        if self._reader is not None:
            self._reader.join(10)
        return code

    def ended_early(self) -> ScriptEnded:
        if self.proc is None:
            what = "was stopped before it started"
        else:
            what = "was stopped" if self.cancelled.is_set() else f"ended (exit {self.proc.poll()})"
        return ScriptEnded(
            f"{self.script} {what} before its deeptui.watch() served the run",
            fix=f"see its output in {self.run_dir / LOG_NAME}",
        )


def open_session(child: ScriptProcess, tries: int = 3):
    """The run as the script's watch() serves it; a run that already ended, from its files. A
    connection that brings no history met a server closing (the run ended as we connected: the
    kernel had queued us, the server never took us): its files are complete then."""
    journal = child.run_dir / JOURNAL
    for _ in range(tries):
        if not child.wait_served():
            break
        try:
            session = RemoteSession(child.run_dir)
            session.start()
        except RemoteError:
            break
        if any(isinstance(e, E.RunStarted) for e in session.events.read(0)[0]):
            return session
        session.detach()
        if ended(tail_events(journal)) is not None:
            break
    if journal.is_file():  # it watched, and ended before we could connect
        return HistorySession(child.run_dir)
    raise child.ended_early()


class ScriptLaunch(Launch):
    """The dashboard's session while the script starts: a quit before its watch() stops it."""

    def __init__(self, cfg, child: ScriptProcess):
        super().__init__(cfg, self._open)
        self.child = child

    def _open(self, stage) -> object:
        stage(f"starting {self.child.script.name} ...")
        self.child.start()
        stage(f"{self.child.script.name}: waiting for its deeptui.watch() ...")
        return open_session(self.child)

    def shutdown(self, reason: str = "quit", timeout: float = 30.0) -> bool:
        if self.engine is None:
            self.child.stop()
        return super().shutdown(reason, timeout)

    def go_on_detached(self) -> int:
        """After a hangup (hangup.go_on_detached): the script (a session of its own, so the hangup
        never reached it) trains on and serves its run; deeptui stays to copy its output into the
        run's deeptui.log (gone, its pipe would break the script's next print) and ends with it,
        the exit code as `deeptui run` gives it. SIGTERM or SIGINT here stop the script."""
        child = self.child
        to_run_log(child.run_dir)
        child.echo = None  # its output reaches the log through the copy alone
        self.ready.wait()  # the script starts serving, or ends
        if self.engine is not None and hasattr(self.engine, "detach"):
            self.engine.detach()  # nobody watches from here: deeptui attach comes back
        HeadlessPrinter().line(
            f"deeptui: the terminal closed; {child.script.name} goes on: deeptui attach {child.run_dir}"
        )
        return finish(child, 0, stopped=[])


def run_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="deeptui run",
        description="Run a training script of your own that calls deeptui.watch(), with the dashboard in front "
        "(plain lines without a terminal); its output goes to the run's deeptui.log and a panel.",
    )
    p.add_argument("--log-dir", help="where the run directory goes (default: $DEEPTUI_LOG_DIR, else ./runs)")
    p.add_argument("--name", help="the run's name (default: the script's file name)")
    p.add_argument("--headless", action="store_true", help="plain lines instead of the dashboard")
    p.add_argument("script", help="a Python script that calls deeptui.watch()")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    args = p.parse_args(argv)
    script = Path(args.script)
    if not script.is_file():
        return fail(f"{script}: no such script; fix: the path of a Python file that calls deeptui.watch()")
    name = safe_name(args.name or script.stem)
    try:
        run_dir = new_run_dir(args.log_dir or default_log_dir(), name).resolve()
    except SetupError as e:
        return fail(str(e))
    remember(run_dir)
    if front_end(args.headless) == "dashboard":
        return run_with_dashboard(script, args.args, run_dir, name)
    return run_with_lines(script, args.args, run_dir)


def run_with_dashboard(script: Path, args: list[str], run_dir: Path, name: str) -> int:
    from .script_app import run_script_dashboard

    child = ScriptProcess(script, args, run_dir, interactive=True)
    launch = ScriptLaunch(from_table({"run": {"name": name, "kind": "watched"}}, str(script)), child)
    code = run_script_dashboard(launch, child.tail)
    if launch.engine is None and child.cancelled.is_set():  # q before its watch(): stopped, as asked
        if child.proc is not None:
            child.wait()
        return 0
    if child.proc is None:
        return code
    if launch.engine is None:
        child.wait()  # it never watched: its last words here
        for line in child.tail(20):
            print(f"  {line}", file=sys.stderr)
    if child.proc.poll() is None:
        print(f"deeptui: waiting for {script.name} to end (ctrl+c stops it)", file=sys.stderr)
        child.echo = print  # what it prints from now on, in the terminal
    return finish(child, code, stopped=[])


def run_with_lines(script: Path, args: list[str], run_dir: Path) -> int:
    lock = threading.Lock()
    printer = HeadlessPrinter()
    write = printer.line

    def say(text: str) -> None:
        with lock:
            write(text)

    printer.line = say  # the events' lines and the script's, one at a time

    child = ScriptProcess(script, args, run_dir, interactive=False, echo=say)
    session: list = []
    stopped: list[int] = []

    def on_signal(signum, frame):
        if stopped or not session or not session[0].alive:  # twice, or before the run is served
            child.stop()
        elif session:
            session[0].send(Stop(reason=f"signal {signal.Signals(signum).name}"))
        stopped.append(signum)

    old = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        say(f"deeptui: running {script} in {run_dir}")
        child.start()
        try:
            session.append(open_session(child))
        except ScriptEnded as e:
            child.wait()
            fail(str(e))
            return SIGNAL_EXIT.get(stopped[0], 2) if stopped else shell_code(child.proc.returncode) or 1
        print_events(session[0], printer)
        code = exit_code(session[0].final_state, session[0].bad_input)
        return finish(child, code, stopped)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def finish(child: ScriptProcess, code: int, stopped: list[int]) -> int:
    """Wait for the script to end (a signal now stops it); the exit code: a signal's, else the
    script's own when it failed, else the run's."""
    old = {s: signal.signal(s, lambda signum, frame: (stopped.append(signum), child.stop())) for s in STOP_SIGNALS}
    try:
        script_code = child.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if stopped:
        return SIGNAL_EXIT.get(stopped[0], 1)
    return shell_code(script_code) if script_code else code


def shell_code(returncode: int) -> int:
    """A child's exit status as a shell tells it: killed by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode
