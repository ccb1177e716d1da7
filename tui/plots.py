"""The dashboard's plots as plotext text: train and test loss with markers, accuracy, layers by depth.

Each series is downsampled to about twice the plot's width, so a 100-epoch run draws as fast as
a short one (plotext costs ~10 us per point per series).
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left
from dataclasses import dataclass

# plotext is imported with the dashboard, not at the first plot: the plots' redraw cadence is set by
# what a rebuild costs, and a first rebuild that pays for the import would slow them for seconds.
from plotext._figure import _figure_class
from rich.markup import escape

from .view import RunView, Series

COLORS = {
    "train": (90, 150, 255),
    "smoothed": (255, 170, 40),
    "test": (60, 210, 100),
    "test_train": (255, 105, 80),  # the test set evaluated in train mode
    "optimizer": (225, 90, 225),
    "freeze": (40, 210, 210),
    "mode": (235, 215, 40),
    "lr": (255, 130, 160),
    "restore": (240, 70, 70),
    "nan": (255, 40, 40),  # where the training loss turned non-finite
}
# Each marker kind has its own glyph too, so the plot reads without colour (NO_COLOR, a log).
MARKER_GLYPHS = {"optimizer": "│", "freeze": "┃", "mode": "╎", "lr": "┊", "restore": "║", "nan": "x"}
MARKER_LABELS = {"optimizer": "opt", "freeze": "freeze", "mode": "mode", "lr": "lr", "restore": "restore", "nan": "nan"}
AUTO_LOG_SPAN = 1e3  # positive values spanning more than this factor get a log y axis by themselves


# A glyph per series, so that the plots read without colour (NO_COLOR, a log): the raw training
# line in braille dots (faint behind the smoothed one), the smoothed line in bullets, the test
# set's points as o (eval mode) and + (train mode).
GLYPHS = {"train": "braille", "smoothed": "•", "test": "o", "test_train": "+"}
LEGEND_GLYPHS = {"train": "⠤", "smoothed": "•", "test": "o", "test_train": "+"}
SMOOTHING = (0.0, 0.6, 0.9, 0.99)  # what the smoothing key cycles through (TensorBoard's slider)
X_AXES = ("step", "samples", "time")
MAX_ZOOM = 10  # the x axis shows the newest 1/2**zoom of the run, down to 1/1024
OUTLIER_SHARE = 0.02  # ignoring outliers leaves this share of points out at each end of the y axis


@dataclass(frozen=True)
class PlotOptions:
    """How the training plots are drawn: view state, never sent to the engine."""

    smoothing: float = 0.6  # weight of a debiased EMA (TensorBoard's), 0: none
    axis: str = "step"  # x: step, samples seen, or the run's clock
    zoom: int = 0  # the x axis shows the newest 1/2**zoom of the run, following it while it trains
    outliers: bool = True  # False: the y axis leaves the outermost OUTLIER_SHARE of the points out
    log_scale: bool = False  # the loss plot's y axis (it also turns log by itself, and says so)
    color: bool = True  # False under NO_COLOR: every series is told by its glyph alone

    def describe(self) -> str:
        """What the title says of these options, e.g. 'x: time · smoothing 0.9 · newest 1/4'."""
        parts = [f"x: {self.axis}"]
        if self.smoothing:
            parts.append(f"smoothing {self.smoothing:g}")
        if self.zoom:
            parts.append(f"newest 1/{2**self.zoom}")
        if not self.outliers:
            parts.append("outliers ignored")
        return " · ".join(parts)


def hex_color(name: str) -> str:
    return "#%02x%02x%02x" % COLORS[name]


def downsample(xs: list, ys: list, n: int) -> tuple[list, list]:
    """At most about n points: the mean of each of n equal runs of points; non-finite values and,
    for log plots, the caller's filtering happen before. Short series come back unchanged."""
    if n <= 0 or len(xs) <= n:
        return list(xs), list(ys)
    out_x, out_y = [], []
    size = len(xs) / n
    for i in range(n):
        a, b = int(i * size), int((i + 1) * size)
        if b <= a:
            continue
        out_x.append(xs[b - 1])
        out_y.append(sum(ys[a:b]) / (b - a))
    return out_x, out_y


