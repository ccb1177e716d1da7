"""What every entry point shares so that nothing ends in a traceback: SIGTERM and SIGHUP before a
front end has its own handlers (they become a clean exit 143 / 129, like Ctrl+C's 130), and a
bug's details written to a file that the one-line message names. No textual, rich or plotext."""

from __future__ import annotations

import datetime
import os
import signal
import sys
import traceback

from deeptui.engine.errors import SIGNAL_EXIT, stop_signals


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived while deeptui was starting (importing, building, loading). A
    BaseException, as KeyboardInterrupt is: torch's own imports catch Exception here and there, and
    would swallow it (a bench then ran on for minutes after its SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum, frame):
    raise Interrupted(signum)


def stop_on_early_signals() -> dict:
    """SIGTERM/SIGHUP raise Interrupted until a front end replaces the handlers (a headless run
    stops its engine with a checkpoint; the dashboard does the same). Returns the old handlers."""
    old = {}
    handlers = {signal.SIGTERM: _raise, signal.SIGHUP: _raise, signal.SIGINT: signal.default_int_handler}
    for sig, handler in handlers.items():
        if sig not in stop_signals([sig]):
            continue  # nohup: the run outlives the terminal
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (a test calling main from a worker)
            pass
    return old


def restore(old: dict) -> None:
    for sig, handler in old.items():
        try:
            signal.signal(sig, handler)
        except ValueError:
            pass


# Set when a signal stopped deeptui while it started: nothing is open then, and the interpreter's
# own exit would turn a KeyboardInterrupt it saw into death by SIGINT (exit -2, not 130).
exit_now = False


def interrupted(signum: int) -> int:
    global exit_now
    try:
        print(f"deeptui: stopped by {signal.Signals(signum).name} while starting; nothing was trained", file=sys.stderr)
    except (OSError, ValueError):
        pass
    exit_now = True
    return SIGNAL_EXIT.get(signum, 128 + int(signum))


def _worker_rank() -> bool:
    """A data-parallel rank other than 0: it owns no terminal and no run file. Its interpreter
    teardown can abort in gloo's C++ threads ("terminate called without an active exception",
    SIGABRT, 1 run in 4 under load) after the run finished, so it leaves without one."""
    rank = os.environ.get("RANK", "0")
    return "WORLD_SIZE" in os.environ and rank.isdigit() and int(rank) != 0


def leave(code: int) -> None:
    """Exit with `code`: at once (no interpreter teardown) after a signal while starting, and on
    a data-parallel worker rank."""
    if exit_now or _worker_rank():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


def quiet_stdout() -> None:
    """The reader went away: no more writes, and none at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def internal_error(exc: BaseException) -> str:
    """One line for a bug, and its traceback in $XDG_STATE_HOME/deeptui/crash-<time>.txt."""
    from .runs import state_dir

    what = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}".rstrip(": ")
    try:
        folder = state_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"crash-{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.txt"
        path.write_text("".join(traceback.format_exception(exc)))
        where = f"; the details are in {path}"
    except OSError:
        where = ""
    return f"internal error ({what}){where}; please report it with that file"
