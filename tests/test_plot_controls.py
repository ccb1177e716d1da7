"""The plots' controls (issue 21, items 3 and 4): smoothing, the x axis, zoom that follows the
newest points, ignoring outliers; series told apart without colour, markers at one step side by
side, one notation per axis, no repeated label, at least 3 x ticks."""

from __future__ import annotations

import math
import re

from rich.text import Text
from textual import events

from deeptui.engine import events as E
from deeptui.tui.plots import PlotOptions, loss_plot, smoothed
from deeptui.tui.view import RunView
from tests.conftest import tiny_config
from tests.fake import FakeSession
from tests.pilot import dashboard_of, until
from tests.test_snapshots import QuietApp, script


def view_of(events) -> RunView:
    v = RunView()
    for ev in events:
        v.apply(ev)
    return v


def row(step: int, loss: float, t: float | None = None) -> E.StepMetrics:
    return E.StepMetrics(
        t if t is not None else step * 0.5, 1, step, loss=loss, accuracy=0.5, lr=0.1, optimizer="sgd",
        frozen=False, mode="train", samples_per_s=100.0, samples_seen=64 * step, train_s=step * 0.5,
    )  # fmt: skip


def plain(text: str) -> list[str]:
    return Text.from_ansi(text).plain.splitlines()


def y_labels(lines: list[str]) -> list[str]:
    return [m.group(1) for line in lines if (m := re.match(r"^\s*(\S+)┤", line))]


def x_labels(lines: list[str]) -> list[str]:
    axis = next(i for i, line in enumerate(lines) if "└" in line)
    return lines[axis + 1].split()


def app_over(evs) -> QuietApp:
    session = FakeSession(tiny_config("run.name='quickstart'"), evs, run_dir="/runs/quickstart-20250101-000000")
    return QuietApp(session, clock=lambda: 100.0)


def loss_title(app) -> str:
    return str(dashboard_of(app).query_one("#loss").border_title)


# ---- smoothing ---------------------------------------------------------------------------------


def test_smoothing_is_a_debiased_ema():
    """TensorBoard's smoothing: a constant stays itself from the first point (an EMA that is not
    debiased starts near zero), and a step is followed at the weight's pace."""
    assert smoothed([2.0] * 5, 0.99) == [2.0] * 5 or all(math.isclose(v, 2.0) for v in smoothed([2.0] * 5, 0.99))
    ys = smoothed([0.0] * 10 + [1.0] * 10, 0.6)
    assert ys[9] == 0.0 and 0.39 < ys[10] < 0.41 and ys[-1] > 0.99


def test_smoothing_follows_the_runs_rows_whatever_the_plots_width():
    """Bug: the moving average was taken after the points were binned to about twice the plot's
    width, so its strength followed the terminal's width and the run's length: at 0.99 a loss that
    fell from 2.0 to 1.0 at row 3000 of 4000 ended at 1.63 (60 columns) or 1.44 (150 columns),
    where TensorBoard's average of the rows is back to 1.0. It is now taken over the rows (a
    bucket of older rows counting as its rows) and then binned."""
    from deeptui.tui.plots import Window

    losses = [2.0] * 3000 + [1.0] * 1000
    view = view_of(row(i + 1, loss) for i, loss in enumerate(losses))
    rows = smoothed(losses, 0.99)
    for width in (60, 150):
        opts = PlotOptions(smoothing=0.99)
        xs, raw, smooth = Window(view, opts).train("loss", 2 * width, smoothing=0.99)
        assert len(xs) <= 2 * width and len(smooth) == len(xs)
        for x, s in zip(xs, smooth):
            assert math.isclose(s, rows[int(x) - 1], abs_tol=0.01), (width, x, s, rows[int(x) - 1])
        assert smooth[-1] < 1.001 and raw[-1] == 1.0


async def test_the_smoothing_key_cycles_and_the_title_says_it():
    app = app_over(script())
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.view.step >= 280, what="the script")
        assert "smoothing 0.6" in loss_title(app)
        seen = []
        for _ in range(4):
            await pilot.press("S")
            await pilot.pause()
            seen.append(loss_title(app))
        assert ["smoothing 0.9" in seen[0], "smoothing 0.99" in seen[1], "smoothing" not in seen[2]] == [True] * 3
        assert "smoothing 0.6" in seen[3]
        app.plot = PlotOptions(smoothing=0.0)
        plot = plain(loss_plot(app.view, 80, 20, app.plot_options()))
        assert not any("•" in line for line in plot)  # no smoothed line, the raw line alone
        app.plot = PlotOptions(smoothing=0.9)
        raw = loss_plot(app.view, 80, 20, app.plot_options())
        assert "\x1b[2" in raw or ";2m" in raw  # the raw line is faint behind the smoothed one


