"""The dashboard uses its space (issue 21 item 5): the side panel is about a quarter of the width,
the event log grows with the height and wraps, repeated commands are one line, the timing panel
takes room only once a timing exists, and a run that has ended shows its result instead of an ETA."""

from __future__ import annotations

import dataclasses

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.tui.app import DeeptuiApp
from tests.conftest import tiny_config
from tests.fake import FakeSession
from tests.pilot import dashboard_of, text_of, until
from tests.test_snapshots import script

LONG = "a warning long enough to need two lines at 80 columns: " + "the words go on and on " * 3 + "THE END"


def app_of(events, alive: bool = True) -> DeeptuiApp:
    session = FakeSession(tiny_config("run.name='quickstart'"), events, alive=alive)
    return DeeptuiApp(session, clock=lambda: 100.0)


def without_timing(events):
    return [e for e in events if not isinstance(e, E.TimingResult)]


async def test_the_side_panel_and_the_log_follow_the_terminal_size():
    sizes = {}
    for size in ((80, 24), (100, 30), (200, 60)):
        app = app_of([*script(), E.Warning(60.0, 3, 282, message=LONG)])
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda app=app: "THE END" in text_of(app, "#log"), what="the long line")
            dash = app.dashboard
            sizes[size] = (dash.query_one("#side").size.width, dash.query_one("#log").size.height)
            if size == (80, 24):
                rows = text_of(app, "#log").splitlines()
                assert rows[-1].strip() == "THE END" or "THE END" in rows[-1]  # wrapped, not cut
                assert rows[-1].startswith(" " * 6)  # under the words of its line
            await pilot.press("q")
    assert sizes[(80, 24)][0] == 34 and sizes[(200, 60)][0] == 50  # 30 to 50: about a quarter
    assert sizes[(80, 24)][1] <= 7 < sizes[(200, 60)][1]  # the log grows with the height


async def test_the_timing_panel_takes_room_once_a_timing_exists():
    events = without_timing(script())
    app = app_of(events)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "step 280" in text_of(app, "#run"), what="the run")
        timing = app.dashboard.query_one("#timing")
        assert not timing.display
        t = events[-1]
        app.session.events.append(
            E.TimingResult(
                t.time_s,
                t.epoch,
                t.step,
                device="cpu",
                batch_ms=5,
                loop_ms=25,
                ratio=5.0,
                batch_gflops=1,
                loop_gflops=0.2,
            )
        )
        await until(pilot, lambda: timing.display and "faster batched" in text_of(app, "#timing"), what="shown")
        await pilot.press("q")


async def test_a_finished_run_shows_its_result_instead_of_eta_and_speed():
    events = script()
    last = events[-1]
    events += [E.Finished(last.time_s + 1, last.epoch, last.step, state="finished", run_dir="/runs/q")]
    app = app_of(events, alive=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "finished" in text_of(app, "#run"), what="the result")
        text = text_of(app, "#run")
        assert "ETA" not in text and "best 30.00% at epoch 3" in text
        assert "finished after " in text and "samples/s average" in text
        assert text_of(app, "#header").endswith("? keys  ^p commands")  # the footer is cut short at 100 columns
        width = dashboard_of(app).query_one("#run").content_size.width
        assert width <= 32 and all(len(line) <= width for line in text.splitlines()), "a line wraps"
        await pilot.press("q")


async def test_repeated_commands_are_one_line(make_engine):
    eng = make_engine("run.epochs=50")
    eng.send(C.Pause())
    app = DeeptuiApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "paused" in text_of(app, "#header"), what="paused")
        for _ in range(12):
            await pilot.press("plus")
        await until(pilot, lambda: eng.train.base_lr > 200, what="12 lr changes applied")
        await until(pilot, lambda: "lr 0.05 -> 205 (12 changes)" in text_of(app, "#log"), what="one line")
        assert text_of(app, "#log").count("ScaleLearningRate") == 1
        await pilot.press("q")


def test_the_log_merges_the_same_words_and_one_saves_files():
    from deeptui.tui.view import RunView

    view = RunView()
    at = dict(time_s=1.0, epoch=1, step=8)
    for kind, path in (("best", "/r/best.pt"), ("last", "/r/last.pt"), ("epoch", "/r/epoch-0001.pt")):
        view.apply(E.CheckpointSaved(**at, path=path, kind=kind))
    view.apply(E.Warning(**at, message="slow"))
    view.apply(E.Warning(**dataclasses.replace(E.Event(**at), time_s=2.0).__dict__, message="slow"))
    lines = [text for _, text in view.log]
    assert lines[0].endswith("checkpoint saved (best, last, epoch): /r/best.pt, last.pt, epoch-0001.pt")
    assert lines[1].endswith("warning: slow (x2)") and len(lines) == 2


def test_the_log_merges_only_what_says_the_same():
    """Bugs from a user's tour: a save at another step with the first file's words replaced the
    merged line of an epoch's save (epoch-0002.pt gone from the screen); the stop's save of
    last.pt after the epoch's was listed twice; a typed lr and the scalings after it were one line
    named after the last command, its count read as a factor (x5)."""
    from deeptui.tui.view import RunView

    view = RunView()

    def at(step: int) -> dict:
        return dict(time_s=step / 10, epoch=1, step=step)

    for kind, path in (("last", "/r/last.pt"), ("epoch", "/r/epoch-0002.pt")):
        view.apply(E.CheckpointSaved(**at(188), path=path, kind=kind))
    view.apply(E.CheckpointSaved(**at(206), path="/r/last.pt", kind="last"))
    for kind, path in (("best", "/r/best.pt"), ("last", "/r/last.pt"), ("last", "/r/last.pt")):
        view.apply(E.CheckpointSaved(**at(470), path=path, kind=kind))
    view.apply(E.CommandApplied(**at(471), command_id=1, command="SetLearningRate", detail="lr 0.05 -> 0.001"))
    for i, (old, new) in enumerate((("0.001", "0.002"), ("0.002", "0.004"), ("0.004", "0.002"))):
        detail = f"lr {old} -> {new}"
        view.apply(E.CommandApplied(**at(472 + i), command_id=2 + i, command="ScaleLearningRate", detail=detail))
    lines = [text.split("  ", 2)[-1].strip() for _, text in view.log]
    assert lines == [
        "checkpoint saved (last, epoch): /r/last.pt, epoch-0002.pt",
        "checkpoint saved (last): /r/last.pt",
        "checkpoint saved (best, last): /r/best.pt, last.pt",
        "SetLearningRate: lr 0.05 -> 0.001",
        "ScaleLearningRate: lr 0.001 -> 0.002 (3 changes)",
    ], lines


def test_a_summary_of_a_run_still_going_says_latest_not_final():
    """Bug: detaching from `attach` printed `train loss: final 2.3587` for a run still training."""
    from deeptui.tui.summary import summary_lines
    from deeptui.tui.view import RunView

    events = script()
    view = RunView()
    for ev in events:
        view.apply(ev)
    going = summary_lines(view, "/runs/q")
    assert any(line.startswith("train loss: latest") for line in going), going
    assert any(line.startswith("test error: latest") for line in going), going
    last = events[-1]
    view.apply(E.Finished(last.time_s + 1, last.epoch, last.step, state="finished", run_dir="/runs/q"))
    ended = summary_lines(view, "/runs/q")
    assert any(line.startswith("train loss: final") for line in ended), ended
