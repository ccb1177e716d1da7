"""The dashboard's plots as plotext text: train and test loss with markers, accuracy, layers by depth.

Each series is downsampled to about twice the plot's width, so a 100-epoch run draws as fast as
a short one (plotext costs ~10 us per point per series).
"""

from __future__ import annotations

import math

# plotext is imported with the dashboard, not at the first plot: the plots' redraw cadence is set by
# what a rebuild costs, and a first rebuild that pays for the import would slow them for seconds.
from plotext._figure import _figure_class

from .view import RunView

COLORS = {
    "train": (90, 150, 255),
    "smoothed": (255, 170, 40),
    "test": (60, 210, 100),
    "test_train": (255, 105, 80),  # the test set evaluated in train mode
    "optimizer": (225, 90, 225),
    "freeze": (40, 210, 210),
    "mode": (235, 215, 40),
    "restore": (240, 70, 70),
}
MARKER_COLORS = {k: COLORS[k] for k in ("optimizer", "freeze", "mode", "restore")}


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


def finite(xs: list, ys: list, positive: bool = False) -> tuple[list, list]:
    keep = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y) and (y > 0 or not positive)]
    return [p[0] for p in keep], [p[1] for p in keep]


def figure(width: int, height: int):
    fig = _figure_class()
    fig.plotsize(max(width, 10), max(height, 4))
    fig.theme("clear")
    fig.frame(False)
    fig.xaxes(True, False)
    fig.yaxes(True, False)
    return fig


def empty_plot(width: int, height: int, message: str) -> str:
    return "\n" * (height // 2) + message.center(width)


def loss_plot(view: RunView, width: int, height: int, log_scale: bool = False) -> str:
    """Train loss (raw and EMA) per interval, test loss per epoch, markers; plotext ANSI text."""
    n = max(8, 2 * width)
    tx, ty = finite(view.train_loss.x, view.train_loss.y, positive=log_scale)
    if not tx:
        return empty_plot(width, height, "waiting for the first training loss ...")
    fig = figure(width, height)
    ex, ey = finite(view.train_loss_ema.x, view.train_loss_ema.y, positive=log_scale)
    vx, vy = finite(view.test_loss.x, view.test_loss.y, positive=log_scale)
    if log_scale:
        fig.yscale("log")
    x, y = downsample(tx, ty, n)
    fig.plot(x, y, marker="braille", color=COLORS["train"])
    x, y = downsample(ex, ey, n)
    fig.plot(x, y, marker="braille", color=COLORS["smoothed"])
    if vx:
        fig.plot(vx, vy, marker="hd" if len(vx) > 1 else "dot", color=COLORS["test"])
    for step, kind in view.markers[-50:]:
        if tx[0] <= step <= tx[-1] + 1:
            fig.vertical_line(step, color=MARKER_COLORS.get(kind, (200, 200, 200)))
    return fig.build()


def accuracy_plot(view: RunView, width: int, height: int) -> str:
    """Train accuracy per interval and test accuracy per epoch, in %."""
    n = max(8, 2 * width)
    tx, ty = finite(view.train_acc.x, view.train_acc.y)
    if not tx:
        return empty_plot(width, height, "waiting for the first accuracy ...")
    fig = figure(width, height)
    x, y = downsample(tx, ty, n)
    fig.plot(x, y, marker="braille", color=COLORS["train"])
    for series, color in ((view.test_acc, "test"), (view.test_acc_train, "test_train")):
        vx, vy = finite(series.x, series.y)
        if vx:
            fig.plot(vx, vy, marker="hd" if len(vx) > 1 else "dot", color=COLORS[color])
    return fig.build()


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
    marks = {"optimizer": "│opt", "freeze": "│freeze", "mode": "│mode", "test_train": "━ test in train mode"}
    if compact:
        marks.update(smoothed="━avg", train="━train", test="━test", test_train="━test·train mode")
    return " ".join(f"[{hex_color(n)}]{marks.get(n, '━ ' + n)}[/]" for n in names)
