"""The dashboard over the real engine on tiny data: each key changes the engine (model, optimizer)
AND the screen (widget text); quitting leaves no engine thread or DataLoader worker."""

from __future__ import annotations

import math
import multiprocessing
import threading
import time

import pytest
import torch
from textual.widgets import Input, OptionList, Static

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.tui.app import DeeptuiApp
from deeptui.tui.dashboard import Dashboard
from deeptui.tui.dialogs import ExportScreen, NanScreen, OptimizerScreen
from tests.pilot import dashboard_of, text_of, until

pytestmark = pytest.mark.asyncio

SMALL_TIMING = {"repeats": 3, "sizes": (64, 32, 32)}


def features(eng):
    return list(eng.model.features.parameters())


async def test_keys_change_the_engine_and_the_screen(make_engine, tmp_path):
    eng = make_engine("run.epochs=50")
    eng.send(C.Pause())  # the run starts paused: every key below is applied between steps
    app = DeeptuiApp(eng, timing=SMALL_TIMING)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "paused" in text_of(app, "#header"), what="paused")
        assert "tiny" in text_of(app, "#header") and "cpu" in text_of(app, "#header")
        assert "sgd" in text_of(app, "#run")

        # o: next optimizer in the preset's list (sgd -> adam); the panel follows the engine
        await pilot.press("o")
        await until(pilot, lambda: "\nadam  lr" in text_of(app, "#run"), what="adam on screen")
        assert isinstance(eng.optimizer, torch.optim.Adam)
        assert "SwitchOptimizer: sgd -> adam" in text_of(app, "#log")

        # O: pick from the list, outside the preset's choices too
        await pilot.press("O")
        await until(
            pilot, lambda: isinstance(app.screen, OptimizerScreen) and app.screen.query(OptionList), what="picker"
        )
        ol = app.screen.query_one(OptionList)
        ol.highlighted = ol.get_option_index("rmsprop")
        await pilot.press("enter")
        await until(pilot, lambda: "\nrmsprop  lr" in text_of(app, "#run"), what="rmsprop")
        assert isinstance(eng.optimizer, torch.optim.RMSprop)
        assert isinstance(app.screen, Dashboard)

        # f: features frozen by the schedule in epoch 1 -> trainable
        assert all(not p.requires_grad for p in features(eng))
        assert "features frozen" in text_of(app, "#run")
        await pilot.press("f")
        await until(pilot, lambda: "features trainable" in text_of(app, "#run"), what="trainable")
        assert all(p.requires_grad for p in features(eng))

        # m: train -> eval mode
        await pilot.press("m")
        await until(pilot, lambda: "mode eval" in text_of(app, "#run"), what="eval")
        assert eng.model.training is False and eng.train.mode == "eval"

        # + / -: learning rate x2 / x0.5
        await pilot.press("plus")
        await until(pilot, lambda: "lr 0.1\n" in text_of(app, "#run"), what="lr 0.1")
        assert all(g["lr"] == pytest.approx(0.1) for g in eng.optimizer.param_groups)
        await pilot.press("minus", "minus")
        await until(pilot, lambda: "lr 0.025\n" in text_of(app, "#run"), what="lr 0.025")
        assert all(g["lr"] == pytest.approx(0.025) for g in eng.optimizer.param_groups)

        # s: checkpoint
        ckpt = eng.run_dir / "last.pt"
        assert not ckpt.exists()
        await pilot.press("s")
        await until(pilot, lambda: "checkpoint saved" in text_of(app, "#log"), what="checkpoint")
        assert ckpt.exists()

        # l: log scale (view state only)
        assert app.log_scale is False
        await pilot.press("l")
        assert app.log_scale is True
        assert "log y" in str(dashboard_of(app).query_one("#loss").border_title)

        # e: flush, show the paths, copy them where the user says
        await pilot.press("e")
        await until(
            pilot, lambda: isinstance(app.screen, ExportScreen) and app.screen.query(Input), what="export dialog"
        )
        shown = " ".join(str(w.render()) for w in app.screen.query(".path"))
        assert str(eng.run_dir / "metrics.csv") in shown and str(eng.run_dir / "events.csv") in shown
        app.screen.query_one(Input).value = str(tmp_path / "copy")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, Dashboard), what="dialog closed")
        assert (tmp_path / "copy" / "metrics.csv").exists() and (tmp_path / "copy" / "events.csv").exists()

        # p / space: resume, then pause; while paused the step does not advance
        await pilot.press("p")
        await until(pilot, lambda: "running" in text_of(app, "#header"), what="running")
        await until(pilot, lambda: eng.train.step >= 4, what="steps")
        await pilot.press("space")
        await until(pilot, lambda: "paused" in text_of(app, "#header"), what="paused again")
        step = eng.train.step
        await pilot.pause(0.6)
        assert eng.train.step == step and eng.state == "paused"
        await pilot.press("q")
    assert not eng.alive and eng.final_state == "stopped"
    assert not [t for t in threading.enumerate() if t.name == "deeptui-engine"]


