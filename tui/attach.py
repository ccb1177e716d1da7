"""`deeptui attach [RUN_DIR]`: the dashboard (or plain lines) on a run in another process, through
its control socket: the history so far, then the live stream."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from deeptui.engine import events as E
from deeptui.engine.errors import STOP_SIGNALS, RemoteError, SetupError, exit_code
from deeptui.engine.history import tail_rows
from deeptui.engine.remote.client import RemoteSession
from deeptui.engine.runlog import JOURNAL

from .headless import HeadlessPrinter, print_events
from .options import fail, front_end
from .runs import find_run, list_runs, stopped_pid
from .view import RunView, fmt_duration, fmt_number

HISTORY_ROWS = 10  # training rows attach --headless prints before the live ones


def last_rows(session: RemoteSession, n: int) -> list[E.StepMetrics]:
    """The history's last n training rows: the newest come in the server's Digest (as the run
    has them, flushed or not); older ones, when more are asked for, from events.jsonl's end."""
    digest = next((e for e in session.events.read(0)[0] if isinstance(e, E.Digest)), None)
    rows = [r for r in (E.from_json({**f, "type": "StepMetrics"}) for f in (digest.recent if digest else ())) if r]
    if n > len(rows):
        first = rows[0].step if rows else float("inf")
        rows = [r for r in tail_rows(Path(session.run_dir) / JOURNAL, n) if r.step < first] + rows
    return rows[-n:] if n else []


def so_far_line(v: RunView, run_dir) -> str:
    """One line for a run's history: its state, where it is, its loss, its best test error."""
    best = f", best test error {v.best_test[0]:.2f}% (epoch {v.best_test[1]})" if v.best_test else ""
    epochs = f"/{v.epochs}" if v.epochs else ""
    return (
        f"deeptui: attached to {run_dir}: {v.state}, epoch {v.epoch}{epochs}, step {v.step:,}, "
        f"loss {fmt_number(v.curves.last_loss)}{best}, {fmt_duration(v.time_s)} so far; the last rows:"
    )


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
    p.add_argument(
        "--history",
        type=int,
        default=HISTORY_ROWS,
        metavar="N",
        help=f"--headless: the last N training rows before the live ones (default {HISTORY_ROWS})",
    )
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
        return attach_headless(session, history=max(0, args.history))
    from .app import run_dashboard

    return run_dashboard(session, attached=True)


def attach_headless(session: RemoteSession, printer=None, history: int = HISTORY_ROWS) -> int:
    """Print a line that sums up the run so far, its last `history` training rows (from its
    events.jsonl, read from the end), then its live events; Ctrl+C, SIGTERM, a closed terminal or
    a closed pipe (`| head`) only detach: the run goes on."""
    printer = printer or HeadlessPrinter(summary=False)

    def so_far() -> None:
        printer.line(so_far_line(printer.view, session.run_dir))
        for row in last_rows(session, history):
            printer.line(printer.describe(row))

    caught: list[int] = []
    printer.on_closed = lambda: caught.append(signal.SIGPIPE)
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in STOP_SIGNALS}
    try:
        print_events(session, printer, until=lambda: bool(caught), on_history=so_far)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        session.detach()
    if caught or not session.final_state:
        printer.line(f"deeptui: detached; the run goes on: deeptui attach {session.run_dir}")
        return 0
    return exit_code(session.final_state, session.bad_input)
