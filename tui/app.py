"""DeeptuiApp: the dashboard over a training session (engine.session.Session).

Commands go in through `session.send`; everything on screen comes from the events read back (the
state the engine reports, never the state a key asked for). The app polls the events a few times
a second, folds them into a RunView, reacts to the ones that need more than a redraw (dialogs,
toasts, follow-up commands) and never waits on the training thread. The Dashboard screen draws.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from textual.app import App
from textual.reactive import reactive
from textual.screen import Screen

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.errors import SetupError, exit_code
from deeptui.engine.session import Session
from deeptui.engine.state import PAUSED_BY_USER, RunState

from . import panels
from .dashboard import Dashboard, Panel
from .dialogs import ExportScreen, NanScreen
from .keys import Steering
from .launch import Launch
from .layer_views import LayerViews
from .notify import Alerts
from .options import fail
from .plot_controls import PlotControls
from .strip import machine_strip
from .summary import summary_lines
from .view import RunView

POLL_SECONDS = 0.25  # how often the UI reads the engine's events
# While running, metrics (panels, plots) are redrawn at most this often; state changes and
# command answers are drawn at the next poll.
FRAME_SECONDS = 1.0
ROUTINE = (E.StepMetrics, E.EpochEnd, E.LayerStats, E.SystemStats)  # events that can wait for the next frame


def on_exit_signals(handler: Callable[[int], None]) -> None:
    """SIGTERM and SIGHUP (the SSH session dropped) call handler(signum) on the app's loop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, handler, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no loop support
            pass


