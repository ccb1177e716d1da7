"""RunApp: a Textual app that watches one run's session, composed of parts: a SessionController
(the session, its cursor and replay, the commands sent), the Dashboard screen that draws the view,
the reactions to live events (a table by event type), and the app's action table (its keys,
footer, palette and `?` help). The live dashboard (app.DeeptuiApp) adds the steering actions; `show`
the views of runs that have ended."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from textual.app import App
from textual.reactive import reactive
from textual.screen import Screen

from deeptui.engine import events as E
from deeptui.engine.errors import exit_code
from deeptui.engine.session import Session

from . import actions, panels
from .controller import SessionController
from .dashboard import Dashboard, Panel
from .dialogs import ExportScreen, HelpScreen, PaletteOnce
from .layer_views import depth_profile, depth_title
from .notify import Alerts
from .plot_controls import PlotControls
from .plots import DEPTH_VIEWS, depth_plot
from .reactions import REACTIONS
from .strip import machine_strip
from .view import RunView

POLL_SECONDS = 0.25  # how often the UI reads the engine's events
# While running, metrics (panels, plots) are redrawn at most this often; state changes and
# command answers are drawn at the next poll.
FRAME_SECONDS = 1.0
ROUTINE = (E.StepMetrics, E.EpochEnd, E.LayerStats, E.SystemStats)  # events that can wait for the next frame


class RunApp(PaletteOnce, PlotControls, App[int]):
    """Watch one run's session; the subclass's ACTIONS are its keys."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute, so apps elsewhere find it
    TITLE = "deeptui"
    ENABLE_COMMAND_PALETTE = True
    ACTIONS: tuple[actions.Action, ...] = ()
    REACTIONS = REACTIONS

    log_scale: reactive[bool] = reactive(False, init=False)
    """Whether the loss plot's y axis is logarithmic (view state only)."""

    depth: reactive[str] = reactive("", init=False)
    """The per-layer view the d key shows instead of the accuracy plot (a LayerStats field, or ""
    for none; view state only)."""

    def __init__(self, session: Session, *, clock: Callable[[], float] = time.monotonic, attached: bool = False):
        super().__init__()
        self.controller = SessionController(
            session, RunView(preset=session.cfg.run.name, batch_size=session.cfg.data.batch_size), clock
        )
        self.attached = attached  # a run in another process (deeptui attach)
        self.started = False  # the session was started (on mount)
        self.nan_open = False  # the non-finite-loss dialog is open
        self.alerts = Alerts(self.write_terminal)  # bell and OSC 9/777 when no one is looking
        self._by_id = {a.id: a for a in self.ACTIONS}

    @property
    def session(self) -> Session:
        return self.controller.session

    @property
    def view(self) -> RunView:
        return self.controller.view

    # ---- the screen and its parts -------------------------------------------------------

    def get_default_screen(self) -> Screen:
        return Dashboard(self.plots(), self.panels(), self.strips())

    def panels(self) -> list[Panel]:
        return [
            Panel("run", lambda: panels.run_panel(self.view), "run"),
            Panel(
                "timing",
                lambda: panels.timing_panel(self.view),
                "batch vs loop",
                lambda: panels.timing_shown(self.view),
            ),
        ]

    def strips(self) -> list[Panel]:
        on = self.session.cfg.log.system_seconds > 0
        return [Panel("system", lambda: machine_strip(self.view, on), "")]

    def depth_profiles(self) -> list[tuple[tuple, tuple[int, int, int]]]:
        """(values per layer, colour) of each run the d key's view shows: here the watched run."""
        return depth_profile(self.view, self.depth)

    def depth_plot(self, width: int, height: int) -> str:
        return depth_plot(self.depth_profiles(), width, height, DEPTH_VIEWS[self.depth][1])

    def depth_title(self) -> str:
        return depth_title(self.view, self.depth)

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

    # ---- the session ----------------------------------------------------------------------

    def on_mount(self) -> None:
        self.session.start()
        self.started = True
        self.set_interval(POLL_SECONDS, self.poll)

    def switch_session(self, session: Session, view: RunView, keep_clock: bool = False) -> None:
        self.controller.switch(session, view, keep_clock)

    def exit_code(self) -> int:
        return exit_code(self.session.final_state, self.session.bad_input)

    def poll(self) -> None:
        """Read new events (folded into the view), react to the live ones, redraw what changed."""
        batch = self.controller.read()
        if batch.restarted and self.dashboard is not None and self.dashboard.is_mounted:
            self.dashboard.restart_log()
        for ev in batch.live:
            self.on_live_event(ev)
        if batch.replayed:
            self.refresh_bindings()  # keys follow the replayed state (finished, features, ...)
        # Every repaint costs the UI thread milliseconds, and on a small CPU machine that time
        # is taken from the training thread (the GIL): metrics are drawn once a second.
        dash = self.dashboard
        urgent = any(not isinstance(ev, ROUTINE) for ev in batch.events)
        if dash is not None and (urgent or time.monotonic() - dash.drawn_at >= FRAME_SECONDS):
            dash.refresh_view(False)

    def on_live_event(self, ev) -> None:
        """What an event does beyond the view: an alert when no one looks, its reaction."""
        self.alerts.on_event(ev, self.view.preset, self.app_focus)
        reaction = self.REACTIONS.get(type(ev))
        if reaction is not None:
            reaction(self, ev)

    def elapsed(self) -> float:
        return self.controller.elapsed()

    def catch_up(self) -> None:
        self.controller.catch_up()

    def time_when_idle(self) -> None:
        """A pause's automatic timing: the live dashboard's (app.DeeptuiApp)."""

    def nan_choice(self, choice: str | None) -> None:
        self.nan_open = False

    def write_terminal(self, text: str) -> None:
        """Escape sequences straight to the terminal (none under a test's headless driver)."""
        if not self.is_headless and self._driver is not None:
            self._driver.write(text)

    # ---- the action table: keys, palette, help, why an action cannot act ---------------------

    def why_not(self, action_id: str) -> str | None:
        action = self._by_id.get(action_id)
        return actions.why_not(self, action) if action is not None else None

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """A steering action that cannot act is shown dimmed (its key says why: on_key)."""
        found = self._by_id.get(action)
        if found is not None and found.command:
            return None if self.why_not(action) else True
        return True

    def on_key(self, event) -> None:
        """A key whose action cannot act now says why instead of doing nothing."""
        self.alerts.input_seen()  # someone is there
        if not isinstance(self.screen, Dashboard):
            return
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            reason = self.why_not(binding.action)
            if reason:
                self.say_why(binding.description, reason)
                event.stop()
                return

    def say_why(self, what: str, reason: str) -> None:
        self.notify(reason, title=what, severity="warning")
        self.view.note(f"{what}: {reason}")
        self.refresh_view(False)

    def get_system_commands(self, screen: Screen):
        yield from actions.palette(self.ACTIONS, self.invoke, self.action_change_theme)

    async def invoke(self, action_id: str) -> None:
        """Run an action from the command palette, saying why when it cannot act."""
        reason = self.why_not(action_id)
        if reason:
            self.say_why(self._by_id[action_id].title, reason)
            return
        await self.run_action(action_id)

    def action_help(self) -> None:
        """Every key of this app by group; the ones that cannot act now say why."""
        self.push_screen(HelpScreen(actions.help_entries(self.ACTIONS, lambda a: actions.why_not(self, a))))

    # ---- the actions every watching app has -------------------------------------------------

    def action_log_scale(self) -> None:
        self.log_scale = not self.log_scale

    def action_depth(self) -> None:
        views = ["", *DEPTH_VIEWS]
        self.depth = views[(views.index(self.depth) + 1) % len(views)]

    def action_screenshot(self) -> None:
        self.deliver_screenshot()

    def deliver_screenshot(self, filename=None, path=None, time_format=None) -> str | None:
        """Textual's screenshot, saved in the run directory rather than in ~/Downloads, which a
        server seldom has."""
        try:
            saved = self.save_screenshot(filename, path or str(self.session.run_dir), time_format)
            os.chmod(saved, 0o600)  # a run file like the others
        except OSError as e:
            self.notify(f"could not save the screenshot: {e}", title="screenshot", severity="error")
            return None
        self.notify(saved, title="screenshot saved")
        self.view.note(f"screenshot saved: {saved}", "")
        return saved

    def action_export(self) -> None:
        """The run's files, shown and copied (a run that has ended closed, and so flushed, them)."""
        self.push_screen(ExportScreen(self.log_files()))

    def log_files(self) -> list[Path]:
        """What e shows and copies: the CSV logs, the resolved config and the checkpoints."""
        run_dir = Path(self.session.run_dir)
        files = [run_dir / name for name in ("metrics.csv", "events.csv", "config.toml")]
        return files + sorted(run_dir.glob("*.pt"))

    async def action_quit(self) -> None:
        self.exit(return_code=0)
