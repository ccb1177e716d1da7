"""The dashboard's plots as plotext text: train and test loss with markers, accuracy, layers by depth.

Each series is downsampled to about twice the plot's width, so a 100-epoch run draws as fast as
a short one (plotext costs ~10 us per point per series).
"""

from __future__ import annotations

import math

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


def fmt_tick(v: float) -> str:
    """An axis label that fits: 0.35, 2.3, 1.2k, 1.0e+26."""
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e5 or a < 1e-3:
        return f"{v:.1e}"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 4, integer: bool = False) -> list[float]:
    """About n round values (1, 2 or 5 times a power of ten apart) from lo to hi."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(n, 1)
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if step * m >= raw)
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """Powers of ten from lo to hi, thinned to about n."""
    a, b = math.ceil(math.log10(lo)), math.floor(math.log10(hi))
    if b < a:
        return [lo, hi]
    every = max(1, math.ceil((b - a + 1) / n))
    return [10.0**k for k in range(a, b + 1, every)]


def wants_log(ys: list[float]) -> bool:
    """Positive values that span orders of magnitude (a loss blowing up to 1e26, then back)."""
    pos = [y for y in ys if math.isfinite(y) and y > 0]
    return bool(pos) and max(pos) / min(pos) > AUTO_LOG_SPAN


def axes(fig, xs: list[float], ys: list[float], log_y: bool = False, height: int = 20) -> None:
    """Integer x ticks (steps) and compact y labels, so that a huge value cannot take the plot."""
    if xs:
        ticks = nice_ticks(min(xs), max(xs), 4, integer=True)
        fig.xticks(ticks, [fmt_tick(t) for t in ticks])
    if ys:
        lo, hi = min(ys), max(ys)
        n = max(3, min(6, height // 3))
        ticks = log_ticks(lo, hi, n) if log_y else nice_ticks(lo, hi, n)
        fig.yticks(ticks, [fmt_tick(t) for t in ticks])


def loss_log_scale(view: RunView, asked: bool) -> bool:
    """The loss plot's y axis is logarithmic when asked (l) or when its values span orders of
    magnitude (the Lod keeps its finite positive range as points come: no scan)."""
    lod = view.curves.train.lod
    return asked or (lod.hi_pos > 0 and lod.hi_pos / lod.lo_pos > AUTO_LOG_SPAN)


def loss_title(view: RunView, log_scale: bool) -> str:
    if log_scale:
        return "loss (log y) · x: step"
    return "loss (log y, auto) · x: step" if loss_log_scale(view, False) else "loss · x: step"


def marker_kinds(view: RunView) -> tuple[str, ...]:
    """The loss plot's marker kinds for its legend: a rewind's and a non-finite loss's once seen."""
    seen = {kind for _, kind in view.markers}
    return ("optimizer", "freeze", "mode", "lr", *(k for k in ("restore", "nan") if k in seen))


def loss_plot(view: RunView, width: int, height: int, log_scale: bool = False) -> str:
    """Train loss (raw and EMA) per interval, test loss per epoch, markers; plotext ANSI text."""
    n = max(8, 2 * width)
    log_scale = loss_log_scale(view, log_scale)
    tx, ty = finite(view.curves.train_loss.x, view.curves.train_loss.y, positive=log_scale)
    if not tx:
        if view.curves.train_loss:
            return empty_plot(width, height, f"training loss is {view.curves.last_loss}: nothing finite to plot yet")
        return empty_plot(width, height, "waiting for the first training loss ...")
    fig = figure(width, height)
    vx, vy = finite(view.curves.test_loss.x, view.curves.test_loss.y, positive=log_scale)
    if log_scale:
        fig.yscale("log")
    x, y = downsample(tx, ty, n)
    fig.plot(x, y, marker="braille", color=COLORS["train"])
    if vx:
        fig.plot(vx, vy, marker="hd" if len(vx) > 1 else "dot", color=COLORS["test"])
    ys = ty + vy
    lo, hi = min(ys), max(ys)
    for step, kind in view.markers[-50:]:
        if tx[0] <= step <= tx[-1] + 1:
            fig.plot(
                [step, step], [lo, hi], marker=MARKER_GLYPHS.get(kind, "│"), color=COLORS.get(kind, (200, 200, 200))
            )
    axes(fig, tx + vx, ys, log_scale, height)
    return fig.build()


def accuracy_plot(view: RunView, width: int, height: int) -> str:
    """Train accuracy per interval and test accuracy per epoch, in %."""
    n = max(8, 2 * width)
    tx, ty = finite(view.curves.train_acc.x, view.curves.train_acc.y)
    if not tx:
        return empty_plot(width, height, "waiting for the first accuracy ...")
    fig = figure(width, height)
    x, y = downsample(tx, ty, n)
    fig.plot(x, y, marker="braille", color=COLORS["train"])
    xs, ys = list(tx), list(ty)
    for series, color in ((view.curves.test_acc, "test"), (view.curves.test_acc_train, "test_train")):
        vx, vy = finite(series.x, series.y)
        if vx:
            fig.plot(vx, vy, marker="hd" if len(vx) > 1 else "dot", color=COLORS[color])
            xs, ys = xs + vx, ys + vy
    axes(fig, xs, ys, height=height)
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
    marks = {kind: MARKER_GLYPHS[kind] + label for kind, label in MARKER_LABELS.items()}
    marks["test_train"] = "━ test in train mode"
    if compact:
        marks.update(smoothed="━avg", train="━train", test="━test", test_train="━test·train mode")
    return " ".join(f"[{hex_color(n)}]{marks.get(n, '━ ' + n)}[/]" for n in names)


# One colour per compared run (repeats after six).
RUN_COLORS = [(90, 150, 255), (255, 170, 40), (60, 210, 100), (225, 90, 225), (240, 70, 70), (40, 210, 210)]


def run_color(i: int) -> tuple[int, int, int]:
    return RUN_COLORS[i % len(RUN_COLORS)]


def overlay_plot(curves: list[tuple[str, Series]], width: int, height: int, log_scale: bool = False) -> str:
    """Each run's series (e.g. train loss against samples seen), one colour per run; plotext text."""
    n = max(8, 2 * width)
    fig = None
    all_x, all_y = [], []
    for i, (_, s) in enumerate(curves):
        x, y = finite(s.x, s.y, positive=log_scale)
        if not x:
            continue
        if fig is None:
            fig = figure(width, height)
            if log_scale:
                fig.yscale("log")
        all_x += x
        all_y += y
        x, y = downsample(x, y, n)
        fig.plot(x, y, marker="braille", color=run_color(i))
    if fig is None:
        return empty_plot(width, height, "waiting for the first training loss ...")
    axes(fig, all_x, all_y, log_scale, height)
    return fig.build()


def overlay_legend(labels: list[str]) -> str:
    """Textual markup naming each run in its colour; 'batch_size ━ 1 ━ 10' when the labels share
    their key, so that four runs fit under an 80-column plot."""
    keys = {label.split("=", 1)[0] for label in labels}
    if len(keys) == 1 and all("=" in label for label in labels):
        names, head = [label.split("=", 1)[1] for label in labels], f"{keys.pop()} "
    else:
        names, head = labels, ""
    return escape(head) + " ".join(f"[#%02x%02x%02x]━ {escape(n)}[/]" % run_color(i) for i, n in enumerate(names))