async def test_screen_shows_what_the_engine_applied_not_what_was_asked(make_engine):
    """A rejected command leaves the screen as it was and says why."""
    eng = make_engine("optimizer.momentum=0", "optimizer.choices=['sgd', 'momentum']")
    eng.send(C.Pause())
    app = DeeptuiApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "paused" in text_of(app, "#header"))
        await pilot.press("o")  # momentum needs momentum > 0: rejected by the engine
        await until(pilot, lambda: "SwitchOptimizer rejected" in text_of(app, "#log"), what="rejection")
        assert "\nsgd  lr" in text_of(app, "#run")
        assert isinstance(eng.optimizer, torch.optim.SGD) and eng.train.optimizer == "sgd"


async def test_freeze_on_a_model_without_features_says_why(make_engine):
    eng = make_engine("model.name='mlp'", "schedule.freeze_features_epochs=0")
    eng.send(C.Pause())
    app = DeeptuiApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "paused" in text_of(app, "#header"))
        assert app.check_action("freeze", ()) is None  # shown greyed out in the footer
        await pilot.press("f")
        await until(pilot, lambda: "no pretrained features" in text_of(app, "#log"), what="reason")
        assert "features n/a" in text_of(app, "#run")
        await pilot.pause(0.3)
        assert not any(
            isinstance(e, (E.CommandApplied, E.CommandRejected)) and e.command == "SetFrozen"
            for e in eng.events.read(0)[0]
        )


async def test_timing_when_the_run_first_pauses_and_on_key(make_engine):
    eng = make_engine("run.auto_timing=true")
    eng.send(C.Pause())
    app = DeeptuiApp(eng, timing=SMALL_TIMING)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "faster batched" in text_of(app, "#timing"), what="timing at start")
        assert "GFLOP/s" in text_of(app, "#timing")
        first = app.view.timing
        await pilot.press("t")
        await until(pilot, lambda: app.view.timing is not first, what="second timing")
        results = [e for e in eng.events.read(0)[0] if isinstance(e, E.TimingResult)]
        assert len(results) == 2
        # the panel shows the second result (allow the next repaint to land)
        await until(
            pilot,
            lambda: f"{results[-1].ratio:.1f}x" in text_of(app, "#timing"),
            timeout=5,
            what="second ratio on screen",
        )


async def test_finished_run_stays_open_and_keys_say_why(make_engine):
    eng = make_engine("run.epochs=1")
    app = DeeptuiApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "finished" in text_of(app, "#header"), timeout=60, what="finished")
        await until(
            pilot,
            lambda: "┤" in text_of(app, "#loss") and "┤" in text_of(app, "#accuracy"),  # plotted axes
            what="both plots drawn",
        )
        assert "train" not in text_of(app, "#loss") or "waiting" not in text_of(app, "#loss")
        assert "100%" in text_of(app, "#run")
        assert app.check_action("next_optimizer", ()) is None
        await pilot.press("o")
        await until(pilot, lambda: "the run has finished" in text_of(app, "#log"), what="reason")
        assert isinstance(app.screen, Dashboard)  # still open with the final plots
        await pilot.press("q")
    assert app.return_code == 0 and eng.final_state == "finished"


