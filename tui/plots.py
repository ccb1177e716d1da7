"""The dashboard's plots as plotext text: train and test loss with markers, accuracy.

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
    vx, vy = finite(view.test_acc.x, view.test_acc.y)
    if vx:
        fig.plot(vx, vy, marker="hd" if len(vx) > 1 else "dot", color=COLORS["test"])
    return fig.build()


def legend(*names: str, compact: bool = False) -> str:
    """Textual markup naming each series / marker in its plot colour (for a border subtitle);
    compact: short enough for the loss plot of an 80-column terminal."""
    marks = {"optimizer": "│opt", "freeze": "│freeze", "mode": "│mode"}
    if compact:
        marks.update(smoothed="━avg", train="━train", test="━test")
    return " ".join(f"[{hex_color(n)}]{marks.get(n, '━ ' + n)}[/]" for n in names)
