"""`deeptui attach [RUN_DIR]`: the dashboard (or plain lines) on a run in another process, through
its control socket: the history so far, then the live stream."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from deeptui.engine.errors import STOP_SIGNALS, RemoteError, SetupError, exit_code
from deeptui.engine.remote.client import RemoteSession

from .headless import HeadlessPrinter, print_events
from .options import fail, front_end
from .runs import find_run, list_runs, stopped_pid


def attach_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="deeptui attach",
        description="Open the dashboard on a run started elsewhere (e.g. --detach): "
        "its history so far, then the live stream; q asks stop or detach.",
    )
    p.add_argument(
        "run",
        nargs="?",
        help="a run directory, or its name (or a unique prefix) from deeptui ls (default: the newest live run)",
    )
    p.add_argument("--log-dir", help="where to look for runs too (default: $DEEPTUI_LOG_DIR, else ./runs)")
    p.add_argument("--headless", action="store_true", help="print the event lines instead of the dashboard")
    args = p.parse_args(argv)
    if args.run:
        try:
            run_dir = find_run(args.run, Path(args.log_dir) if args.log_dir else None)
        except SetupError as e:
            return fail(str(e))
    else:
        live = [r for r in list_runs(Path(args.log_dir) if args.log_dir else None) if r.live]
        if not live:
            return fail(
                "no live run; fix: start one with 'deeptui PRESET --detach' "
                "or pass a run directory (deeptui ls lists them)"
            )
        run_dir = live[0].path
    pid = stopped_pid(Path(run_dir))
    if pid is not None:
        return fail(
            f"{run_dir}: the run's process (pid {pid}) is stopped (SIGSTOP or ctrl+z), so it cannot "
            f"answer; fix: kill -CONT {pid}, then attach"
        )
    try:
        session = RemoteSession(run_dir)
        session.start()
    except RemoteError as e:
        if (Path(run_dir) / "metrics.csv").is_file():  # it has ended (or its process is gone): show it
            from .show import show_main

            print(f"deeptui: {run_dir} is not running; showing its logs (deeptui show)", file=sys.stderr)
            return show_main([str(run_dir)] + (["--headless"] if args.headless else []))
        return fail(str(e))
    except Exception as e:  # config.toml missing or unreadable: not a run directory
        return fail(f"{run_dir}: not a deeptui run directory ({e})")
    if front_end(args.headless) == "headless":
        return attach_headless(session)
    from .app import run_dashboard

    return run_dashboard(session, attached=True)


def attach_headless(session: RemoteSession, printer=None) -> int:
    """Print the run's events; Ctrl+C, SIGTERM, a closed terminal or a closed pipe (`| head`)
    only detach: the run goes on."""
    printer = printer or HeadlessPrinter(summary=False)
    caught: list[int] = []
    printer.on_closed = lambda: caught.append(signal.SIGPIPE)
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in STOP_SIGNALS}
    try:
        print_events(session, printer, until=lambda: bool(caught))
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        session.detach()
    if caught or not session.final_state:
        printer.line(f"deeptui: detached; the run goes on: deeptui attach {session.run_dir}")
        return 0
    return exit_code(session.final_state)