async def test_quit_stops_engine_thread_and_dataloader_workers(make_engine):
    eng = make_engine("data.loader='dataloader'", "data.num_workers=2", "run.epochs=50")
    app = DeeptuiApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: eng.train.step >= 2, timeout=60, what="steps with workers")
        assert multiprocessing.active_children()
        await pilot.press("q")
    assert not eng.alive and eng.final_state == "stopped"
    assert not [t for t in threading.enumerate() if t.name == "deeptui-engine"]
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert multiprocessing.active_children() == []
    assert (eng.run_dir / "metrics.csv").read_text().count("\n") >= 1


async def test_small_terminal_shows_size_message_and_redraws(make_engine):
    eng = make_engine()
    eng.send(C.Pause())
    app = DeeptuiApp(eng)
    async with app.run_test(size=(70, 20)) as pilot:
        dash = dashboard_of(app)
        msg = dash.query_one("#too-small", Static)
        await until(pilot, lambda: msg.display and "70x20" in str(msg.render()), what="the too-small message")
        assert "80x24" in str(msg.render())
        assert not dash.query_one("#body").display or dash.has_class("-too-small")
        await pilot.resize_terminal(100, 30)
        await until(pilot, lambda: not dash.has_class("-too-small"), what="resized")
        await until(pilot, lambda: "paused" in text_of(app, "#header"), what="header drawn")
        assert dash.query_one("#body").region.height > 20


async def test_command_palette_lists_the_keys(make_engine):
    eng = make_engine()
    eng.send(C.Pause())
    app = DeeptuiApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "paused" in text_of(app, "#header"))
        titles = {c.title: c for c in app.get_system_commands(app.screen)}
        for t in (
            "Next optimizer",
            "Freeze / unfreeze features",
            "Learning rate x2",
            "Export logs as CSV",
            "Batch-vs-loop timing",
            "Save checkpoint",
            "Toggle log scale",
            "Quit",
        ):
            assert t in titles
        await titles["Learning rate x2"].callback()
        await until(pilot, lambda: eng.train.base_lr == pytest.approx(0.1), what="lr x2 from the palette")


async def test_replayed_history_is_shown_without_dialogs_or_toasts():
    """An attached dashboard replays the run's history: a non-finite loss that happened before
    the attach shows in the log, but only a live one opens the dialog."""
    from tests.conftest import tiny_config
    from tests.fake import FakeSession

    def nan_warning(step):
        return E.NonFiniteLoss(
            1.0,
            1,
            step,
            loss=math.nan,
            policy="pause",
            message=f"training loss is nan at step {step}: paused; rewind, stop, or stay paused",
        )

    history = [
        E.RunStarted(
            0.1,
            1,
            0,
            preset="tiny",
            run_dir="/runs/tiny",
            device="cpu",
            model="monster",
            parameters=1,
            epochs=2,
            steps_per_epoch=16,
            max_steps=0,
            has_features=True,
            optimizer_choices=("sgd",),
        ),
        nan_warning(4),
    ]
    session = FakeSession(tiny_config(), history, run_dir="/runs/tiny")
    session.replayed = len(history)
    app = DeeptuiApp(session)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "training loss is nan at step 4" in text_of(app, "#log"), what="history")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, NanScreen)
        session.events.append(nan_warning(8))  # live, after the attach
        await until(pilot, lambda: isinstance(app.screen, NanScreen), what="live NaN dialog")


