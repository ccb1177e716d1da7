"""The landscape dashboard: optimizer paths on a 2-D quadratic, drawn over its contour lines.

`deeptui presets/landscape.toml` in a terminal. The LandscapeRun is stepped here, on the UI
thread: one step of a 2-element parameter costs tens of microseconds, so an engine thread with
commands and events would only add machinery. Keys (actions.LANDSCAPE): space/p run or pause (all
paths, a few steps per tick, until landscape.steps), n/. one step of the highlighted path, j/k
(or the arrows) next/previous path, r reset, e write trajectories.csv, ? the keys, q quit (writes
it too).
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Static

from deeptui.engine.landscape import LandscapeRun

from . import actions
from .app import on_exit_signals
from .dashboard import PlotView
from .dialogs import HelpScreen, PaletteOnce
from .plots import empty_plot, figure

TICK_SECONDS = 0.1  # how often a running landscape steps and redraws
STEPS_PER_TICK = 3  # steps per path per tick: the preset's 250 steps take about 8 s to watch
MARGIN = 0.25  # the view reaches this fraction past the start's distance to the minimum
# One colour per path, in preset order (repeats after eight).
PATH_COLORS = [
    (90, 150, 255),
    (60, 210, 100),
    (235, 215, 40),
    (255, 170, 40),
    (240, 70, 70),
    (225, 90, 225),
    (40, 210, 210),
    (200, 200, 200),
]
CONTOUR_COLOR = (95, 95, 95)


def path_color(i: int) -> tuple[int, int, int]:
    return PATH_COLORS[i % len(PATH_COLORS)]


def _dim(c: tuple[int, int, int], f: float = 0.55) -> tuple[int, int, int]:
    return tuple(int(v * f) for v in c)  # type: ignore[return-value]


def view_box(run: LandscapeRun, plot_w: int, plot_h: int) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1): a square around the minimum reaching past the start (zig-zags mirror the
    start across the valley, so a start-to-minimum box would cut them), widened on one axis so a
    circle looks like one (a cell is about twice as high as wide). A diverging path leaves this
    box instead of squashing the picture."""
    (cx, cy), (sx, sy) = run.quad.minimum, run.start
    r = (1.0 + MARGIN) * max(math.hypot(sx - cx, sy - cy), 1e-6)
    want = max(plot_w, 1) / (2.0 * max(plot_h, 1))  # x range per y range for equal scales
    w, h = (2 * r * want, 2 * r) if want >= 1 else (2 * r, 2 * r / want)
    return cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2


def _clip(p, q, box):
    """The part of segment p-q inside box (Liang-Barsky), or None."""
    x0, x1, y0, y1 = box
    p, q = tuple(p), tuple(q)
    (px, py), (qx, qy) = p, q
    dx, dy = qx - px, qy - py
    t0, t1 = 0.0, 1.0
    for d, lo, hi, v in ((dx, x0, x1, px), (dy, y0, y1, py)):
        if d == 0:
            if not lo <= v <= hi:
                return None
            continue
        a, b = (lo - v) / d, (hi - v) / d
        if a > b:
            a, b = b, a
        t0, t1 = max(t0, a), min(t1, b)
        if t0 > t1:
            return None
    # exact endpoints when uncut, so that consecutive segments join into one polyline
    a = p if t0 == 0.0 else (px + t0 * dx, py + t0 * dy)
    b = q if t1 == 1.0 else (px + t1 * dx, py + t1 * dy)
    return a, b


def clipped_polylines(points, box) -> list[tuple[list[float], list[float]]]:
    """A path's (x, y) points cut to the box, as polylines. plotext interpolates a line in canvas
    cells, so a far-away point (a diverged path reaches 1e7) would cost it gigabytes: clip first."""
    lines: list[tuple[list[float], list[float]]] = []
    last = None  # end of the polyline being built
    for p, q in zip(points, points[1:]):
        if not all(math.isfinite(v) for v in (*p, *q)):
            last = None
            continue
        seg = _clip(p, q, box)
        if seg is None:
            last = None
            continue
        a, b = seg
        if last is not None and a == last:
            lines[-1][0].append(b[0])
            lines[-1][1].append(b[1])
        else:
            lines.append(([a[0], b[0]], [a[1], b[1]]))
        last = b if b == q else None  # a cut end starts a new polyline when the path comes back
    return lines


