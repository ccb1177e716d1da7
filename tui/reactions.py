"""What a live event does beyond the view, one function per event type (REACTIONS): toasts, the
follow-up of a command once it is applied, the non-finite-loss dialog, the keys that follow the
run's state. Each takes the app (a run_app.RunApp) and the event."""

from __future__ import annotations

from collections.abc import Callable

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.state import PAUSED_BY_USER, RunState

from .dialogs import ExportScreen, NanScreen


def applied(app, ev: E.CommandApplied) -> None:
    follow = app.controller.follow_up(ev)
    if follow == "auto_timing":
        app.controller.auto_timing = "done"
    elif follow == "resume":
        app.controller.send(C.Resume())
    elif follow == "export":
        app.push_screen(ExportScreen(app.log_files()))


def rejected(app, ev: E.CommandRejected) -> None:
    if app.controller.follow_up(ev) == "auto_timing":
        app.controller.auto_timing = "due"  # put off by a command: at the next pause
        return
    app.notify(ev.reason, title=f"{ev.command} rejected", severity="warning", timeout=4)


def nonfinite(app, ev: E.NonFiniteLoss) -> None:
    if ev.policy != "pause":
        app.notify(ev.message, title="warning", severity="warning")
    elif not app.nan_open:
        app.nan_open = True
        app.push_screen(NanScreen(ev.message, app.view.rewind_target()), app.nan_choice)


def warning(app, ev: E.Warning) -> None:
    app.notify(ev.message, title="warning", severity="warning")


def run_error(app, ev: E.RunError) -> None:
    app.notify(ev.message + (f"\nfix: {ev.fix}" if ev.fix else ""), title="run error", severity="error", timeout=30)


def finished(app, ev: E.Finished) -> None:
    app.refresh_bindings()
    if ev.state != RunState.FAILED:  # a failure already has its own message
        app.notify(f"run {ev.state}; the plots stay until you press q", title="deeptui")


def started(app, ev: E.RunStarted) -> None:
    app.refresh_bindings()


def state_changed(app, ev: E.StateChanged) -> None:
    if ev.state == RunState.PAUSED and ev.reason == PAUSED_BY_USER:
        app.time_when_idle()  # the user's pause only: a non-finite loss waits for a decision


REACTIONS: dict[type, Callable] = {
    E.CommandApplied: applied,
    E.CommandRejected: rejected,
    E.NonFiniteLoss: nonfinite,
    E.Warning: warning,
    E.RunError: run_error,
    E.Finished: finished,
    E.RunStarted: started,
    E.StateChanged: state_changed,
}