async def test_a_slow_plot_is_rebuilt_less_often_but_the_numbers_keep_up(monkeypatch):
    """On a small CPU every millisecond of the UI is taken from training: a plot rebuild that
    takes 30 ms of CPU waits 3 s (1% of the time) before the next one, while the panels show each new
    step at once; when the run pauses, the plot catches up at the next poll."""
    import deeptui.tui.dashboard as dashboard_module
    import deeptui.tui.plot_controls as app_module  # where the dashboard calls loss_plot
    from tests.conftest import tiny_config
    from tests.fake import FakeSession

    def metrics(step):
        return E.StepMetrics(
            step / 10,
            1,
            step,
            loss=1.0 / step,
            accuracy=0.5,
            lr=0.1,
            optimizer="sgd",
            frozen=False,
            mode="train",
            samples_per_s=100.0,
            samples_seen=step * 8,
            gpu_memory_mb=0.0,
        )

    def state(name, step):
        return E.StateChanged(
            step / 10,
            1,
            step,
            state=name,
            optimizer="sgd",
            optimizer_params="lr=0.1",
            lr=0.1,
            frozen=False,
            mode="train",
            reason="",
        )

    slow_plot = app_module.loss_plot

    def loss_plot(*a, **kw):
        busy_until = time.thread_time() + 0.03  # 30 ms of CPU, as a slow core would spend
        while time.thread_time() < busy_until:
            pass
        return slow_plot(*a, **kw)

    monkeypatch.setattr(app_module, "loss_plot", loss_plot)
    start = [
        E.RunStarted(
            0.0,
            1,
            0,
            preset="tiny",
            run_dir="/runs/tiny",
            device="cpu",
            model="mlp",
            parameters=1,
            epochs=1,
            steps_per_epoch=1000,
            max_steps=0,
            has_features=False,
            optimizer_choices=("sgd",),
        ),
        state("running", 0),
        metrics(10),
    ]
    session = FakeSession(tiny_config(), start, run_dir="/runs/tiny")
    app = DeeptuiApp(session)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = dashboard_of(app)
        plot = dash.query_one("#loss")
        await until(
            pilot,
            lambda: (
                plot.built_version == app.view.points_version and not plot.resized() and "10" in text_of(app, "#run")
            ),
            what="first plot, at its laid-out size",
        )
        # Conditions, not clocks: a loaded machine may take seconds between two polls. With a
        # 0.1% share the 30 ms rebuild waits 30 s, far beyond any poll, so the panel's step 20
        # must arrive while the plot still shows step 10.
        monkeypatch.setattr(dashboard_module, "PLOT_CPU_SHARE", 0.001)
        drawn, drawn_at = plot.built_version, dash._plots_at
        session.events.append(metrics(20))
        await until(pilot, lambda: "step 20" in text_of(app, "#run"), what="step 20 in the run panel")
        assert plot.built_version == drawn, "the plot was rebuilt although its rebuild waits 30 s"
        # At the real 1% share the next rebuild comes no sooner than 3 s (100 x 30 ms) after the last.
        monkeypatch.setattr(dashboard_module, "PLOT_CPU_SHARE", 0.01)
        await until(pilot, lambda: plot.built_version != drawn, timeout=30, what="the plot's next rebuild")
        assert dash._plots_at - drawn_at >= 3.0
        # A resize redraws the plot at its new size at once, though its data alone would wait 30 s.
        monkeypatch.setattr(dashboard_module, "PLOT_CPU_SHARE", 0.001)
        before = plot.built_size
        await pilot.resize_terminal(120, 36)
        await until(pilot, lambda: plot.built_size != before and not plot.resized(), what="the plot at its new size")
        # Paused, the plot catches up at the next poll whatever its cost: a 300 s wait would fail here.
        monkeypatch.setattr(dashboard_module, "PLOT_CPU_SHARE", 0.0001)
        drawn = plot.built_version
        session.events.append(metrics(30))
        session.events.append(state("paused", 30))
        await until(pilot, lambda: plot.built_version != drawn, timeout=30, what="a rebuild once paused")


async def test_typed_lr_help_screen_and_screenshot_in_the_run_directory(make_engine):
    from deeptui.tui.dialogs import HelpScreen, NumberScreen

    eng = make_engine("run.epochs=50")
    eng.send(C.Pause())
    app = DeeptuiApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "paused" in text_of(app, "#header"), what="paused")
        await pilot.press("L")
        await until(pilot, lambda: isinstance(app.screen, NumberScreen) and app.screen.query(Input), what="lr input")
        app.screen.query_one(Input).value = "0.0123"
        await pilot.press("enter")
        await until(pilot, lambda: eng.train.base_lr == pytest.approx(0.0123), what="the typed lr applied")
        await until(pilot, lambda: (app.view.markers or [(0, "")])[-1][1] == "lr", what="an lr marker")
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="the keys")
        assert "set the learning rate to a typed value" in " ".join(
            str(w.render()) for w in app.screen.query(".dialog-text")
        )
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, Dashboard), what="closed")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: list(eng.run_dir.glob("*.svg")), what="a screenshot in the run directory")
        await pilot.press("q")
