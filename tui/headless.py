"""The headless front end: plain progress lines from a session's events (for nohup, CI, pipes),
and the signal handling of a headless run. Imports no textual, rich or plotext."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import sys
import threading
import time

from deeptui.engine import events as E
from deeptui.engine.commands import Stop
from deeptui.engine.errors import EXIT_OUTPUT, SIGNAL_EXIT, exit_code, stop_signals
from deeptui.engine.feed import feed_of
from deeptui.engine.system import summary as machine_summary

from .options import printable
from .summary import summary_lines
from .view import RunView

# Headless output is read in batches, at most this often: every wake-up of the printing thread
# preempts one of torch's threads, and on a small CPU machine the whole team then waits for it.
PRINT_SECONDS = 0.5
SYSTEM_EVERY_ROWS = 10  # the machine's figures after every 10th training row
# A line that cannot be written for this long (a pipe whose reader stopped reading) ends the
# output as a full disk does; a terminal is left alone (ctrl+s pauses it on purpose).
OUTPUT_STALL_S = float(os.environ.get("DEEPTUI_OUTPUT_STALL_S") or 60)


class OutputStalled(OSError):
    """A write to the output waited OUTPUT_STALL_S: its reader has stopped reading."""


def _stalled(signum, frame):
    raise OutputStalled(errno.EAGAIN, f"its reader stopped reading for {OUTPUT_STALL_S:g} s")


@contextlib.contextmanager
def stall_limit(stream, seconds: float):
    """Raise OutputStalled in a write to `stream` that blocks for `seconds` (SIGALRM: the write's
    system call is cut short). Only in the main thread, and not on a terminal."""
    try:
        guarded = seconds > 0 and threading.current_thread() is threading.main_thread() and not stream.isatty()
    except (AttributeError, ValueError, OSError):
        guarded = False
    pending, interval = signal.getitimer(signal.ITIMER_REAL) if guarded else (0.0, 0.0)
    if not guarded or 0 < pending <= seconds:  # someone else's alarm (a test's timeout) comes first
        yield
        return
    old = signal.signal(signal.SIGALRM, _stalled)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if pending:  # that alarm goes on, less the time the write took
            signal.setitimer(signal.ITIMER_REAL, max(pending - (time.monotonic() - started), 0.001), interval)


class HeadlessPrinter:
    """One plain line per event worth telling. When its output cannot be written any more (a reader
    that went away, `| head`; a full disk; an I/O error; a reader stalled for OUTPUT_STALL_S) it
    keeps why in `failure`, says so through `on_closed` once and prints nothing more, as tools
    that honour SIGPIPE do."""

    def __init__(self, out=None, quiet: bool = False, on_closed=None, summary: bool = True):
        self.out = out or sys.stdout
        self.quiet = quiet
        self.epochs = 0
        self.closed = False
        self.failure: OSError | None = None  # why the output was given up
        self.on_closed = on_closed
        self.summary = summary  # at the end, the run's summary (a local run; attach leaves it out)
        self.view = RunView()  # the run as its events tell it, for the summary
        self.rows = 0  # training rows printed
        self.system: E.SystemStats | None = None  # the latest machine reading

    def line(self, text: str) -> None:
        if self.quiet or self.closed:
            return
        try:
            with stall_limit(self.out, OUTPUT_STALL_S):
                print(printable(text), file=self.out, flush=True)
        except OSError as e:  # EPIPE, ENOSPC, EIO, OutputStalled: the same clean stop
            self.closed, self.failure = True, e
            silence(self.out)
            if self.on_closed is not None:
                self.on_closed()

    def fold(self, ev: E.Event) -> None:
        """What an event tells, without a line (the history of a run attached to)."""
        if isinstance(ev, E.RunStarted):
            self.epochs = ev.epochs
        elif isinstance(ev, E.SystemStats):
            self.system = ev
        self.view.apply(ev)

    def handle(self, ev: E.Event) -> None:
        self.fold(ev)
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
        f"({ev.parameters:,} parameters)"
        + (f", {ev.epochs} epochs x {ev.steps_per_epoch} steps" if ev.epochs else "")  # a watched loop may not say
        + "; "
        f"run directory {ev.run_dir}"
    ),
    E.StepMetrics: lambda p, ev: (
        f"epoch {ev.epoch}{f'/{p.epochs}' if p.epochs else ''} step {ev.step} loss {ev.loss:.4f} "  # 0: not said
        + (f"acc {100 * ev.accuracy:.1f}% " if math.isfinite(ev.accuracy) else "")  # a watched loop's may be unknown
        + f"lr {ev.lr:.3g} {ev.optimizer} {ev.samples_per_s:,.0f} samples/s"
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


def print_events(session, printer: HeadlessPrinter, until=lambda: False, on_history=None) -> None:
    """Hand every event of a session to the printer until the session ends or `until()` says so.
    With `on_history`, the session's history (events before `session.replayed`) is folded without
    a line each, and on_history() speaks for it once, before the first live line."""
    feed = feed_of(session)  # none skipped: what the bounded buffer dropped comes from the journal
    told = on_history is None

    def hand(ev: E.Event, index: int) -> None:
        nonlocal told
        if not told and index < session.replayed:
            printer.fold(ev)
            return
        if not told:
            told = True
            on_history()
        printer.handle(ev)

    while not until():
        events = feed.read()
        for i, ev in enumerate(events, feed.cursor - len(events)):
            hand(ev, i)
        if not told and feed.cursor >= session.replayed:
            told = True
            on_history()
        if not session.alive:
            events = feed.read()  # what came in while it was ending
            for i, ev in enumerate(events, feed.cursor - len(events)):
                hand(ev, i)
            if not told:
                on_history()
            return
        session.wait_finished(PRINT_SECONDS)  # batch what comes in; the run's end wakes it at once


def run_headless(
    engine, printer: HeadlessPrinter | None = None, serving=contextlib.nullcontext, start: bool = True
) -> int:
    """Run the engine in its thread; print its events; stop cleanly (checkpoint, flush) on
    SIGINT/SIGTERM/SIGHUP (not SIGHUP under nohup) and when the output cannot be written: closed
    (exit 141, as for SIGPIPE), or full, failing or stalled (exit 74). `serving()` (the control
    socket, a context manager) is entered once the handlers are in place, so a signal from the
    moment the run can be seen stops it with a checkpoint; what it raises comes before the start.
    `start=False`: the engine trains already (a dashboard run whose terminal closed)."""
    printer = printer or HeadlessPrinter()
    caught: list[int] = []  # the exit code of what stopped the run

    def stop(code: int, why: str) -> None:
        if not caught:
            caught.append(code)
            engine.send(Stop(reason=why))

    def on_signal(signum, frame):
        stop(SIGNAL_EXIT[signum], f"signal {signal.Signals(signum).name}")

    printer.on_closed = lambda: stop(*output_failure(printer.failure))
    old = {s: signal.signal(s, on_signal) for s in stop_signals()}
    try:
        with serving():
            if start:
                engine.start()
            print_events(engine, printer, on_history=lambda: None)  # a resume's history: folded, not printed again
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if caught and caught[0] == EXIT_OUTPUT:  # the one line, where it can still be written
        say_on_stderr(f"deeptui: stopped: {output_failure(printer.failure)[1]}; run directory {engine.run_dir}")
    if caught:
        return caught[0]
    return exit_code(engine.final_state, engine.bad_input)


def output_failure(e: OSError | None) -> tuple[int, str]:
    """(exit code, reason) for an output that cannot be written."""
    if isinstance(e, BrokenPipeError):
        return SIGNAL_EXIT[signal.SIGPIPE], "the output was closed (broken pipe)"
    why = str(e) if isinstance(e, OutputStalled) else (getattr(e, "strerror", None) or str(e))
    return EXIT_OUTPUT, f"the output cannot be written ({why})"


def say_on_stderr(text: str) -> None:
    """One line on stderr, given up after 2 s (stderr may be the same stalled pipe as stdout)."""
    try:
        with stall_limit(sys.stderr, 2.0):
            print(printable(text), file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        silence(sys.stderr)  # what is left in its buffer would block the exit
