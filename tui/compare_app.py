"""The comparison dashboard: `[run] compare = { "data.batch_size" = [1, 10, 100, 1000] }`.

The runs go one after another, each a normal Engine with its own run directory. The app is the
usual dashboard (tui.app.DeeptuiApp) over the live run; when that run finishes, the next engine
is made and becomes the session. Beside the live loss, a second plot overlays every run's train
loss against the number of samples seen, as the lecture's MNIST figure does. q stops the live
run (checkpoint, logs) and starts no other.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from rich.markup import escape
from rich.text import Text
from textual.screen import Screen
from textual.widgets import Static

from engine import commands as C
from engine import events as E

from .app import Dashboard, DeeptuiApp, PlotView
from .view import RunView, Series, _empty, _figure, downsample, finite, legend, loss_plot

# One colour per compared run (repeats after six).
RUN_COLORS = [(90, 150, 255), (255, 170, 40), (60, 210, 100), (225, 90, 225), (240, 70, 70),
              (40, 210, 210)]


def run_color(i: int) -> tuple[int, int, int]:
    return RUN_COLORS[i % len(RUN_COLORS)]


def overlay_plot(curves: list[tuple[str, Series]], width: int, height: int, log_scale: bool = False) -> str:
    """Each run's train loss (y) against samples seen (x), one colour per run; plotext ANSI text."""
    n = max(8, 2 * width)
    fig = None
    for i, (_, s) in enumerate(curves):
        x, y = finite(s.x, s.y, positive=log_scale)
        if not x:
            continue
        if fig is None:
            fig = _figure(width, height)
            if log_scale:
                fig.yscale("log")
        x, y = downsample(x, y, n)
        fig.plot(x, y, marker="braille", color=run_color(i))
    if fig is None:
        return _empty(width, height, "waiting for the first training loss ...")
    return fig.build()


def overlay_legend(labels: list[str]) -> str:
    """Textual markup naming each run in its colour; 'batch_size ━ 1 ━ 10' when the labels share
    their key, so that four runs fit under an 80-column plot."""
    keys = {label.split("=", 1)[0] for label in labels}
    if len(keys) == 1 and all("=" in label for label in labels):
        names, head = [label.split("=", 1)[1] for label in labels], f"{keys.pop()} "
    else:
        names, head = labels, ""
    return escape(head) + " ".join(f"[#%02x%02x%02x]━ {escape(n)}[/]" % run_color(i)
                                   for i, n in enumerate(names))


class CompareDashboard(Dashboard):
    """The live run's loss above the overlay of every run; the run panel and the list of runs."""

    SIDE = ("run", "runs")

    def plots(self, app) -> list[PlotView]:
        return [PlotView(lambda w, h: app.live_loss_plot(w, h), id="loss"),
                PlotView(lambda w, h: overlay_plot(app.curves(), w, h, app.log_scale), id="compare")]

    def titles(self, app) -> dict[str, tuple[str, str]]:
        return {"loss": ("live run: loss · x: step", legend("train", "smoothed", "test",
                                                            compact=self.has_class("-compact"))),
                "compare": ("train loss · x: samples seen", overlay_legend([label for label, _ in app.runs])),
                "run": ("live run", ""), "runs": (f"compare {app.key}", ""), "log": ("events", "")}