def binned(xs: list, ys: list, ws: list, n: int, mean: bool = True) -> tuple[list, list]:
    """At most n points over x in bins of equal width: each bin's mean weighted by `ws` (how many
    points a Lod entry stands for), or its last value (a moving average is its own summary), at the
    bin's last x. Bounded by the entries given, not by the run's length."""
    if len(xs) <= n or n <= 0:
        return list(xs), list(ys)
    lo, span = xs[0], (xs[-1] - xs[0]) or 1.0
    out_x, out_y = [], []
    current, total, weight, last, last_y = -1, 0.0, 0.0, 0.0, 0.0
    for x, y, w in zip(xs, ys, ws):
        b = min(n - 1, int((x - lo) / span * n))
        if b != current and weight:
            out_x.append(last)
            out_y.append(total / weight if mean else last_y)
            total = weight = 0.0
        current, last, last_y = b, x, y
        total += y * w
        weight += w
    if weight:
        out_x.append(last)
        out_y.append(total / weight if mean else last_y)
    return out_x, out_y


def smoothed(ys: list, weight: float, rows: list | None = None) -> list:
    """TensorBoard's smoothing: an exponential moving average over the run's rows, debiased so
    that its start is not pulled towards zero. With `rows` (how many rows each y stands for: a
    Lod bucket's mean stands for its n rows) a y counts as that many rows; a non-finite y is
    skipped (nan in its place)."""
    out, last, k = [], 0.0, 0.0
    for y, n in zip(ys, rows or itertools.repeat(1)):
        if not math.isfinite(y):
            out.append(math.nan)
            continue
        decay = weight**n
        last = last * decay + (1 - decay) * y
        k += n
        out.append(last / (1 - weight**k))
    return out


def plottable(xs: list, ys: list, *more: list, positive: bool = False) -> list[list]:
    """The points a plot can draw (a finite y; on a log axis a positive one) and the values that
    go with them in `more` (their weights, their moving average), as columns."""
    keep = [p for p in zip(xs, ys, *more) if math.isfinite(p[1]) and (p[1] > 0 or not positive)]
    return [list(c) for c in zip(*keep)] if keep else [[] for _ in range(2 + len(more))]


def figure(width: int, height: int):
    fig = _figure_class()
    fig._limit_size(False, False)  # the widget's size, not capped at the terminal plotext sees (80x24 in a test)
    fig.plotsize(max(width, 10), max(height, 4))
    fig.theme("clear")
    fig.frame(False)
    fig.xaxes(True, False)
    fig.yaxes(True, False)
    return fig


def draw(fig, xs, ys, marker: str, color, lines: bool = True, faint: bool = False) -> None:
    """A series; faint: dimmed, behind the others (plotext's plot() drops the style argument)."""
    fig._draw(
        xs, ys, lines=lines, marker=marker, color=color, style="dim" if faint else None,
        xside=None, yside=None, fillx=None, filly=None, label=None,
    )  # fmt: skip


