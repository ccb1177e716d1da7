"""The comparison dashboard: `[run] compare = { "data.batch_size" = [1, 10, 100, 1000] }`.

The runs go one after another, each a normal Engine with its own run directory. The app is the
usual dashboard over the live run, with other parts: beside the live loss, a plot overlays every
run's train loss against the number of samples seen, as the lecture's MNIST figure does (the d
key overlays each run's latest per-layer statistics instead), and a panel lists the runs. When
the live run finishes, the next engine is built in a thread of its own (the dashboard stays
responsive) and becomes the session. q stops the live run and starts no other.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

from rich.text import Text

from deeptui.engine import events as E
from deeptui.engine.lod import Lod
from deeptui.engine.state import RunState

from . import panels
from .app import DeeptuiApp
from .dashboard import Panel, Plot
from .plots import DEPTH_VIEWS, legend, loss_plot, overlay_legend, overlay_plot, run_color, run_glyph
from .view import RunView, Series

RUN_MARKS = {
    RunState.RUNNING: ("●", "bold green"),
    RunState.PAUSED: ("‖", "bold yellow"),
    RunState.TIMING: ("◔", "bold cyan"),
    RunState.COMPILING: ("◔", "bold cyan"),
    RunState.FINISHED: ("✓", "green"),
    RunState.STOPPED: ("■", "magenta"),
    RunState.FAILED: ("✖", "bold red"),
    RunState.INTERRUPTED: ("✖", "bold red"),
}


def runs_panel(
    labels: list[str], states: list[RunState | None], losses: list[Lod], live: int, live_state: RunState
) -> Text:
    """One line per run in its overlay colour: waiting (None), running or how it ended, last loss."""
    t = Text()
    width = max(len(label) for label in labels)
    for i, (label, state, s) in enumerate(zip(labels, states, losses)):
        t.append(f"{run_glyph(i)[1]} ", "#%02x%02x%02x" % run_color(i))
        t.append(f"{label:<{width}} ", "bold" if i == live else "")
        if state is None:
            t.append("· waiting\n", "dim")
            continue
        if i == live and state == RunState.RUNNING and live_state in RUN_MARKS:
            state = live_state  # paused, timing: as the engine reports it
        mark, style = RUN_MARKS.get(state, ("?", ""))
        t.append(mark + " ", style)
        shown = len(s) and state.ok and state != RunState.STOPPED
        t.append(f"{s.last('loss'):.3f}\n" if shown else f"{state}\n", style)
    t.rstrip()
    return t


class CompareApp(DeeptuiApp):
    """The dashboard over the live run of a series, with the overlay and the list of runs."""

    DETACH_ON_HANGUP = False  # the dashboard starts the series' next runs: a closed terminal stops it

    def __init__(self, runs: list[tuple[str, object]], make_engine: Callable, key: str = "", **kw):
        self.runs = list(runs)  # [(label, cfg)] from engine.compare.variants
        self.make_engine = make_engine  # cfg -> a new Engine (setup errors raise)
        self.key = key  # the compared key, e.g. "data.batch_size"
        self.index = 0  # the live run
        self.states: list[RunState | None] = [None] * len(self.runs)  # per run: None while waiting
        # Each run's training rows at bounded memory (as a single run's curves): a redraw of the
        # overlay costs what the plot's width costs, not what the runs' lengths do.
        self.losses: list[Lod] = [Lod() for _ in self.runs]
        self.layer_stats: list[E.LayerStats | None] = [None] * len(self.runs)  # each run's latest
        self.overlay_version = 0
        self.failed = False
        self._closing = False
        self._lock = threading.Lock()  # _closing against a next run being built
        self._builder: threading.Thread | None = None
        first = make_engine(self.runs[0][1])  # a setup error here is the CLI's exit 2
        first.interactive = True
        self.run_dirs = [Path(first.run_dir)]
        super().__init__(first, **kw)
        self.controller.view = RunView(preset=self.title_of(0), batch_size=first.cfg.data.batch_size)

    def get_default_screen(self):
        screen = super().get_default_screen()
        screen.add_class("-compare")  # app.tcss: the live loss and the overlay share the height
        return screen

    def title_of(self, i: int) -> str:
        return f"run {i + 1}/{len(self.runs)}: {self.runs[i][0]}"

    def curves(self) -> list[tuple[str, Series]]:
        """Each run's train loss against samples seen."""
        return [(label, Series.of_lod(lod, "samples")) for (label, _), lod in zip(self.runs, self.losses)]

    # ---- the dashboard's parts ----------------------------------------------------------

    def plots(self) -> list[Plot]:
        labels = [label for label, _ in self.runs]
        return [
            Plot(
                "loss",
                lambda w, h: loss_plot(self.view, w, h, self.plot_options()),
                lambda: self.view.points_version,
                lambda compact: (
                    f"live run: {self.loss_title()}",
                    legend(*self.series_names(), "test", compact=compact),
                ),
            ),
            Plot(
                "compare",
                lambda w, h: self.depth_plot(w, h) if self.depth else overlay_plot(self.curves(), w, h, self.log_scale),
                lambda: (self.overlay_version, self.depth),
                lambda compact: (
                    self.depth_title()
                    if self.depth
                    else "train loss (log y) · x: samples seen"
                    if self.log_scale
                    else "train loss · x: samples seen",
                    overlay_legend(labels),
                ),
            ),
        ]

    def depth_profiles(self) -> list[tuple[tuple, tuple[int, int, int]]]:
        """Every run's latest per-layer statistics, in its colour."""
        return [(getattr(st, self.depth), run_color(i)) for i, st in enumerate(self.layer_stats) if st is not None]

    def depth_title(self) -> str:
        name, log = DEPTH_VIEWS[self.depth]
        return f"{name} per layer, each run's latest" + (" (log y)" if log else "") + " · x: depth"

    def panels(self) -> list[Panel]:
        labels = [label for label, _ in self.runs]
        return [
            Panel("run", lambda: panels.run_panel(self.view), "live run"),
            Panel(
                "runs",
                lambda: runs_panel(labels, self.states, self.losses, self.index, self.view.state),
                f"compare {self.key}",
            ),
        ]

    # ---- the series ---------------------------------------------------------------------

    def on_live_event(self, ev: E.Event) -> None:
        if isinstance(ev, E.StepMetrics):
            self.losses[self.index].add(ev.step, ev.samples_seen, ev.time_s, ev.loss, 100.0 * ev.accuracy)
            self.overlay_version += 1
        elif isinstance(ev, E.LayerStats):
            self.layer_stats[self.index] = ev
            self.overlay_version += 1
        elif isinstance(ev, E.RunStarted):
            self.view.preset = self.title_of(self.index)  # the header says which run is live
            self.states[self.index] = RunState.RUNNING
        elif isinstance(ev, E.Finished):
            state = self.states[self.index] = RunState.of(ev.state)
            self.failed = self.failed or state == RunState.FAILED
            if state == RunState.FINISHED and self.index + 1 < len(self.runs):
                self.notify(
                    f"{self.runs[self.index][0]} finished; next: {self.runs[self.index + 1][0]}",
                    title=self.title_of(self.index),
                )
                self.start_next()
                return
            if state == RunState.FINISHED:
                self.alerts.on_event(ev, f"compare {self.key}", self.app_focus)  # the series is over
                self.notify("every run finished; the plots stay until you press q", title="compare")
                self.refresh_bindings()
                return
        super().on_live_event(ev)

    def start_next(self) -> None:
        """Build the next run's engine in a thread of its own (loading its data takes a while),
        then make it the session on the UI thread."""
        nxt = self.index + 1
        self.view.note(f"starting {self.title_of(nxt)} ...", "dim")
        self.refresh_view(False)

        def build() -> None:
            self.session.shutdown("next run", timeout=10)  # its thread has ended or is ending
            try:
                engine = self.make_engine(self.runs[nxt][1])
            except Exception as e:  # a setup error of a later run: the series ends here
                self._on_ui(self._next_failed, nxt, e)
                return
            with self._lock:
                closing = self._closing
            if closing or not self._on_ui(self._begin, nxt, engine):
                engine.shutdown("quit", timeout=30)  # no engine outlives a quit half-made

        self._builder = threading.Thread(target=build, name="deeptui-next-run", daemon=True)
        self._builder.start()

    def _on_ui(self, fn, *args) -> bool:
        """Run fn on the UI thread; False when the app has already gone."""
        try:
            self.call_from_thread(fn, *args)
            return True
        except RuntimeError:
            return False

    def _begin(self, nxt: int, engine) -> None:
        with self._lock:
            if self._closing:
                raise RuntimeError("the app is closing")
        cfg = self.runs[nxt][1]
        self.index = nxt
        engine.interactive = True
        self.run_dirs.append(Path(engine.run_dir))
        self.switch_session(engine, RunView(preset=self.title_of(nxt), batch_size=cfg.data.batch_size))
        self.view.note(f"── {self.title_of(nxt)} ──", "bold")
        engine.start()
        self.refresh_bindings()
        self.refresh_view(True)

    def _next_failed(self, nxt: int, e: Exception) -> None:
        self.states[nxt] = RunState.FAILED
        self.failed = True
        self.view.note(f"{self.title_of(nxt)} could not start: {e}", "bold red")
        self.notify(str(e), title=f"{self.title_of(nxt)} could not start", severity="error", timeout=30)
        self.refresh_view(True)

    def stop_session(self, reason: str) -> bool:
        with self._lock:
            self._closing = True  # no further run starts once the app is on its way out
        return super().stop_session(reason)

    def join_builder(self, timeout: float = 60.0) -> None:
        """Wait for a next run that was being built when the app closed (it is shut down)."""
        if self._builder is not None:
            self._builder.join(timeout)

    def exit_code(self) -> int:
        """1 when a run failed (or could not start); 0 when all finished or the user quit."""
        if self.signal_exit:
            return self.signal_exit
        return 1 if self.failed or self.session.final_state == RunState.FAILED else 0


def run_compare_dashboard(runs: list, make_engine: Callable, key: str, servers: list) -> int:
    """The runs of a series on a terminal; prints every run directory on exit.
    0: all finished or the user quit; 1: a run failed; 128+N: ended by signal N."""
    app = CompareApp(runs, make_engine, key=key, handle_signals=True)
    try:
        app.run()
    finally:
        stopped = app.stop_session("quit")
        app.join_builder()
        for server in servers:
            server.close()
    if app.session.final_state:  # the live run's end, which the app may not have polled
        app.states[app.index] = RunState.of(app.session.final_state)
    for i, run_dir in enumerate(app.run_dirs):
        print(f"run {i + 1}/{len(runs)} {runs[i][0]}: {app.states[i]}; run directory: {run_dir}")
    if not stopped:
        print("deeptui: the training thread did not stop in time; the logs may be incomplete", file=sys.stderr)
        return 1
    return app.exit_code() or (1 if app.return_code else 0)  # a crash of the app itself: 1