# ---- the x axis, zoom -----------------------------------------------------------------------------


async def test_the_x_axis_key_switches_step_samples_and_time_with_units():
    app = app_over(script())
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.view.step >= 280, what="the script")
        await pilot.press("x")
        await pilot.pause()
        assert "x: samples" in loss_title(app)
        labels = x_labels(plain(loss_plot(app.view, 80, 20, app.plot_options())))
        assert len(labels) >= 3 and all(label.endswith("k") for label in labels), labels
        await pilot.press("x")
        await pilot.pause()
        assert "x: time" in loss_title(app)
        labels = x_labels(plain(loss_plot(app.view, 80, 20, app.plot_options())))
        assert len(labels) >= 3 and all(label.endswith("s") for label in labels), labels
        await pilot.press("x")
        await pilot.pause()
        assert "x: step" in loss_title(app)


async def test_zoom_keeps_the_newest_points_in_view_and_0_resets_it():
    evs = [script()[0], script()[1], *(row(s, 2.0 / s) for s in range(10, 1010, 10))]
    app = app_over(evs)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.view.step >= 1000, what="the rows")
        await pilot.press("right_square_bracket", "right_square_bracket")
        await pilot.pause()
        assert "newest 1/4" in loss_title(app)
        labels = x_labels(plain(loss_plot(app.view, 80, 20, app.plot_options())))
        assert float(labels[0]) >= 750 and float(labels[-1]) <= 1000
        for s in range(1010, 2010, 10):  # training goes on: the window follows the newest points
            app.session.events.append(row(s, 2.0 / s))
        await until(pilot, lambda: app.view.step >= 2000, what="more rows")
        labels = x_labels(plain(loss_plot(app.view, 80, 20, app.plot_options())))
        assert float(labels[0]) >= 1500 and float(labels[-1]) >= 1900
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert "newest 1/2" in loss_title(app)
        await pilot.press("0")
        await pilot.pause()
        assert "newest" not in loss_title(app)
        plot = dashboard_of(app).query_one("#loss")
        plot.post_message(events.MouseScrollUp(plot, 5, 5, 0, -1, 0, False, False, False))  # the wheel
        await until(pilot, lambda: "newest 1/2" in loss_title(app), what="the wheel's zoom")
        plot.post_message(events.MouseScrollDown(plot, 5, 5, 0, 1, 0, False, False, False))
        await until(pilot, lambda: "newest" not in loss_title(app), what="the wheel's zoom out")


# ---- outliers -----------------------------------------------------------------------------------


async def test_ignoring_outliers_leaves_a_spike_out_of_the_y_axis_and_says_so():
    evs = [
        script()[0],
        script()[1],
        *(row(s, 1.0 + 0.1 * math.sin(s) + (500.0 if s == 500 else 0)) for s in range(1, 1001)),
    ]
    app = app_over(evs)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.view.step >= 1000, what="the rows")
        top = max(float(v) for v in y_labels(plain(loss_plot(app.view, 80, 20, app.plot_options()))))
        await pilot.press("i")
        await pilot.pause()
        assert "outliers ignored" in loss_title(app)
        ignored = max(float(v) for v in y_labels(plain(loss_plot(app.view, 80, 20, app.plot_options()))))
        assert top >= 50 and ignored < 2  # the spike's bin pulled the axis up to tens; ignored, it stays near 1


# ---- without colour ---------------------------------------------------------------------------


def test_without_colour_every_series_and_marker_has_a_glyph_of_its_own():
    view = view_of(script(both=True))
    lines = plain(loss_plot(view, 100, 24, PlotOptions(color=False)))
    text = "\n".join(lines)
    assert "•" in text and "o" in text and "+" in text  # smoothed, test (eval mode), test in train mode
    assert any(0x2800 < ord(c) <= 0x28FF for c in text)  # the raw line in braille dots
    # SetMode and ScaleLearningRate at step 180: two marker columns, side by side, neither hidden
    column = {c: {line.index(c) for line in lines if c in line} for c in "╎┊"}
    assert column["╎"] and column["┊"] and column["╎"] != column["┊"]


