"""A dashboard run whose terminal closed (SIGHUP: an SSH link dropped) goes on detached, as
`--detach` would have started it (run.on_hangup = "detach"): the terminal's file descriptors point
at /dev/null at once (the dashboard's last writes go nowhere), then at the run's deeptui.log; the
run says so in its events (a `detached` row in events.csv) and trains on with its control socket
(`deeptui attach` brings the dashboard back), stopped by SIGTERM or SIGINT as a headless run is.
Imports no textual, rich or plotext."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from deeptui.engine.errors import SetupError

from .headless import HeadlessPrinter, run_headless
from .launch import Launch
from .options import LOG_NAME, fail


def silence_terminal() -> None:
    """Standard input, output and error from /dev/null and to it: the terminal is gone (a write
    there fails with EIO, a read ends at once)."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            os.dup2(null, fd)
    os.close(null)


def to_run_log(run_dir: Path) -> None:
    """Standard output and error into the run's deeptui.log (never through a link)."""
    from deeptui.engine.runlog import open_run_file

    with contextlib.suppress(OSError, SetupError), open_run_file(Path(run_dir), LOG_NAME) as log:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)


def go_on_detached(session, watched) -> int:
    """After the dashboard closed on a hangup: the run (`session`, or the engine a Launch builds;
    `watched` is what the dashboard last watched) trains on, its events as plain lines in its
    deeptui.log; the exit code of how it ends."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal is gone: no hangup stops it now
    if hasattr(session, "go_on_detached"):  # deeptui run SCRIPT: the script serves its own run
        return session.go_on_detached()
    if isinstance(session, Launch):
        session.ready.wait()  # the build goes on: an import cannot be interrupted
        if session.engine is None:
            return fail(str(session.error)) if isinstance(session.error, SetupError) else 1
        engine = session.engine
        if watched is session:  # closed before the dashboard took the engine over: it starts here
            for cmd in session.pending:
                engine.send(cmd)
            started = False
        else:
            started = True
    else:
        engine, started = session, True
    to_run_log(engine.run_dir)
    engine.interactive = False  # nobody watches: a non-finite loss stops the run (run.on_nan = "auto")
    engine.report.note(
        "detached", f"the terminal closed (SIGHUP): the run goes on detached; deeptui attach {engine.run_dir}"
    )
    printer = HeadlessPrinter()
    printer.line(f"deeptui: the terminal closed; the run goes on detached: deeptui attach {engine.run_dir}")
    return run_headless(engine, printer, start=not started)