def empty_plot(width: int, height: int, message: str) -> str:
    return "\n" * (height // 2) + message.center(width)


def fmt_tick(v: float) -> str:
    """An axis label that fits: 0.35, 2.3, 1.2k, 1.0e+26 (one value; an axis uses tick_labels)."""
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e5 or a < 1e-3:
        return f"{v:.1e}"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


TIME_UNITS = (("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0))
COUNT_UNITS = (("", 1.0), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12))


def tick_labels(ticks: list[float], kind: str = "value", log: bool = False) -> list[str]:
    """One notation for a whole axis, with as few decimals as keep the labels apart: counts in k,
    M, G (steps, samples), the clock in one unit (s, m, h or d), values plain, in k, or as powers
    of ten when they span orders of magnitude; never 1.0e+08 beside 10k."""
    if not ticks:
        return []
    top = max(abs(t) for t in ticks)
    nonzero = [abs(t) for t in ticks if t]
    if kind == "time":
        unit, size = next(((u, s) for u, s in reversed(TIME_UNITS) if top >= 2 * s), TIME_UNITS[0])
        return _unique(ticks, lambda v, d: f"{v / size:.{d}f}{unit}")
    if kind == "count" and top < 1e15:  # up to 9999 in full, then 10k, 10M, 10G
        unit, size = next(((u, s) for u, s in reversed(COUNT_UNITS) if top >= 10 * s), COUNT_UNITS[0])
        return _unique(ticks, lambda v, d: f"{v / size:.{d}f}{unit}")
    small = min(nonzero, default=1.0)
    if log and all(t > 0 and math.log10(t) == round(math.log10(t)) for t in ticks):  # powers of ten
        if small >= 1e-3 and top < 1e5:
            return [f"{t:g}" for t in ticks]
        return [f"{t:.0e}" for t in ticks]
    if top >= 1e5 or (top < 1e-2 and small < 1e-3):
        return _unique(ticks, lambda v, d: f"{v:.{d}e}" if v else "0", start=1)
    if top >= 1e3:
        return _unique(ticks, lambda v, d: f"{v / 1e3:.{d}f}k", start=_decimals([t / 1e3 for t in ticks]))
    return _unique(ticks, lambda v, d: f"{v:.{d}f}", start=_decimals(ticks))


def _decimals(values: list[float]) -> int:
    """The fewest decimals that write each value exactly (-0.5 is not -0: labels unique but wrong)."""
    return next((d for d in range(7) if all(abs(v * 10**d - round(v * 10**d)) < 1e-6 for v in values)), 6)


def _unique(ticks: list[float], fmt, start: int = 0) -> list[str]:
    for d in range(start, 7):
        labels = [fmt(t, d) for t in ticks]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def nice_ticks(lo: float, hi: float, n: int = 4, integer: bool = False, at_least: int = 3) -> list[float]:
    """About n round values (1, 2 or 5 times a power of ten apart) from lo to hi; at least
    `at_least` when the range allows (an integer axis of fewer values gives what it has)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(n, 1)
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if step * m >= raw)
    while True:
        s = max(1.0, round(step)) if integer else step
        first = math.ceil(lo / s - 1e-9) * s
        ticks = [first + i * s + 0.0 for i in range(int((hi - first) / s + 1e-9) + 1)]  # + 0.0: no -0
        if len(ticks) >= at_least or (integer and s <= 1):
            return ticks
        step /= 2.5 if str(step)[0] == "5" else 2


def log_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """Powers of ten from lo to hi, thinned to about n; round values when fewer than two powers
    of ten lie in the range (a loss from 2.6 to 1.5: 1.6, 1.8, ... not 2.60616 and 1.52608)."""
    a, b = math.ceil(math.log10(lo)), math.floor(math.log10(hi))
    if b <= a:
        return [t for t in nice_ticks(lo, hi, n, at_least=2) if t > 0] or [lo, hi]
    every = max(1, math.ceil((b - a + 1) / n))
    return [10.0**k for k in range(a, b + 1, every)]


def wants_log(ys: list[float]) -> bool:
    """Positive values that span orders of magnitude (a loss blowing up to 1e26, then back)."""
    pos = [y for y in ys if math.isfinite(y) and y > 0]
    return bool(pos) and max(pos) / min(pos) > AUTO_LOG_SPAN


def x_kind(axis: str) -> str:
    return "time" if axis == "time" else "count"


def axes(fig, xs: list[float], ys: list[float], log_y: bool = False, height: int = 20, axis: str = "step") -> None:
    """x ticks (whole steps or samples, or the clock in one unit; at least 3) and y labels in one
    notation, so that a huge value cannot take the plot and no label repeats."""
    if xs:
        lo, hi = min(xs), max(xs)
        if hi - lo < 2 and axis != "time":  # one or two points: an axis of three whole numbers around them
            lo, hi = math.floor(lo) - 1, math.ceil(hi) + 1
            fig.xlim(lo, hi)
        elif hi <= lo:
            lo, hi = lo - 1, hi + 1
            fig.xlim(lo, hi)
        ticks = nice_ticks(lo, hi, 4, integer=axis != "time")
        fig.xticks(ticks, tick_labels(ticks, x_kind(axis)))
    if ys:
        lo, hi = min(ys), max(ys)
        rows = max(1, height - 2)  # the x axis and its labels take two
        n = max(2, min(6, rows // 2))
        ticks = log_ticks(lo, hi, n) if log_y else nice_ticks(lo, hi, n, at_least=2)
        while len(ticks) > (rows + 1) // 2:  # a row between labels: two never share a row
            ticks = ticks[::2]
        fig.yticks(ticks, tick_labels(ticks, "value", log=log_y))


def loss_log_scale(view: RunView, asked: bool) -> bool:
    """The loss plot's y axis is logarithmic when asked (l) or when its values span orders of
    magnitude (the Lod keeps its finite positive range as points come: no scan)."""
    lod = view.curves.train.lod
    return asked or (lod.hi_pos > 0 and lod.hi_pos / lod.lo_pos > AUTO_LOG_SPAN)


def loss_title(view: RunView, opts: PlotOptions | bool = False) -> str:
    opts = opts if isinstance(opts, PlotOptions) else PlotOptions(log_scale=bool(opts))
    scale = "log y · " if opts.log_scale else "log y, auto · " if loss_log_scale(view, False) else ""
    return f"loss ({scale[:-3]}) · {opts.describe()}" if scale else f"loss · {opts.describe()}"


def accuracy_title(opts: PlotOptions) -> str:
    return f"accuracy % · {opts.describe()}"


def marker_kinds(view: RunView) -> tuple[str, ...]:
    """The loss plot's marker kinds for its legend: a rewind's and a non-finite loss's once seen."""
    seen = {kind for _, kind in view.markers}
    return ("optimizer", "freeze", "mode", "lr", *(k for k in ("restore", "nan") if k in seen))


class Window:
    """The part of the run a plot shows: its x axis, zoomed to the newest 1/2**zoom; its train
    points come from the run's Lod (bounded: the plot costs what its width costs)."""

    def __init__(self, view: RunView, opts: PlotOptions):
        self.view, self.opts = view, opts
        lod = view.curves.train.lod
        self.steps = lod.column("step")
        self.x = self.steps if opts.axis == "step" else lod.column(opts.axis)
        self.weights = lod.weights()
        self.lod = lod
        self.start = 0
        if self.x and opts.zoom:
            x0, x1 = self.x[0], self.x[-1]
            self.start = bisect_left(self.x, x1 - (x1 - x0) / 2**opts.zoom)
        self.lo = self.x[self.start] if self.x else 0.0
        self.hi = self.x[-1] if self.x else 0.0

    def at_step(self, step: float) -> float:
        """Where a step lies on this x axis (markers, test rows)."""
        if self.opts.axis == "step" or not self.steps:
            return step
        i = min(bisect_left(self.steps, step - 1e-9), len(self.steps) - 1)
        return self.x[i]

    def train(self, value: str, n: int, positive: bool = False, smoothing: float = 0.0) -> tuple[list, list, list]:
        """The value's points in the window, at most n of them, and with `smoothing` their moving
        average: taken over every row of the run before binning, as TensorBoard smooths (after
        binning, its strength would follow the plot's width and the run's length)."""
        column = self.lod.column(value)
        smooth = smoothed(column, smoothing, self.weights) if smoothing else column
        at = self.start
        xs, ys, ss, ws = plottable(self.x[at:], column[at:], smooth[at:], self.weights[at:], positive=positive)
        if not xs:
            return [], [], []
        bx, by = binned(xs, ys, ws, n)
        return bx, by, (binned(xs, ss, ws, n, mean=False)[1] if smoothing else [])

    def tests(self, mode: str, value: str, n: int, positive: bool = False) -> tuple[list, list]:
        rows = self.view.curves.tests[mode]
        xs, ys = [], []
        for ev in rows:
            x = ev.time_s if self.opts.axis == "time" else self.at_step(ev.step)
            y = ev.test_loss if value == "loss" else 100.0 * ev.test_accuracy
            if x >= self.lo and math.isfinite(y) and (y > 0 or not positive):
                xs.append(x)
                ys.append(y)
        return downsample(xs, ys, n)


def y_range(ys: list[float], opts: PlotOptions, log_scale: bool = False) -> tuple[float, float]:
    """The y axis's range: all the points, or without the outermost ones (ignore outliers); on
    a log axis the margin is a factor (a margin below zero left the log plot empty)."""
    if opts.outliers or len(ys) < 20:
        return min(ys), max(ys)
    s = sorted(ys)
    k = int(len(s) * OUTLIER_SHARE)
    lo, hi = s[k], s[-1 - k]
    if log_scale:
        factor = (hi / lo) ** 0.05 if hi > lo else 1.1
        return lo / factor, hi * factor
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
    return lo - pad, hi + pad


def color_of(name: str, opts: PlotOptions):
    return COLORS.get(name, (200, 200, 200)) if opts.color else "default"


def training_plot(view: RunView, width: int, height: int, value: str, opts: PlotOptions, log_scale: bool) -> str:
    """The train series (raw, faint when smoothed; smoothed), the test points by mode, and for
    the loss the markers; x and zoom from opts. plotext ANSI text."""
    n = max(8, 2 * width)
    win = Window(view, opts)
    smooth = opts.smoothing if opts.smoothing > 0 else 0.0
    tx, ty, ts = win.train(value, n, positive=log_scale, smoothing=smooth)
    if not tx:
        return ""
    fig = figure(width, height)
    if log_scale:
        fig.yscale("log")
    tests = [
        (name, *win.tests(mode, value, n, positive=log_scale))
        for mode, name in (("eval", "test"), ("train", "test_train"))
    ]
    xs = tx + [x for _, vx, _ in tests for x in vx]
    ys = ty + [y for _, _, vy in tests for y in vy]
    lo, hi = y_range(ys, opts, log_scale)
    if not opts.outliers:  # plotext takes a log axis's limits as powers of ten (its data it scales itself)
        fig.ylim(*((math.log10(lo), math.log10(hi)) if log_scale else (lo, hi)))
        ys = [lo, hi]
    if value == "loss":  # behind the curves
        markers(fig, view, win, width, lo, hi, opts)
    smooth = bool(ts) and len(ty) > 1
    draw(fig, tx, ty, GLYPHS["train"], color_of("train", opts), faint=smooth)
    if smooth:
        draw(fig, tx, ts, GLYPHS["smoothed"], color_of("smoothed", opts))
    for name, vx, vy in tests:
        if vx:
            draw(fig, vx, vy, GLYPHS[name], color_of(name, opts), lines=False)
    axes(fig, xs, ys, log_scale, height, opts.axis)
    return fig.build()


def markers(fig, view: RunView, win: Window, width: int, lo: float, hi: float, opts: PlotOptions) -> None:
    """A vertical line per marker with its own glyph; markers that fall in one column are drawn
    side by side, one column apart, so that none hides another."""
    if hi <= lo or win.hi <= win.lo:
        return
    column = (win.hi - win.lo) / max(1, width - 8)  # about one character of the plot
    taken: set[int] = set()
    for step, kind in view.markers[-50:]:
        x = win.at_step(step)
        if not win.lo <= x <= win.hi + column:
            continue
        col = round((x - win.lo) / column)
        while col in taken:
            col += 1
        taken.add(col)
        x = win.lo + col * column
        draw(fig, [x, x], [lo, hi], MARKER_GLYPHS.get(kind, "│"), color_of(kind, opts))


def loss_plot(view: RunView, width: int, height: int, opts: PlotOptions | bool = False) -> str:
    """Train loss (raw and smoothed) per interval, test loss per evaluation, markers."""
    opts = opts if isinstance(opts, PlotOptions) else PlotOptions(log_scale=bool(opts))
    log_scale = loss_log_scale(view, opts.log_scale)
    text = training_plot(view, width, height, "loss", opts, log_scale) if view.curves.has_train else ""
    if text:
        return text
    if view.curves.has_train:
        return empty_plot(width, height, f"training loss is {view.curves.last_loss}: nothing finite to plot yet")
    return empty_plot(width, height, "waiting for the first training loss ...")


def accuracy_plot(view: RunView, width: int, height: int, opts: PlotOptions | None = None) -> str:
    """Train accuracy per interval and test accuracy per evaluation, in %."""
    text = training_plot(view, width, height, "acc", opts or PlotOptions(), False) if view.curves.has_train else ""
    return text or empty_plot(width, height, "waiting for the first accuracy ...")


# The per-layer views of the d key: (title, log scale) per LayerStats field.
DEPTH_VIEWS = {
    "grad_norm": ("gradient norm", True),
    "update_ratio": ("update / weight", True),
    "weight_norm": ("weight norm", True),
    "activation_std": ("activation std", True),
    "activation_mean": ("activation mean", False),
}


def depth_plot(
    profiles: list[tuple[tuple, tuple[int, int, int]]], width: int, height: int, log_scale: bool = True
) -> str:
    """Values per layer against depth (x: 0 is the input side), one (values, colour) per run: bars
    for one run, lines for several. On a log scale the y axis is in powers of ten, so a gradient
    that vanishes or explodes with depth shows as a slope of whole decades."""
    shown = []
    for values, color in profiles:
        pts = [(i, v) for i, v in enumerate(values) if math.isfinite(v) and (v > 0 or not log_scale)]
        if pts:
            shown.append(([i for i, _ in pts], [math.log10(v) if log_scale else v for _, v in pts], color))
    if not shown:
        return empty_plot(width, height, "waiting for layer statistics (log.layers_interval) ...")
    fig = figure(width, height)
    floor = 0.0
    if log_scale:
        lo = math.floor(min(min(y) for _, y, _ in shown))
        hi = max(math.ceil(max(max(y) for _, y, _ in shown)), lo + 1)
        floor = lo
        every = max(1, math.ceil((hi - lo) / max(1, height // 3)))
        ticks = list(range(0, hi - lo + 1, every))
        fig.yticks(ticks, [f"1e{lo + t}" for t in ticks])
        fig.ylim(0, hi - lo)
    else:  # round values, evenly apart (plotext's own ticks were 0.13, -0.14, -0.40, -0.93 ...)
        ys = [v for _, y, _ in shown for v in y] + [0.0]  # the bars stand on 0
        ticks = nice_ticks(min(ys), max(ys), max(2, min(6, (height - 2) // 2)), at_least=2)
        fig.yticks(ticks, tick_labels(ticks))
    n = max(len(values) for values, _ in profiles)
    if len(shown) == 1:
        x, y, color = shown[0]
        fig.bar(x, [v - floor for v in y], color=color, width=0.6)
    else:
        for x, y, color in shown:
            fig.plot(x, [v - floor for v in y], marker="hd", color=color)
    step = max(1, math.ceil(n / max(1, width // 6)))
    fig.xticks(list(range(0, n, step)))
    return fig.build()


def legend(*names: str, compact: bool = False) -> str:
    """Textual markup naming each series / marker in its plot colour (for a border subtitle);
    compact: short enough for the loss plot of an 80-column terminal."""
    marks = {kind: MARKER_GLYPHS[kind] + label for kind, label in MARKER_LABELS.items()}
    marks.update({n: f"{g} {n}" for n, g in LEGEND_GLYPHS.items()}, test_train="+ test in train mode")
    if compact:
        marks.update(smoothed="•avg", train="⠤train", test="o test", test_train="+test·train mode")
    return " ".join(f"[{hex_color(n)}]{escape(marks.get(n, '━ ' + n))}[/]" for n in names)


# One colour per compared run (repeats after six).
RUN_COLORS = [(90, 150, 255), (255, 170, 40), (60, 210, 100), (225, 90, 225), (240, 70, 70), (40, 210, 210)]


def run_color(i: int) -> tuple[int, int, int]:
    return RUN_COLORS[i % len(RUN_COLORS)]


# Each run's own glyph as well as its colour: without colour (NO_COLOR, a colour-blind reader)
# the runs are still told apart. The plot's marker, and the legend's character for it.
RUN_GLYPHS = (("braille", "⠤"), ("•", "•"), ("o", "o"), ("+", "+"), ("x", "x"), ("*", "*"), ("#", "#"), ("@", "@"))


def run_glyph(i: int) -> tuple[str, str]:
    return RUN_GLYPHS[i % len(RUN_GLYPHS)]


def overlay_plot(
    curves: list[tuple[str, Series]], width: int, height: int, log_scale: bool = False, axis: str = "step"
) -> str:
    """Each run's series (e.g. train loss against samples seen), one colour per run; plotext text.
    Each is binned to about twice the plot's width first: a redraw costs what the plot's size costs."""
    n = max(8, 2 * width)
    fig = None
    all_x, all_y = [], []
    for i, (_, s) in enumerate(curves):
        xs, ys, ws = plottable(s.x, s.y, s.w or [1.0] * len(s.x), positive=log_scale)
        if not xs:
            continue
        if fig is None:
            fig = figure(width, height)
            if log_scale:
                fig.yscale("log")
        x, y = binned(xs, ys, ws, n)
        all_x += x
        all_y += y
        fig.plot(x, y, marker=run_glyph(i)[0], color=run_color(i))
    if fig is None:
        return empty_plot(width, height, "waiting for the first training loss ...")
    axes(fig, all_x, all_y, log_scale, height, axis)
    return fig.build()


def overlay_legend(labels: list[str]) -> str:
    """Textual markup naming each run by its glyph in its colour; 'batch_size ⠤ 1 • 10' when the
    labels share their key, so that four runs fit under an 80-column plot."""
    keys = {label.split("=", 1)[0] for label in labels}
    if len(keys) == 1 and all("=" in label for label in labels):
        names, head = [label.split("=", 1)[1] for label in labels], f"{keys.pop()} "
    else:
        names, head = labels, ""

    def hex_of(i: int) -> str:
        return "#%02x%02x%02x" % run_color(i)  # not applied to the names: a run's name may hold a %

    shown = (f"[{hex_of(i)}]{escape(run_glyph(i)[1])} {escape(n)}[/]" for i, n in enumerate(names))
    return escape(head) + " ".join(shown)