async def test_no_color_is_honoured(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = app_over(script())
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.view.step >= 280, what="the script")
        assert app.plot_options().color is False
        assert "\x1b[38" not in loss_plot(app.view, 80, 20, app.plot_options())  # no colour codes at all


# ---- axes ---------------------------------------------------------------------------------------


def notation(label: str) -> str:
    return "e" if "e" in label else "k" if label.endswith("k") else "M" if label.endswith("M") else "plain"


def test_each_axis_has_one_notation_no_repeated_label_and_at_least_3_x_ticks():
    """Bugs: '1.0e+05' beside '50k' on one axis, '1k' three times at 200x60, a single x tick."""
    cases = {
        "up to 150k": [row(s, 150_000.0 * s / 40) for s in range(1, 41)],
        "around 1000": [row(s, 1000.0 + 0.5 * s / 40) for s in range(1, 41)],
        "tiny": [row(s, 1e-5 * (1 + s / 40)) for s in range(1, 41)],
        "two steps": [row(5, 1.0), row(6, 0.9)],
        "one row": [row(7, 1.0)],
    }
    for name, rows in cases.items():
        view = view_of([script()[0], *rows])
        for size in ((80, 18), (150, 40)):
            lines = plain(loss_plot(view, *size, PlotOptions(smoothing=0.0)))
            ys, xs = y_labels(lines), x_labels(lines)
            assert len(set(ys)) == len(ys) and len({notation(y) for y in ys}) == 1, (name, ys)
            assert len(set(xs)) == len(xs) >= 3, (name, xs)


def test_a_log_axis_keeps_its_curve_when_outliers_are_ignored_and_labels_a_narrow_range():
    """Bug: l then i left the loss plot empty (plotext takes a log axis's limits as powers of ten),
    and a log axis within one decade was labelled by its two ends, six digits each (2.60616)."""
    v = view_of(row(s, 2.6 * math.exp(-s / 300) + 0.01 * (s * 7 % 5)) for s in range(1, 200))
    for opts in (PlotOptions(log_scale=True), PlotOptions(log_scale=True, outliers=False)):
        lines = plain(loss_plot(v, 70, 14, opts))
        assert sum(line.count("•") for line in lines) > 50, (opts, lines)  # the smoothed curve is there
        labels = y_labels(lines)
        assert len(labels) >= 3 and all(len(label) <= 4 for label in labels), labels


def test_runs_side_by_side_are_told_apart_without_colour():
    """Bug: `show RUN1 RUN2` drew every run in braille, told apart by colour alone (`━ 1 ━ 2`)."""
    from deeptui.tui.plots import overlay_legend, overlay_plot
    from deeptui.tui.view import Series

    runs = [(f"lr={lr}", Series(x=list(range(1, 40)), y=[lr * 10 + 1 / s for s in range(1, 40)])) for lr in (1, 2)]
    lines = plain(overlay_plot(runs, 60, 14))
    body = "".join(line.split("┤", 1)[-1] for line in lines)
    assert any("\u2800" < c <= "\u28ff" for c in body) and "•" in body  # braille for the first, • for the second
    legend = Text.from_markup(overlay_legend([label for label, _ in runs])).plain
    assert legend == "lr ⠤ 1 • 2"


def test_the_depth_view_of_a_signed_value_has_round_evenly_spaced_ticks():
    """Bug: the activation mean's depth view was labelled 0.13, -0.14, -0.40, -0.93, -1.19, -1.46."""
    from deeptui.tui.plots import depth_plot

    values = (0.13, -0.2, -0.55, -0.9, -1.2, -1.46)
    for profiles in ([(values, (200, 200, 200))], [(values, (200, 200, 200)), ([v / 2 for v in values], (9, 9, 9))]):
        labels = y_labels(plain(depth_plot(profiles, 60, 16, log_scale=False)))
        steps = {round(float(b) - float(a), 6) for a, b in zip(labels, labels[1:])}
        assert len(labels) >= 3 and len(steps) == 1, labels
        assert all(len(label.split(".")[-1]) <= 1 for label in labels), labels  # round: -0.5, not -0.40