def landscape_plot(run: LandscapeRun, width: int, height: int) -> str:
    """Contour lines, every path (the highlighted one bright and on top), start, minimum and the
    point where a diverged path left the view; plotext ANSI text."""
    if width < 20 or height < 6:
        return empty_plot(width, height, "too small")
    fig = figure(width, height)
    box = view_box(run, width - 8, height - 2)  # minus the y tick labels and the x axis
    fig.xlim(box[0], box[1])
    fig.ylim(box[2], box[3])
    for xs, ys in run.contours(n=8, n_points=96):
        for lx, ly in clipped_polylines(list(zip(xs, ys)), box):
            fig.plot(lx, ly, marker="braille", color=CONTOUR_COLOR)
    order = [i for i in range(len(run.trajectories)) if i != run.current] + [run.current]
    for i in order:
        t = run.trajectories[i]
        color = path_color(i) if i == run.current else _dim(path_color(i))
        pts = [(x, y) for _, x, y, _ in t.points]
        lines = clipped_polylines(pts, box)
        for lx, ly in lines:
            fig.plot(lx, ly, marker="braille", color=color)
        if t.diverged and lines:  # where it left the picture (or blew up inside it)
            fig.scatter([lines[-1][0][-1]], [lines[-1][1][-1]], marker="x", color=color)
    mx, my = run.quad.minimum
    fig.scatter([mx], [my], marker="+", color=(255, 255, 255))
    fig.scatter([run.start[0]], [run.start[1]], marker="o", color=(255, 255, 255))
    cur = run.current_trajectory
    _, x, y, _ = cur.last
    if box[0] <= x <= box[1] and box[2] <= y <= box[3]:
        fig.scatter([x], [y], marker="●", color=path_color(run.current))
    return fig.build()


def verdict(run: LandscapeRun, t) -> tuple[str, str]:
    """(text, style) for one path: diverged, converged (as the headless run judges it), or not."""
    if t.diverged:
        return f"✖ diverged at {t.steps}", "bold red"
    if run.converged(t):
        return "✓ converged", "green"
    return ("· done" if t.steps >= run.steps else "…"), "dim"


