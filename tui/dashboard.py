"""The dashboard screen: owns its widgets and draws the app's RunView into them.

Its parts are data: a list of plots and a list of side panels, each a function of the view, so
the compare dashboard is the same screen with other parts. Redraws are paced for a small CPU
machine, where every millisecond of the UI is taken from training (the GIL).
"""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, RichLog, Static

from deeptui.engine.state import RunState

from . import panels

MIN_WIDTH, MIN_HEIGHT = 80, 24
LOG_LINES = 1000  # the event log's lines kept on screen (scroll back through them)
LOG_INDENT = 6  # a wrapped log line's continuation
# While running, the plots are rebuilt at most once a second, and their rebuilds take at most 1%
# of the time: plotext takes ~15 ms for both on a laptop-class core.
PLOT_MIN_SECONDS = 1.0
PLOT_CPU_SHARE = 0.01


@dataclass(frozen=True)
class Plot:
    id: str
    build: Callable[[int, int], str]  # (width, height) -> plotext text
    version: Callable[[], int]  # changes whenever the plotted data changes
    titles: Callable[[bool], tuple[str, str]]  # compact -> (border title, border subtitle)


@dataclass(frozen=True)
class Panel:
    id: str
    render: Callable[[], Text]
    title: str
    shown: Callable[[], bool] | None = None  # None: always; else whether it takes room now


class PlotView(Static):
    """A plotext plot rendered to text; rebuilt only when its data or size changed."""

    def __init__(self, build: Callable[[int, int], str], **kw):
        super().__init__("", **kw)
        self._build = build
        self.built_size: tuple[int, int] | None = None
        self.built_version = -1

    def redraw(self, version: int) -> None:
        w, h = self.content_size.width, self.content_size.height
        if w < 10 or h < 4:
            return
        self.update(Text.from_ansi(self._build(w, h), no_wrap=True), layout=False)
        self.built_size, self.built_version = (w, h), version

    def resized(self) -> bool:
        return self.built_size != (self.content_size.width, self.content_size.height)

    def stale(self, version: int) -> bool:
        return version != self.built_version or self.resized()