class DeeptuiApp(Steering, LayerViews, PlotControls, App[int]):
    """Watch and steer one training session."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute, so apps elsewhere find it
    TITLE = "deeptui"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = Steering.KEYS + PlotControls.PLOT_KEYS
    COMMANDS_HELP = {**Steering.COMMANDS_HELP, **PlotControls.PLOT_COMMANDS}

    log_scale: reactive[bool] = reactive(False, init=False)
    """Whether the loss plot's y axis is logarithmic (view state only)."""

    depth: reactive[str] = reactive("", init=False)
    """The per-layer view the d key shows instead of the accuracy plot (a LayerStats field, or ""
    for none; view state only)."""

    def __init__(
        self,
        session: Session,
        *,
        clock: Callable[[], float] = time.monotonic,
        timing: dict | None = None,
        handle_signals: bool = False,
        shutdown_timeout: float = 30.0,
        attached: bool = False,
    ):
        super().__init__()
        self.session = session
        # A run in another process (deeptui attach): q asks stop or detach; signals only detach.
        self.attached = attached
        self.stop_on_quit = not attached
        self.view = RunView(preset=session.cfg.run.name, batch_size=session.cfg.data.batch_size)
        self.clock = clock
        # The lecture takes the median of 51; 11 keep the pause short (about 4 s on 2 CPU cores).
        self.timing_kwargs = dict(timing) if timing is not None else {"repeats": 11}
        self.handle_signals = handle_signals
        self.shutdown_timeout = shutdown_timeout
        self.signal_exit = 0  # 128+N when a signal ended the app
        self._cursor = 0
        self._generation = 0  # a HistorySession's: a new one is the whole history, folded again
        self._launched = clock()  # on the local clock, when the run's clock read 0 (the earliest such guess)
        self._pending: dict[int, str] = {}  # command id -> what to do when it is applied
        self._nan_open = False
        self.alerts = Alerts(self.write_terminal)  # bell and OSC 9/777 when no one is looking
        self._started = False
        self._shutdown_done = False
        self.resumed_on_detach = False  # the quit dialog resumed a paused run before detaching
        self._auto_timing = "due"  # run.auto_timing: due, sent, done

    # ---- the screen and its parts -------------------------------------------------------

    def get_default_screen(self) -> Screen:
        return Dashboard(self.plots(), self.panels(), self.strips())

    def panels(self) -> list[Panel]:
        return [
            Panel("run", lambda: panels.run_panel(self.view), "run"),
            Panel("timing", lambda: panels.timing_panel(self.view), "batch vs loop"),
        ]

    def strips(self) -> list[Panel]:
        on = self.session.cfg.log.system_seconds > 0
        return [Panel("system", lambda: machine_strip(self.view, on), "")]

    @property
    def dashboard(self) -> Dashboard | None:
        return next((s for s in self.screen_stack if isinstance(s, Dashboard)), None)

    def refresh_view(self, force_plots: bool = False) -> None:
        if self.dashboard is not None:
            self.dashboard.refresh_view(force_plots)

    def watch_log_scale(self, value: bool) -> None:
        self.restyle_plots()

    def watch_depth(self, value: str) -> None:
        self.restyle_plots()

    def restyle_plots(self) -> None:
        """Titles and plots again, now (after a change of what they show or how)."""
        if self.dashboard is not None and self.dashboard.is_mounted:
            self.dashboard.apply_titles()
            self.dashboard.redraw_plots()

    # ---- lifecycle ----------------------------------------------------------------------

    def on_mount(self) -> None:
        self.session.start()
        self._started = True
        self.set_interval(POLL_SECONDS, self.poll)
        if self.handle_signals:
            on_exit_signals(self._on_signal)

    def _on_signal(self, sig: int) -> None:
        self.signal_exit = 128 + int(sig)
        self.stop_session(f"signal {signal.Signals(sig).name}")
        self.exit(return_code=self.signal_exit)

    def on_unmount(self) -> None:
        self.stop_session("quit")

    def stop_session(self, reason: str) -> bool:
        """Stop the engine at its next step boundary and wait for it (flushes logs, saves a
        checkpoint); an attached dashboard that only detaches leaves the run going. Idempotent."""
        if self._shutdown_done:
            return True
        self._shutdown_done = True
        if not self.stop_on_quit:
            self.session.detach()  # the run goes on in its own process
            return True
        if self.attached:
            reason = f"{reason} from an attached dashboard"
        if self._started and self.session.alive:
            return bool(self.session.shutdown(reason, timeout=self.shutdown_timeout))
        return True

    def _hand_over(self, launch: Launch) -> None:
        """The engine is built: watch it from now on (commands sent meanwhile go to it), or end
        with the setup error (run_dashboard prints it: exit 2)."""
        if launch.engine is None:
            self.exit(return_code=2)
            return
        engine = launch.engine
        engine.interactive = True
        for cmd in launch.pending:
            engine.send(cmd)
        view = RunView(preset=engine.cfg.run.name, batch_size=engine.cfg.data.batch_size)
        self.switch_session(engine, view, keep_clock=True)  # one clock from launch: the engine's goes on
        engine.start()
        self.refresh_bindings()

    def switch_session(self, session: Session, view: RunView, keep_clock: bool = False) -> None:
        """Watch another session from now on (the next run of a compare series; the engine once
        built, keeping the header's clock)."""
        self.session, self.view = session, view
        self._cursor, self._pending, self._generation = 0, {}, getattr(session, "generation", 0)
        if not keep_clock:
            self._launched = self.clock()
        self._auto_timing = "due"

    def exit_code(self) -> int:
        if self.signal_exit:
            return self.signal_exit
        return exit_code(self.session.final_state)

    # ---- reading events -----------------------------------------------------------------

    def poll(self) -> None:
        """Read new events, fold them into the view, redraw what changed."""
        if isinstance(self.session, Launch) and self.session.ready.is_set():
            self._hand_over(self.session)
        if getattr(self.session, "generation", 0) != self._generation:  # show: the whole history has been read
            self._generation = self.session.generation
            self.view, self._cursor = RunView(preset=self.view.preset, batch_size=self.view.batch_size), 0
            if self.dashboard is not None and self.dashboard.is_mounted:
                self.dashboard.query_one("#log").clear()
        events, self._cursor = self.session.events.read(self._cursor)
        urgent = False
        if events:  # an event read now happened at its time_s or later: the run began no later than
            self._launched = min(self._launched, self.clock() - max(e.time_s for e in events))
            first = self._cursor - len(events)
            replayed = self.session.replayed  # an attached run's history
            for i, ev in enumerate(events):
                self.view.apply(ev)
                urgent = urgent or not isinstance(ev, ROUTINE)
                if first + i >= replayed:  # no toasts or dialogs for what happened before attach
                    self.on_live_event(ev)
            if first < replayed:
                self.refresh_bindings()  # keys follow the replayed state (finished, features, ...)
        # Every repaint costs the UI thread milliseconds, and on a small CPU machine that time
        # is taken from the training thread (the GIL): metrics are drawn once a second.
        dash = self.dashboard
        if dash is not None and (urgent or time.monotonic() - dash.drawn_at >= FRAME_SECONDS):
            dash.refresh_view(False)

    def write_terminal(self, text: str) -> None:
        """Escape sequences straight to the terminal (none under a test's headless driver)."""
        if not self.is_headless and self._driver is not None:
            self._driver.write(text)

    def on_key(self, event) -> None:
        self.alerts.input_seen()  # someone is there (Steering.on_key handles the key itself)

    def on_live_event(self, ev: E.Event) -> None:
        """What an event does beyond the view: toasts, follow-up commands, dialogs, alerts."""
        self.alerts.on_event(ev, self.view.preset, self.app_focus)
        if isinstance(ev, E.CommandApplied):
            follow = self._pending.pop(ev.command_id, None)
            if follow == "auto_timing":
                self._auto_timing = "done"
            if follow == "resume":
                self.send(C.Resume())
            elif follow == "export":
                self.push_screen(ExportScreen(self.log_files()))
        elif isinstance(ev, E.CommandRejected):
            if self._pending.pop(ev.command_id, None) == "auto_timing":
                self._auto_timing = "due"  # put off by a command: at the next pause
                return
            self.notify(ev.reason, title=f"{ev.command} rejected", severity="warning", timeout=4)
        elif isinstance(ev, E.NonFiniteLoss):
            if ev.policy == "pause" and not self._nan_open:
                self._nan_open = True
                self.push_screen(NanScreen(ev.message, self.view.rewind_target()), self._nan_choice)
            elif ev.policy != "pause":
                self.notify(ev.message, title="warning", severity="warning")
        elif isinstance(ev, E.Warning):
            self.notify(ev.message, title="warning", severity="warning")
        elif isinstance(ev, E.RunError):
            self.notify(
                ev.message + (f"\nfix: {ev.fix}" if ev.fix else ""), title="run error", severity="error", timeout=30
            )
        elif isinstance(ev, E.Finished):
            self.refresh_bindings()
            if ev.state != RunState.FAILED:  # a failure already has its own message
                self.notify(f"run {ev.state}; the plots stay until you press q", title="deeptui")
        elif isinstance(ev, E.RunStarted):
            self.refresh_bindings()
        elif isinstance(ev, E.StateChanged) and ev.state == RunState.PAUSED and ev.reason == PAUSED_BY_USER:
            self.time_when_idle()  # the user's pause only: a non-finite loss waits for a decision

    def elapsed(self) -> float:
        """The run's clock: the latest event's, ticking on (loading, paused) until the run ends."""
        v = self.view
        return max(v.time_s, self.clock() - self._launched) if v.state.live and not v.finished else v.time_s

    def catch_up(self) -> None:
        """Fold the events that came after the last poll (the run's end, after q), without
        reacting to them: the summary printed then is the run's last word."""
        events, self._cursor = self.session.events.read(self._cursor)
        for ev in events:
            self.view.apply(ev)

    # ---- commands -----------------------------------------------------------------------

    def send(self, cmd: C.Command, follow: str = "") -> int:
        """Send a command; `follow` names what to do once the engine has applied it."""
        cid = self.session.send(cmd)
        if follow:
            self._pending[cid] = follow
        return cid


