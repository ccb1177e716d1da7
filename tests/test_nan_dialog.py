"""The NaN dialog's ways out, each driven end to end on the real engine: after a good checkpoint
the learning rate is set absurdly high, the loss turns non-finite, the run pauses, the dialog
opens; each choice then either trains on with finite losses or stops cleanly."""

from __future__ import annotations

import math

import pytest
from textual.widgets import Input, OptionList

from deeptui.engine import checkpoint
from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.tui.app import DeeptuiApp
from deeptui.tui.dialogs import NanScreen, NumberScreen
from tests.pilot import until

pytestmark = pytest.mark.asyncio


def losses_after_the_restore(eng) -> list[float]:
    events = eng.events.read(0)[0]
    restored = max(
        i for i, e in enumerate(events) if isinstance(e, E.CommandApplied) and e.command == "RestoreCheckpoint"
    )
    return [e.loss for e in events[restored:] if isinstance(e, E.StepMetrics)]


async def nan_after_a_good_checkpoint(pilot, eng, app):
    """A checkpoint after a few steps, then lr 1e30: the dialog opens. No epoch checkpoints, so
    the one to rewind to is this good one (a blow-up can stay finite across an epoch's end)."""
    await until(pilot, lambda: eng.train.step >= 4, timeout=60, what="a few steps")
    for cmd in (C.Pause(), C.SaveCheckpoint(), C.SetLearningRate(lr=1e30), C.Resume()):
        eng.send(cmd)  # applied in this order between two steps
    await until(  # with the focus on its options: an enter pressed before then goes elsewhere
        pilot,
        lambda: (
            isinstance(app.screen, NanScreen)
            and app.screen.query(OptionList)
            and app.screen.query_one(OptionList).has_focus
        ),
        timeout=60,
        what="the NaN dialog",
    )
    assert eng.state == "paused"
    return app.screen.query_one(OptionList)


def choose(option_list, option_id: str) -> None:
    option_list.highlighted = option_list.get_option_index(option_id)


@pytest.mark.parametrize("choice,lr", [("rewind_lr10", 0.005), ("rewind_typed", 0.02), ("rewind", 0.05)])
async def test_rewinding_trains_on_with_finite_losses(make_engine, choice, lr):
    eng = make_engine("run.on_nan='pause'", "run.epochs=50", "log.checkpoint_every=0", "log.interval=2")
    app = DeeptuiApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        options = await nan_after_a_good_checkpoint(pilot, eng, app)
        assert [o.id for o in options._options][:3] == ["rewind_lr10", "rewind_typed", "rewind"]
        saved = [e for e in eng.events.read(0)[0] if isinstance(e, E.CheckpointSaved) and e.kind == "last"][-1]
        told = f"Rewind to last.pt (step {saved.step}), lr 0.05 / 10 = 0.005"  # the file and where it is
        assert str(options._options[0].prompt).startswith(told), options._options[0].prompt
        choose(options, choice)
        await pilot.press("enter")
        if choice == "rewind_typed":
            # the dialog's Input exists once it is composed, a moment after the screen is pushed
            await until(
                pilot, lambda: isinstance(app.screen, NumberScreen) and app.screen.query(Input), what="the lr input"
            )
            app.screen.query_one(Input).value = "0.02"
            await pilot.press("enter")
        await until(pilot, lambda: eng.state == "running", timeout=30, what="resumed")
        assert eng.train.base_lr == pytest.approx(lr)
        await until(pilot, lambda: len(losses_after_the_restore(eng)) >= 3, timeout=60, what="steps after")
        assert all(math.isfinite(v) for v in losses_after_the_restore(eng))
        assert not isinstance(app.screen, NanScreen)  # it did not come back
        await pilot.press("q")
    assert eng.final_state == "stopped"


async def test_stop_ends_the_run_and_keeps_the_good_checkpoint(make_engine):
    eng = make_engine("run.on_nan='pause'", "run.epochs=50", "log.checkpoint_every=0", "log.interval=2")
    app = DeeptuiApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        options = await nan_after_a_good_checkpoint(pilot, eng, app)
        choose(options, "stop")
        await pilot.press("enter")
        await until(pilot, lambda: app.view.finished, timeout=60, what="the run's end")
        assert "stopped" in app.view.state
    st = checkpoint.load(eng.run_dir / "last.pt")
    assert all(math.isfinite(float(t.abs().sum())) for t in st["model"].values() if t.is_floating_point())
    assert (eng.run_dir / "nonfinite.pt").is_file()


async def test_without_a_good_checkpoint_only_stop_and_stay_are_offered(make_engine):
    eng = make_engine(
        "run.on_nan='pause'",
        "run.epochs=50",
        "optimizer.lr=1e30",
        "log.interval=1",
        "model.name='mlp'",
        "schedule.freeze_features_epochs=0",
    )
    app = DeeptuiApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(
            pilot,
            lambda: isinstance(app.screen, NanScreen) and app.screen.query(OptionList),
            timeout=60,
            what="the NaN dialog",
        )
        assert [o.id for o in app.screen.query_one(OptionList)._options] == ["stop", "stay"]
        await pilot.press("escape")  # stay paused
        await until(pilot, lambda: not isinstance(app.screen, NanScreen), what="dialog closed")
        assert eng.state == "paused" and eng.alive
        await pilot.press("q")
    assert not eng.alive