class Dashboard(Screen):
    """Header, one-line strips (the machine's figures), plots beside side panels, the error banner
    and the event log, the key footer; below 80x24 a message that says how big it needs to be."""

    def __init__(self, plots: list[Plot], side: list[Panel], strips: list[Panel] = ()):
        super().__init__()
        self.plots, self.side, self.strips = plots, side, list(strips)
        self._log: list | None = None  # the view's log list being shown, and how much of it
        self._log_shown = 0
        self._earlier: list = []  # the lines of the views shown before (a compare series' earlier runs)
        self._log_merges = 0  # the view's log.merges when last drawn: a merged last line is drawn again
        self._rewrap = False  # the width changed: the wrapped lines are written again
        self._plots_at = -math.inf
        self._plots_cost = 0.0  # CPU seconds the last plot rebuild took
        self._titles: dict[str, tuple] = {}  # widget id -> the titles it shows
        self.drawn_at = -math.inf

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        for strip in self.strips:
            yield Static(id=strip.id, classes="strip")
        with Vertical(id="body"):
            with Horizontal(id="main"):
                with Vertical(id="plots"):
                    for plot in self.plots:
                        yield PlotView(plot.build, id=plot.id)
                with Vertical(id="side"):
                    for panel in self.side:
                        yield Static(id=panel.id)
            yield Static(id="error")
            yield RichLog(id="log", max_lines=LOG_LINES, wrap=True, min_width=20, markup=False, auto_scroll=True)
        yield Static(id="too-small")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.apply_titles()
        self.refresh_view(True)

    def apply_titles(self, force: bool = True) -> None:
        """Border titles of every part. Unless forced (mount, resize, a change of what the plots
        show), a widget is touched only when its titles changed: they follow the view, e.g. a
        legend entry appears with the data it names."""
        compact = self.has_class("-compact")
        titles = {plot.id: plot.titles(compact) for plot in self.plots}
        titles.update({panel.id: (panel.title, None) for panel in self.side}, log=("events", None))
        for wid, (title, subtitle) in titles.items():
            if force or self._titles.get(wid) != (title, subtitle):
                self._titles[wid] = (title, subtitle)
                widget = self.query_one(f"#{wid}")
                widget.border_title, widget.border_subtitle = title, subtitle or None

    def on_resize(self, event) -> None:
        w, h = event.size.width, event.size.height
        small = w < MIN_WIDTH or h < MIN_HEIGHT
        self.set_class(small, "-too-small")
        self.set_class(w < 100 or h < 30, "-compact")
        self.apply_titles()  # shorter legends when compact
        if small:
            self.query_one("#too-small", Static).update(
                Text(
                    f"deeptui needs a terminal of at least {MIN_WIDTH}x{MIN_HEIGHT}\n"
                    f"this one is {w}x{h}: please make it larger\n\nthe run goes on; q quits",
                    justify="center",
                )
            )
        self._rewrap = True
        self.app.call_after_refresh(self.refresh_view, False, True)

    # ---- drawing ------------------------------------------------------------------------

    def refresh_view(self, force_plots: bool = False, resized: bool = False) -> None:
        """Draw the app's view: the text panels now, the plots at their own pace (after a
        resize, the plots whose size changed at once)."""
        if not self.is_mounted or self.has_class("-too-small"):
            return
        self.drawn_at = time.monotonic()
        app = self.app
        try:
            self._set(self.query_one("#header", Static), panels.header(app.view, app.elapsed(), self.size.width))
            self.apply_titles(force=False)
            for panel in (*self.strips, *self.side):
                widget = self.query_one(f"#{panel.id}", Static)
                shown = panel.shown() if panel.shown is not None else True
                if widget.display != shown:  # e.g. the timing panel, once a timing exists
                    widget.display = shown
                if shown:
                    self._set(widget, panel.render())
            self._draw_error(panels.error_banner(app.view))
            self._draw_log(app.view)
            self._draw_plots(force_plots, resized)
        except NoMatches:  # the screen is being torn down while the app exits
            pass

    def redraw_plots(self) -> None:
        """Rebuild every plot now (after a change of how they are drawn, e.g. log scale)."""
        for plot in self.plots:
            self.query_one(f"#{plot.id}", PlotView).redraw(plot.version())

    def _set(self, widget: Static, content, layout: bool = False) -> None:
        """Update a panel only when its text or styles changed (a highlight that moves changes no
        character); the panels have fixed sizes, so a repaint without a layout pass is enough (a
        layout pass of the whole screen costs milliseconds)."""
        key = content.markup if isinstance(content, Text) else str(content)
        if getattr(widget, "_deeptui_key", None) != key:
            widget._deeptui_key = key  # type: ignore[attr-defined]
            widget.update(content, layout=layout)

    def _draw_error(self, banner: Text | None) -> None:
        w = self.query_one("#error", Static)
        w.display = banner is not None
        if banner is not None:
            self._set(w, banner, layout=True)

    def restart_log(self) -> None:
        """The log from nothing: the view was started again from the whole history (show)."""
        self._log, self._earlier, self._log_shown, self._log_merges = None, [], 0, 0
        self.query_one("#log", RichLog).clear()

    def _draw_log(self, view) -> None:
        """New lines at the end; everything again (the last LOG_LINES) when the view merged its last
        line with the one before (view.EventLog) or the width changed (the lines wrap). The view
        keeps a bounded log: of a long history only as many lines as the log shows are written."""
        lines = view.log
        if lines is not self._log:  # a new view (the next run of a series) goes on below
            self._earlier = (self._earlier + list(self._log or []))[-LOG_LINES:]
            self._log, self._log_shown, self._log_merges = lines, 0, 0
        log = self.query_one("#log", RichLog)
        width = log.scrollable_content_region.width
        if width <= LOG_INDENT:  # not laid out yet: written once the log has its width (else Rich
            self._rewrap = True  # wraps them at its console's 80 columns, with no indent)
            return
        if lines.merges != self._log_merges or self._rewrap:
            self._log_merges, self._rewrap = lines.merges, False
            log.clear()
            for style, text in self._earlier[-LOG_LINES:]:
                log.write(self._wrapped(text, style, width), width=width)
            self._log_shown = max(0, lines.count - LOG_LINES)
        new = min(lines.count - self._log_shown, len(lines), LOG_LINES)
        if new <= 0:
            return
        for style, text in lines[-new:]:
            log.write(self._wrapped(text, style, width), width=width)
        self._log_shown = lines.count

    @staticmethod
    def _wrapped(text: str, style: str, width: int) -> Text:
        """A log line wrapped to the log's width, its continuation lines indented under its words."""
        if len(text) > width:
            text = "\n".join(textwrap.wrap(text, width, subsequent_indent=" " * LOG_INDENT))
        return Text(text, style=style)

    def _draw_plots(self, force: bool, resized: bool = False) -> None:
        """Rebuild the plots whose data or size changed. While training runs, not within
        PLOT_MIN_SECONDS of the last rebuild, nor before the last rebuild's CPU time is within
        PLOT_CPU_SHARE of the time since it (a wide terminal or a slow core redraws less often)."""
        views = [(self.query_one(f"#{p.id}", PlotView), p.version()) for p in self.plots]
        if not force and not any(view.stale(version) for view, version in views):
            return
        now = time.monotonic()
        running = self.app.view.state == RunState.RUNNING and not self.app.view.finished
        wait = max(PLOT_MIN_SECONDS, self._plots_cost / PLOT_CPU_SHARE)
        if not force and running and now - self._plots_at < wait:
            # A resize redraws at once only the plots whose size changed: new data still waits
            # (a resize that lands late, on a loaded machine, is no licence to rebuild them all).
            views = [(view, version) for view, version in views if resized and view.resized()]
            if not views:
                return
            force = True
        self._plots_at = now
        cpu = time.thread_time()  # CPU time: on a busy machine the wall time also counts waiting
        for view, version in views:
            if force or view.stale(version):
                view.redraw(version)
        self.apply_titles()  # a title may follow the data (the loss plot's automatic log scale)
        self._plots_cost = time.thread_time() - cpu