def run_dashboard(session: Session, attached: bool = False) -> int:
    """Run the dashboard over a session; print the run directory on exit.
    0: the run finished or the user stopped it (or detached); 1: it failed; 128+N: ended by signal N."""
    app = DeeptuiApp(session, handle_signals=True, attached=attached)
    try:
        app.run()
    finally:
        stopped = app.stop_session("quit")
    if isinstance(session, Launch) and session.engine is not None and app.session is session:
        # q while loading: the engine was built and stopped before the dashboard watched it
        app.switch_session(session.engine, RunView(preset=session.cfg.run.name))
    app.catch_up()
    if isinstance(session, Launch):
        if session.error is not None:
            return (
                fail(str(session.error))
                if isinstance(session.error, SetupError)
                else fail(f"could not start: {type(session.error).__name__}: {session.error}", 1)
            )
        if session.engine is None:  # quit before the build ended
            return fail(session.stopped_while_starting(), app.exit_code())
        session = session.engine
    for line in summary_lines(app.view, session.run_dir):
        print(line)
    if attached and not app.stop_on_quit:
        if session.final_state:
            return exit_code(session.final_state)
        if app.view.state == RunState.PAUSED and not app.resumed_on_detach:
            print(f"deeptui: detached; the run stays paused: deeptui attach {session.run_dir} to resume it")
        else:
            print(f"deeptui: detached; the run goes on: deeptui attach {session.run_dir}")
        return 0
    if not stopped:
        print("deeptui: the training thread did not stop in time; the logs may be incomplete", file=sys.stderr)
        return 1
    return app.exit_code()