class LandscapeApp(PaletteOnce, App[int]):
    """Step, run and compare the preset's optimizer paths on one quadratic."""

    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "deeptui landscape"

    ACTIONS = actions.LANDSCAPE
    BINDINGS = actions.bindings(actions.LANDSCAPE)

    def __init__(self, run: LandscapeRun, run_dir: str | Path, preset: str = "landscape", handle_signals: bool = False):
        super().__init__()
        self.landscape = run  # not self.run: App.run starts the app
        self.run_dir = Path(run_dir)
        self.preset = preset
        self.handle_signals = handle_signals
        self.steps_per_tick = STEPS_PER_TICK
        self.running = False  # auto-stepping; the app owns the run, there is no engine thread
        self.version = 0  # bumped whenever a path changed: the plot is rebuilt only then
        self.written: Path | None = None
        self.signal_exit = 0

    def compose(self) -> ComposeResult:
        yield Static(id="ls-header")
        with Horizontal(id="ls-main"):
            yield PlotView(lambda w, h: landscape_plot(self.landscape, w, h), id="ls-plot")
            with Vertical(id="ls-side"):
                yield Static(id="ls-paths")
                yield Static(id="ls-note")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        q = self.landscape.quad
        plot = self.query_one("#ls-plot", PlotView)
        plot.border_title = f"f = ½ pᵀAp, eigenvalues {q.eigenvalues[0]:g}, {q.eigenvalues[1]:g} at {q.angle_deg:g}°"
        plot.border_subtitle = "o start + minimum ● current x diverged"
        self.query_one("#ls-paths").border_title = "paths"
        self.query_one("#ls-note").border_title = "run directory"
        self.set_interval(TICK_SECONDS, self.tick)
        if self.handle_signals:
            on_exit_signals(self._on_signal)
        self.redraw()

    def on_resize(self, event) -> None:
        self.call_after_refresh(self.redraw)

    def _on_signal(self, sig: int) -> None:
        self.signal_exit = 128 + int(sig)
        self.write_csv()
        self.exit(return_code=self.signal_exit)

    # ---- stepping -----------------------------------------------------------------------

    def _active(self) -> list:
        """Paths that the run/pause key still steps."""
        return [t for t in self.landscape.trajectories if not t.diverged and t.steps < self.landscape.steps]

    def tick(self) -> None:
        if not self.running:
            return
        active = self._active()
        for t in active:
            for _ in range(min(self.steps_per_tick, self.landscape.steps - t.steps)):
                if not t.step():
                    break
        if active:
            self.version += 1
        if not self._active():
            self.running = False
            self.notify(
                f"every path made {self.landscape.steps} steps or diverged; r resets, n steps on", title="landscape"
            )
        self.redraw()

    def action_run(self) -> None:
        if not self.running and not self._active():
            self.notify(
                f"every path has made {self.landscape.steps} steps or diverged; r resets, n steps on",
                title="run",
                severity="warning",
            )
            return
        self.running = not self.running
        self.redraw()

    def action_step(self) -> None:
        t = self.landscape.current_trajectory
        if not t.step():
            self.notify(
                f"{t.label} diverged at step {t.steps}; o picks another path, r resets",
                title="step",
                severity="warning",
            )
            return
        self.version += 1
        self.redraw()

    def action_next_path(self) -> None:
        self.landscape.next_optimizer()
        self.version += 1
        self.redraw()

    def action_previous_path(self) -> None:
        self.landscape.previous_optimizer()
        self.version += 1
        self.redraw()

    def action_reset(self) -> None:
        self.landscape.reset()
        self.running = False
        self.version += 1
        self.redraw()

    def write_csv(self) -> Path:
        self.written = self.landscape.write_csv(self.run_dir / "trajectories.csv")
        return self.written

    def action_export(self) -> None:
        path = self.write_csv()
        self.notify(str(path), title="wrote trajectories.csv")
        self.redraw()

    async def action_quit(self) -> None:
        self.write_csv()
        self.exit(return_code=0)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(actions.help_entries(self.ACTIONS)))

    def action_screenshot(self) -> None:
        self.deliver_screenshot()

    def deliver_screenshot(self, filename=None, path=None, time_format=None) -> str | None:
        """The screenshot in the run directory (a server seldom has ~/Downloads)."""
        try:
            saved = self.save_screenshot(filename, path or str(self.run_dir), time_format)
        except OSError as e:
            self.notify(f"could not save the screenshot: {e}", title="screenshot", severity="error")
            return None
        self.notify(saved, title="screenshot saved")
        return saved

    def get_system_commands(self, screen):
        yield from actions.palette(self.ACTIONS, self.run_action, self.action_change_theme)

    # ---- drawing ------------------------------------------------------------------------

    def redraw(self) -> None:
        if not self.is_mounted:
            return
        self._draw_header()
        self._draw_paths()
        self._draw_note()
        plot = self.query_one("#ls-plot", PlotView)
        if plot.stale(self.version):
            plot.redraw(self.version)

    def _draw_header(self) -> None:
        steps = max(t.steps for t in self.landscape.trajectories)
        state, style = ("running", "bold green") if self.running else ("paused", "bold yellow")
        if not self._active():
            state, style = "done", "bold blue"
        t = Text.assemble(
            (" deeptui ", "bold reverse"),
            " ",
            (self.preset, "bold"),
            "  ",
            (f"● {state}", style),
            f"  step {steps}/{self.landscape.steps}  ",
            (f"SGD stable for lr < {self.landscape.quad.stability_limit():.4g}", "dim"),
        )
        self.query_one("#ls-header", Static).update(t)

    def _draw_paths(self) -> None:
        t = Text()
        for i, tr in enumerate(self.landscape.trajectories):
            cur = i == self.landscape.current
            t.append("▶" if cur else " ", "bold")
            t.append("━ ", "#%02x%02x%02x" % path_color(i))  # the path's colour in the plot
            t.append(tr.label, "bold reverse" if cur else "bold")
            text, style = verdict(self.landscape, tr)
            t.append(f" {text}\n", style)
            _, _, _, loss = tr.last
            t.append(f"  step {tr.steps:>3} loss {loss:.1e} dist {tr.distance():.1e}\n", "" if cur else "dim")
        t.rstrip()
        self.query_one("#ls-paths", Static).update(t)

    def _draw_note(self) -> None:
        t = Text(str(self.run_dir), "dim")
        if self.written is not None:
            t = Text("wrote ", "dim")
            t.append(str(self.written))
        self.query_one("#ls-note", Static).update(t)


def run_landscape_dashboard(run: LandscapeRun, run_dir: str | Path, preset: str = "landscape") -> int:
    """The dashboard in this terminal; trajectories.csv is written on every way out.
    0 when the user quit; 128+N when signal N ended it."""
    app = LandscapeApp(run, run_dir, preset=preset, handle_signals=True)
    try:
        app.run()
    finally:
        path = app.write_csv()  # also after a crash or signal: the paths so far are kept
    print(f"wrote {path}")
    return app.signal_exit or 0