class CompareApp(DeeptuiApp):
    """DeeptuiApp over the live run of a series; swaps in the next engine when one finishes."""

    def __init__(self, runs: list[tuple[str, object]], make_engine: Callable, key: str = "", **kw):
        self.runs = list(runs)          # [(label, cfg)] from engine.compare.variants
        self.make_engine = make_engine  # cfg -> a new Engine (setup errors raise)
        self.key = key                  # the compared key, e.g. "data.batch_size"
        self.index = 0                  # the live run
        self.states = ["waiting"] * len(self.runs)   # per run: waiting/running/finished/stopped/failed
        self.losses: list[Series] = [Series() for _ in self.runs]  # (samples seen, train loss)
        self.overlay_version = 0
        self.failed = False
        self._closing = False
        first = make_engine(self.runs[0][1])  # a setup error here is the CLI's exit 2
        first.interactive = True
        self.run_dirs = [Path(first.run_dir)]
        super().__init__(first, **kw)
        self.view = RunView(preset=self.title_of(0), batch_size=first.cfg.data.batch_size)

    def get_default_screen(self) -> Screen:
        return CompareDashboard()

    def title_of(self, i: int) -> str:
        return f"run {i + 1}/{len(self.runs)}: {self.runs[i][0]}"

    def curves(self) -> list[tuple[str, Series]]:
        return [(label, s) for (label, _), s in zip(self.runs, self.losses)]

    def live_loss_plot(self, w: int, h: int) -> str:
        return loss_plot(self.view, w, h, self.log_scale)

    # ---- the series ---------------------------------------------------------------------

    def _react(self, ev: E.Event) -> None:
        if isinstance(ev, E.StepMetrics):
            self.losses[self.index].add(ev.samples_seen, ev.loss)
            self.overlay_version += 1
        elif isinstance(ev, E.RunStarted):
            self.view.preset = self.title_of(self.index)  # the header says which run is live
            self.states[self.index] = "running"
        elif isinstance(ev, E.Finished):
            self.states[self.index] = ev.state
            self.failed = self.failed or ev.state == "failed"
            if ev.state == "finished" and self.index + 1 < len(self.runs):
                self.notify(f"{self.runs[self.index][0]} finished; next: {self.runs[self.index + 1][0]}",
                            title=self.title_of(self.index))
                self.call_later(self.start_next)
                return
            if ev.state == "finished":
                self.notify("every run finished; the plots stay until you press q", title="compare")
                self.refresh_bindings()
                return
        super()._react(ev)

    def start_next(self) -> None:
        """Make the next run's engine and make it the session. Engine.create loads the data on the
        UI thread: a short freeze between runs, and no engine can outlive a quit half-made."""
        if self._closing:
            return
        self.session.shutdown("next run", timeout=10)  # its thread has ended or is ending: join it
        nxt = self.index + 1
        cfg = self.runs[nxt][1]
        try:
            engine = self.make_engine(cfg)
        except Exception as e:  # a setup error of a later run: the series ends here
            self.states[nxt] = "failed"
            self.failed = True
            self.view.note(f"{self.title_of(nxt)} could not start: {e}", "bold red")
            self.notify(str(e), title=f"{self.title_of(nxt)} could not start", severity="error", timeout=30)
            self.refresh_view(True)
            return
        self.index = nxt
        engine.interactive = True
        self.run_dirs.append(Path(engine.run_dir))
        self.session = engine
        self.view = RunView(preset=self.title_of(self.index), batch_size=cfg.data.batch_size)
        self._cursor, self._log_shown, self._pending = 0, 0, {}
        self._event_clock = self.clock()
        self.view.note(f"── {self.title_of(self.index)} ──", "bold")
        if cfg.run.timing_at_start:
            self._send(C.RunTiming(**self.timing_kwargs), "timing at start")
        engine.start()
        self.refresh_bindings()
        self.refresh_view(True)

    def stop_session(self, reason: str) -> bool:
        self._closing = True  # no further run starts once the app is on its way out
        return super().stop_session(reason)

    def exit_code(self) -> int:
        """1 when a run failed (or could not start); 0 when all finished or the user quit."""
        if self.signal_exit:
            return self.signal_exit
        return 1 if self.failed or self.session.final_state == "failed" else 0

    # ---- drawing ------------------------------------------------------------------------

    def _draw_panels(self, dash: Screen) -> None:
        self._draw_header(dash)
        self._draw_run(dash)
        self._draw_runs(dash)
        self._draw_error(dash)
        self._draw_log(dash)

    def _draw_runs(self, dash: Screen) -> None:
        """One line per run in its overlay colour: waiting, running or how it ended, last loss."""
        t = Text()
        marks = {"running": ("●", "bold green"), "paused": ("‖", "bold yellow"), "timing": ("◔", "bold cyan"),
                 "finished": ("✓", "green"), "stopped": ("■", "magenta"), "failed": ("✖", "bold red")}
        width = max(len(label) for label, _ in self.runs)
        for i, ((label, _), state, s) in enumerate(zip(self.runs, self.states, self.losses)):
            t.append("━ ", "#%02x%02x%02x" % run_color(i))
            t.append(f"{label:<{width}} ", "bold" if i == self.index else "")
            if state == "waiting":
                t.append("· waiting\n", "dim")
                continue
            if i == self.index and state == "running" and self.view.state in marks:
                state = self.view.state  # paused, timing: as the engine reports it
            mark, style = marks.get(state, ("?", ""))
            t.append(mark + " ", style)
            shown = s.y and state not in ("failed", "stopped")
            t.append(f"{s.y[-1]:.3f}\n" if shown else f"{state}\n", style)
        t.rstrip()
        self._set(dash.query_one("#runs", Static), t)

    def _draw_plots(self, dash: Screen, force: bool) -> None:
        """As the parent's, for the live loss and the overlay (each with its own version)."""
        self._redraw_plots([(dash.query_one("#loss", PlotView), self.view.points_version),
                            (dash.query_one("#compare", PlotView), self.overlay_version)], force)

    def watch_log_scale(self, value: bool) -> None:
        try:
            self.query_one("#loss", PlotView).redraw(self.view.points_version)
            self.query_one("#compare", PlotView).redraw(self.overlay_version)
            self.query_one("#compare", PlotView).border_title = (
                "train loss (log y) · x: samples seen" if value else "train loss · x: samples seen")
        except Exception:
            pass

    def _log_files(self) -> list[Path]:
        run_dir = Path(self.session.run_dir)
        return [run_dir / "metrics.csv", run_dir / "events.csv"]


def run_compare_dashboard(cfg, args) -> int:
    """`deeptui PRESET` with run.compare, on a terminal. Prints every run directory on exit.
    0: all finished or the user quit; 1: a run failed; 128+N: ended by signal N."""
    from engine.compare import variants
    from engine.data import default_data_root
    from engine.engine import Engine

    from tui.remote_cli import start_control_server

    data_root = default_data_root(args.data_dir)
    servers = []

    def make_engine(one):
        # built in its own thread, like a single run (one OpenMP team), and served on its
        # control socket so `deeptui attach` reaches the live run of the series
        engine = Engine.create_in_thread(one, data_root=data_root, log_dir=args.log_dir)
        server = start_control_server(engine)
        if server is not None and not isinstance(server, int):
            servers.append(server)
        return engine

    runs = variants(cfg)
    key = next(iter(cfg.run.compare), "")
    app = CompareApp(runs, make_engine, key=key, handle_signals=True)
    try:
        app.run()
    finally:
        stopped = app.stop_session("quit")
        for server in servers:
            server.close()
    if app.session.final_state:  # the live run's end, which the app may not have polled
        app.states[app.index] = app.session.final_state
    for i, run_dir in enumerate(app.run_dirs):
        print(f"run {i + 1}/{len(runs)} {runs[i][0]}: {app.states[i]}; run directory: {run_dir}")
    if not stopped:
        print("deeptui: the training thread did not stop in time; the logs may be incomplete",
              file=sys.stderr)
        return 1
    return app.exit_code() or (1 if app.return_code else 0)  # a crash of the app itself: 1
