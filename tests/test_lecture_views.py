"""The dashboard shows the lecture's points: the test error in train mode beside eval mode (the M
key asks for it), and the layers by depth (the d key), for one run and overlaid for a series."""

from __future__ import annotations

import math

import pytest

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.tui.app import DeeptuiApp
from deeptui.tui.compare_app import CompareApp, run_color
from deeptui.tui.plots import COLORS, depth_plot
from tests.conftest import tiny_config
from tests.fake import FakeSession
from tests.pilot import text_of, until
from tests.test_snapshots import script

NAMES = ("features.0", "converter.0", "resnet_blocks.0", "resnet_blocks.1", "fc")


def layer_stats(step: int, grad: tuple) -> E.LayerStats:
    n = len(grad)
    return E.LayerStats(9.0, 3, step, NAMES, (1.0,) * n, grad, (1e-3,) * n, (0.0,) * n, (1.0,) * (n - 1) + (math.nan,))


def ansi(rgb: tuple[int, int, int]) -> str:
    return "38;2;%d;%d;%d" % rgb


def both_modes() -> list[E.Event]:
    evs = script()
    t, epoch, step = evs[-1].time_s, evs[-1].epoch, evs[-1].step
    common = dict(optimizer="adam", optimizer_params="lr=0.05", lr=0.05, frozen=False, mode="train")
    evs.append(E.StateChanged(t, epoch, step, state="running", eval_mode="both", **common))
    evs.append(E.EpochEnd(t, epoch, step, test_loss=2.0, test_accuracy=0.45, test_error_pct=55.0, mode="train"))
    evs.append(layer_stats(step, (1e-9, 1e-7, 1e-5, 1e-3, 1e-1)))
    return evs


@pytest.mark.asyncio
async def test_the_test_error_in_train_mode_shows_beside_eval_mode_and_the_keys_ask_for_it():
    session = FakeSession(tiny_config(), both_modes())
    app = DeeptuiApp(session, clock=lambda: 100.0)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "in train mode" in text_of(app, "#run"), what="train-mode test error")
        assert "test error 30.00%" in text_of(app, "#run") and "test error 55.00% in train mode" in text_of(app, "#run")
        acc = app.screen.query_one("#accuracy")
        await until(pilot, lambda: "test in train mode" in str(acc.border_subtitle), what="legend")
        app.refresh_view(True)
        assert ansi(COLORS["test_train"]) in app.plots()[1].build(80, 12)  # the second test curve is drawn
        assert "test error 55.00% (train mode)" in text_of(app, "#log")

        await pilot.press("M")  # eval+train -> train only
        await until(pilot, lambda: any(isinstance(c, C.SetEvalMode) for c in session.sent), what="SetEvalMode")
        assert [c.mode for c in session.sent if isinstance(c, C.SetEvalMode)] == ["train"]

        # d: the accuracy plot gives way to the layers, bar per depth on a log scale, then the next view
        await pilot.press("d")
        await until(pilot, lambda: "gradient norm per layer" in str(acc.border_title), what="depth view")
        assert "at step 282" in str(acc.border_title) and "log y" in str(acc.border_title)
        assert "1e-9" in text_of(app, "#accuracy") and "1e-1" in text_of(app, "#accuracy")  # nine decades
        await pilot.press("d")
        await until(pilot, lambda: "update / weight" in str(acc.border_title), what="next view")
        for _ in range(4):
            await pilot.press("d")
        await until(pilot, lambda: str(acc.border_title).startswith("accuracy %"), what="back to accuracy")


def test_depth_plot_draws_bars_of_decades_and_skips_what_cannot_be_drawn():
    text = depth_plot([((1e-6, 1e-4, 1e-2, 0.0, math.nan), (1, 2, 3))], 60, 12)
    assert "1e-6" in text and "1e-2" in text and "█" in text
    assert "waiting" in depth_plot([], 60, 12) and "waiting" in depth_plot([((0.0, math.nan), (1, 2, 3))], 60, 12)
    lines = depth_plot([((1.0, 2.0), (1, 2, 3)), ((0.5, 4.0), (4, 5, 6))], 60, 12)  # several runs: lines
    assert ansi((1, 2, 3)) in lines and ansi((4, 5, 6)) in lines
    linear = depth_plot([((-0.5, 0.2, 0.9), (1, 2, 3))], 60, 12, log_scale=False)  # activation mean
    assert "1e" not in linear and "█" in linear


@pytest.mark.asyncio
async def test_the_compare_dashboard_overlays_each_runs_layers(tmp_path):
    cfg = tiny_config('run.compare=[ { label = "plain", "model.residual" = false }, { label = "resnet" } ]')
    from deeptui.engine.compare import variants

    runs = variants(cfg)
    sessions = []

    def make_engine(one):
        evs = script(epochs_done=1)
        evs.append(layer_stats(90, (1e-8, 1e-6, 1e-4, 1e-2, 1e-1) if not sessions else (0.5, 0.6, 0.7, 0.8, 0.9)))
        sessions.append(FakeSession(one, evs))
        return sessions[-1]

    app = CompareApp(runs, make_engine, key="model.residual")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.layer_stats[0] is not None, what="run 1's layers")
        app.layer_stats[1] = layer_stats(90, (0.5, 0.6, 0.7, 0.8, 0.9))  # as if run 2 had reported
        await pilot.press("d")
        compare = app.screen.query_one("#compare")
        await until(pilot, lambda: "each run's latest" in str(compare.border_title), what="overlay of layers")
        drawn = app.plots()[1].build(80, 12)
        assert ansi(run_color(0)) in drawn and ansi(run_color(1)) in drawn
        assert "plain" in str(compare.border_subtitle) and "resnet" in str(compare.border_subtitle)
        await pilot.press("q")
