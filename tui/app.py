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
from deeptui.engine.errors import exit_code
from deeptui.engine.session import Session

from . import panels
from .dashboard import Dashboard, Panel, Plot
from .dialogs import ExportScreen, NanScreen, QuitScreen
from .keys import Steering
from .notify import Alerts
from .plots import accuracy_plot, legend, loss_plot
from .strip import machine_strip
from .view import RunView

POLL_SECONDS = 0.25  # how often the UI reads the engine's events
# While running, metrics (panels, plots) are redrawn at most this often; state changes and
# command answers are drawn at the next poll.
FRAME_SECONDS = 1.0
ROUTINE = (E.StepMetrics, E.EpochEnd, E.SystemStats)  # events that can wait for the next frame


def on_exit_signals(handler: Callable[[int], None]) -> None:
    """SIGTERM and SIGHUP (the SSH session dropped) call handler(signum) on the app's loop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, handler, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no loop support
            pass


class DeeptuiApp(Steering, App[int]):
    """Watch and steer one training session."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute, so apps elsewhere find it
    TITLE = "deeptui"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = Steering.KEYS

    log_scale: reactive[bool] = reactive(False, init=False)
    """Whether the loss plot's y axis is logarithmic (view state only)."""

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
        self._event_clock = clock()  # local clock when the latest event was read
        self._pending: dict[int, str] = {}  # command id -> what to do when it is applied
        self._nan_open = False
        self.alerts = Alerts(self.write_terminal)  # bell and OSC 9/777 when no one is looking
        self._started = False
        self._shutdown_done = False

    # ---- the screen and its parts -------------------------------------------------------

    def get_default_screen(self) -> Screen:
        return Dashboard(self.plots(), self.panels(), self.strips())

    def plots(self) -> list[Plot]:
        version = lambda: self.view.points_version  # noqa: E731
        return [
            Plot(
                "loss",
                lambda w, h: loss_plot(self.view, w, h, self.log_scale),
                version,
                lambda compact: (
                    self.loss_title(),
                    legend("train", "smoothed", "test", "optimizer", "freeze", "mode", compact=compact),
                ),
            ),
            Plot(
                "accuracy",
                lambda w, h: accuracy_plot(self.view, w, h),
                version,
                lambda compact: ("accuracy %", legend("train", "test", compact=compact)),
            ),
        ]

    def panels(self) -> list[Panel]:
        return [
            Panel("run", lambda: panels.run_panel(self.view), "run"),
            Panel("timing", lambda: panels.timing_panel(self.view), "batch vs loop"),
        ]

    def strips(self) -> list[Panel]:
        on = self.session.cfg.log.system_seconds > 0
        return [Panel("system", lambda: machine_strip(self.view, on), "")]

    def loss_title(self) -> str:
        return "loss (log y) · x: step" if self.log_scale else "loss · x: step"

    @property
    def dashboard(self) -> Dashboard | None:
        return next((s for s in self.screen_stack if isinstance(s, Dashboard)), None)

    def refresh_view(self, force_plots: bool = False) -> None:
        if self.dashboard is not None:
            self.dashboard.refresh_view(force_plots)

    def watch_log_scale(self, value: bool) -> None:
        if self.dashboard is not None and self.dashboard.is_mounted:
            self.dashboard.apply_titles()
            self.dashboard.redraw_plots()

    # ---- lifecycle ----------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.session.cfg.run.timing_at_start and not self.attached:
            self.send(C.RunTiming(**self.timing_kwargs))
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

    def switch_session(self, session: Session, view: RunView) -> None:
        """Watch another session from now on (the next run of a compare series)."""
        self.session, self.view = session, view
        self._cursor, self._pending = 0, {}
        self._event_clock = self.clock()

    def exit_code(self) -> int:
        if self.signal_exit:
            return self.signal_exit
        return exit_code(self.session.final_state)

    # ---- reading events -----------------------------------------------------------------

    def poll(self) -> None:
        """Read new events, fold them into the view, redraw what changed."""
        events, self._cursor = self.session.events.read(self._cursor)
        urgent = False
        if events:
            self._event_clock = self.clock()
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
            if follow == "resume":
                self.send(C.Resume())
            elif follow == "export":
                self.push_screen(ExportScreen(self.log_files()))
        elif isinstance(ev, E.CommandRejected):
            self._pending.pop(ev.command_id, None)
            self.notify(ev.reason, title=f"{ev.command} rejected", severity="warning", timeout=4)
        elif isinstance(ev, E.Warning):
            if ev.message.startswith("training loss is") and "paused" in ev.message and not self._nan_open:
                self._nan_open = True
                self.push_screen(NanScreen(ev.message), self._nan_choice)
            else:
                self.notify(ev.message, title="warning", severity="warning")
        elif isinstance(ev, E.RunError):
            self.notify(
                ev.message + (f"\nfix: {ev.fix}" if ev.fix else ""), title="run error", severity="error", timeout=30
            )
        elif isinstance(ev, E.Finished):
            self.refresh_bindings()
            if ev.state != "failed":  # a failure already has its own message
                self.notify(f"run {ev.state}; the plots stay until you press q", title="deeptui")
        elif isinstance(ev, E.RunStarted):
            self.refresh_bindings()

    def elapsed(self) -> float:
        v = self.view
        if v.state in ("running", "timing", "compiling") and not v.finished:
            return v.time_s + max(0.0, self.clock() - self._event_clock)
        return v.time_s

    # ---- commands -----------------------------------------------------------------------

    def send(self, cmd: C.Command, follow: str = "") -> int:
        """Send a command; `follow` names what to do once the engine has applied it."""
        cid = self.session.send(cmd)
        if follow:
            self._pending[cid] = follow
        return cid

    async def action_quit(self) -> None:
        if self.attached and self.session.alive:
            self.push_screen(QuitScreen(), self._quit_choice)
            return
        self.exit(return_code=0)

    def _quit_choice(self, choice: str | None) -> None:
        if choice in ("detach", "stop"):
            self.stop_on_quit = choice == "stop"
            self.exit(return_code=0)

    def _nan_choice(self, choice: str | None) -> None:
        self._nan_open = False
        if choice == "resume":
            self.send(C.Resume())
        elif choice == "restore":
            self.send(C.RestoreCheckpoint(), follow="resume")
        elif choice == "halve":
            self.send(C.ScaleLearningRate(factor=0.5))
            self.send(C.Resume())

    def log_files(self) -> list[Path]:
        run_dir = Path(self.session.run_dir)
        return [run_dir / "metrics.csv", run_dir / "events.csv"]


def run_dashboard(session: Session, attached: bool = False) -> int:
    """Run the dashboard over a session; print the run directory on exit.
    0: the run finished or the user stopped it (or detached); 1: it failed; 128+N: ended by signal N."""
    app = DeeptuiApp(session, handle_signals=True, attached=attached)
    try:
        app.run()
    finally:
        stopped = app.stop_session("quit")
    print(f"run directory: {session.run_dir}")
    if attached and not app.stop_on_quit:
        if session.final_state:
            return exit_code(session.final_state)
        print(f"deeptui: detached; the run goes on: deeptui attach {session.run_dir}")
        return 0
    if not stopped:
        print("deeptui: the training thread did not stop in time; the logs may be incomplete", file=sys.stderr)
        return 1
    return app.exit_code()
