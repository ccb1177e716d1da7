"""run.notify_command: the user's shell command, run when the run finishes, fails or pauses on a
non-finite loss, with the run's summary in its environment (DEEPTUI_SUMMARY and the figures one
by one); with a timeout, its outcome marked in events.csv, its failure a warning, never fatal.

At the end of a run the command is waited for (the training is over); at a pause it runs in a
thread of its own, so the training thread never waits for it.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import tempfile
import threading
import time

from . import events as E
from .state import RunState
from .surface import Run

TIMEOUT_S = 10.0  # the command is killed after this long


def _fmt_time(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def summary(run: Run, what: str, reason: str = "") -> dict[str, str]:
    """The environment a notify_command gets: DEEPTUI_SUMMARY (one line for a chat message) and
    each figure on its own."""
    recent, _ = run.events.read(max(0, len(run.events) - 500))
    train = next((e for e in reversed(recent) if isinstance(e, E.StepMetrics)), None)
    test = next((e for e in reversed(recent) if isinstance(e, E.EpochEnd) and e.mode == "eval"), None)
    cfg, t = run.cfg, run.train
    now, epoch, _ = run.report.position()
    figures = []
    if train is not None:
        figures.append(f"train loss {train.loss:.4g}")
    if test is not None:
        figures.append(f"test error {test.test_error_pct:.2f}%")
    line = (
        f"deeptui: {cfg.run.name} {what} at epoch {epoch}/{cfg.run.epochs}, step {t.step} "
        f"after {_fmt_time(now)}"
        + (f" ({reason})" if reason else "")
        + (": " + ", ".join(figures) if figures else "")
        + f"; {run.run_dir}"
    )

    def num(v) -> str:
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"

    return {
        "DEEPTUI_SUMMARY": line,
        "DEEPTUI_EVENT": what,
        "DEEPTUI_PRESET": cfg.run.name,
        "DEEPTUI_RUN_DIR": str(run.run_dir),
        "DEEPTUI_REASON": reason,
        "DEEPTUI_EPOCH": str(epoch),
        "DEEPTUI_EPOCHS": str(cfg.run.epochs),
        "DEEPTUI_STEP": str(t.step),
        "DEEPTUI_ELAPSED_S": f"{now:.1f}",
        "DEEPTUI_LOSS": num(train.loss if train else None),
        "DEEPTUI_TEST_LOSS": num(test.test_loss if test else None),
        "DEEPTUI_TEST_ERROR_PCT": num(test.test_error_pct if test else None),
    }


def run_command(command: str, env: dict[str, str], timeout: float = TIMEOUT_S) -> tuple[bool, str]:
    """(ok, what happened) of `command` run by the shell; killed, with its process group, after
    `timeout`. Its stderr goes to a file, not a pipe: a grandchild that left the group (`setsid
    ... &`) keeps a pipe open as long as it lives, and waiting for the pipe's end waited for it."""
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                command,
                shell=True,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,  # its own process group: a timeout kills what it started too
            )
        except OSError as e:
            return False, f"could not start ({e.strerror or e})"
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)  # SIGKILL cannot be refused: at once
            return False, f"timed out after {timeout:g} s and was killed"
        if proc.returncode:
            err.seek(0)
            text = err.read(64 * 1024).decode(errors="replace")
            first = next((line.strip() for line in text.splitlines() if line.strip()), "")
            return False, f"exit {proc.returncode}" + (f": {first[:200]}" if first else "")
    return True, "exit 0"


class Notifier:
    """Runs the run.notify_command (rank 0 only); its outcome is an event (a row of events.csv)."""

    def __init__(self, run: Run, timeout: float | None = None):
        self.run, self.timeout = run, TIMEOUT_S if timeout is None else timeout
        self.command = run.cfg.run.notify_command if run.is_main else ""
        self._threads: list[threading.Thread] = []

    def fire(self, what: str, reason: str = "", wait: bool = False) -> None:
        """Run the command for `what` (finished, failed, paused): waited for, or in a thread."""
        if not self.command:
            return
        env = summary(self.run, what, reason)
        thread = threading.Thread(target=self._run, args=(what, env), name="deeptui-notify", daemon=True)
        self._threads.append(thread)
        thread.start()
        if wait:  # the run's end: this one and any still running (a pause's), within one timeout
            self.join()

    def end(self, state: RunState, reason: str) -> None:
        """The run's end, before its log closes: the command for a finished or failed run (a stop
        was the user's own doing), and every command still running (a pause's) says its outcome."""
        if state in (RunState.FINISHED, RunState.FAILED):
            self.fire(state.value, reason, wait=True)  # never raises
        self.join()

    def _run(self, what: str, env: dict) -> None:
        ok, detail = run_command(self.command, env, self.timeout)
        report = self.run.report
        with contextlib.suppress(Exception):  # never fatal, whatever the log's state
            if ok:
                report.note("notify", f"{what}: notify_command {detail}")
            else:
                report.emit(
                    E.Warning, message=f"{what}: run.notify_command {detail}; the run goes on", kind="notify_failed"
                )

    def join(self) -> None:
        """Wait for the commands still running: each ends within its timeout of its start, so all
        of them within one timeout from now (waiting for one after the other took one each)."""
        deadline = time.monotonic() + self.timeout + 5
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()
