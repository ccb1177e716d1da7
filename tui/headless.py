"""The headless front end: plain progress lines from a session's events (for nohup, CI, pipes),
and the signal handling of a headless run. Imports no textual, rich or plotext."""

from __future__ import annotations

import os
import signal
import sys

from deeptui.engine import events as E
from deeptui.engine.commands import Stop
from deeptui.engine.errors import SIGNAL_EXIT, exit_code, stop_signals
from deeptui.engine.system import summary as machine_summary

from .options import printable
from .summary import summary_lines
from .view import RunView

# Headless output is read in batches, at most this often: every wake-up of the printing thread
# preempts one of torch's threads, and on a small CPU machine the whole team then waits for it.
PRINT_SECONDS = 0.5
SYSTEM_EVERY_ROWS = 10  # the machine's figures after every 10th training row


class HeadlessPrinter:
    """One plain line per event worth telling. When its reader goes away (`| head`), it says so
    through `on_closed` once and prints nothing more, as tools that honour SIGPIPE do."""

    def __init__(self, out=None, quiet: bool = False, on_closed=None, summary: bool = True):
        self.out = out or sys.stdout
        self.quiet = quiet
        self.epochs = 0
        self.closed = False
        self.on_closed = on_closed
        self.summary = summary  # at the end, the run's summary (a local run; attach leaves it out)
        self.view = RunView()  # the run as its events tell it, for the summary
        self.rows = 0  # training rows printed
        self.system: E.SystemStats | None = None  # the latest machine reading

    def line(self, text: str) -> None:
        if self.quiet or self.closed:
            return
        try:
            print(printable(text), file=self.out, flush=True)
        except BrokenPipeError:
            self.closed = True
            silence(self.out)
            if self.on_closed is not None:
                self.on_closed()

    def handle(self, ev: E.Event) -> None:
        if isinstance(ev, E.RunStarted):
            self.epochs = ev.epochs
        elif isinstance(ev, E.SystemStats):
            self.system = ev
        self.view.apply(ev)
        text = self.describe(ev)
        if text is not None:
            self.line(text)
        if isinstance(ev, E.Finished) and self.summary:
            for text in summary_lines(self.view, ev.run_dir):
                self.line(text)
        if isinstance(ev, E.StepMetrics):
            self.rows += 1
            if self.rows % SYSTEM_EVERY_ROWS == 0 and self.system is not None:
                self.line(f"machine: {machine_summary(self.system)}")

    def describe(self, ev: E.Event) -> str | None:
        fmt = LINES.get(type(ev))
        return fmt(self, ev) if fmt is not None else None


LINES = {
    E.RunStarted: lambda p, ev: (
        f"deeptui: {'resumed' if ev.resumed else 'started'} {ev.preset} on {ev.device}: {ev.model} "
        f"({ev.parameters:,} parameters), {ev.epochs} epochs x {ev.steps_per_epoch} steps; "
        f"run directory {ev.run_dir}"
    ),
    E.StepMetrics: lambda p, ev: (
        f"epoch {ev.epoch}/{p.epochs} step {ev.step} loss {ev.loss:.4f} acc {100 * ev.accuracy:.1f}% "
        f"lr {ev.lr:.3g} {ev.optimizer} {ev.samples_per_s:,.0f} samples/s"
    ),
    E.EpochEnd: lambda p, ev: (
        f"epoch {ev.epoch} test loss {ev.test_loss:.4f} test error {ev.test_error_pct:.2f}%"
        + (" (train mode)" if ev.mode == "train" else "")
    ),
    E.CommandApplied: lambda p, ev: f"applied {ev.command}: {ev.detail}",
    E.CommandRejected: lambda p, ev: f"rejected {ev.command}: {ev.reason}",
    E.ScheduleAction: lambda p, ev: f"schedule: {ev.detail}",
    E.TimingResult: lambda p, ev: f"timing: {ev.device} batch vs. loop speed ratio {ev.ratio:.1f}",
    E.Warning: lambda p, ev: f"warning: {ev.message}",
    E.NonFiniteLoss: lambda p, ev: f"warning: {ev.message}",
    E.CheckpointSaved: lambda p, ev: f"checkpoint saved: {ev.path}",
    E.RunError: lambda p, ev: f"error: {ev.message}" + (f"; fix: {ev.fix}" if ev.fix else ""),
    E.Finished: lambda p, ev: (
        f"deeptui: {ev.state}" + (f" ({ev.reason})" if ev.reason else "") + f"; run directory {ev.run_dir}"
    ),
}


def silence(stream) -> None:
    """Point a closed output's file descriptor at /dev/null: Python's final flush at exit would
    otherwise raise BrokenPipeError once more."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    except (OSError, ValueError):  # no real file descriptor (a test's StringIO)
        pass


def print_events(session, printer: HeadlessPrinter, until=lambda: False) -> None:
    """Hand every event of a session to the printer until the session ends or `until()` says so."""
    cursor = 0
    while not until():
        events, cursor = session.events.read(cursor)
        for ev in events:
            printer.handle(ev)
        if not session.alive:
            for ev in session.events.read(cursor)[0]:  # what came in while it was ending
                printer.handle(ev)
            return
        session.wait_finished(PRINT_SECONDS)  # batch what comes in; the run's end wakes it at once


def run_headless(engine, printer: HeadlessPrinter | None = None) -> int:
    """Run the engine in its thread; print its events; stop cleanly (checkpoint, flush) on
    SIGINT/SIGTERM/SIGHUP (not SIGHUP under nohup) and when the output is closed (exit 141, as
    for SIGPIPE)."""
    printer = printer or HeadlessPrinter()
    caught: list[int] = []

    def stop(signum: int, why: str) -> None:
        if not caught:
            caught.append(signum)
            engine.send(Stop(reason=why))

    def on_signal(signum, frame):
        stop(signum, f"signal {signal.Signals(signum).name}")

    printer.on_closed = lambda: stop(signal.SIGPIPE, "the output was closed (broken pipe)")
    old = {s: signal.signal(s, on_signal) for s in stop_signals()}
    try:
        engine.start()
        print_events(engine, printer)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if caught:
        return SIGNAL_EXIT[caught[0]]
    return exit_code(engine.final_state)
