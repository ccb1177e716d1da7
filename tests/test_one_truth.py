"""One truth: every view of a run (the dashboard, show, the summary, ls, the exports) tells what the
engine did, because each is a fold of the same events (events.jsonl in the run directory). One
test per problem found where features meet: a stale quit summary, show not being the run, a NaN
dialog that could not rewind, a rewind that kept the abandoned branch, rates and clocks that
counted time that did not train, a rejected command that changed state, a config.toml that
misstated log.dir, and multi-run show's keys."""

from __future__ import annotations

import csv
import math
import time

import pytest
import torch

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.history import HistorySession, one_history, read_run
from deeptui.engine.state import RunState
from deeptui.tui.summary import summary_lines
from deeptui.tui.view import RunView
from tests.conftest import EventReader


def fold(events) -> RunView:
    view = RunView()
    for ev in events:
        view.apply(ev)
    return view


def live_view(eng) -> RunView:
    return fold(eng.events.read(0)[0])


def show_view(run_dir) -> RunView:
    return fold(HistorySession(run_dir).events.read(0)[0])


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def settings_of(v: RunView) -> tuple:
    return (v.state, v.optimizer, v.lr, v.frozen, v.mode, v.eval_mode, v.step, v.epoch)


# ---- 1. the quit summary is the run's last word -----------------------------------------------


async def test_the_summary_after_q_tells_where_the_run_stopped(make_engine):
    """Bug: after q the terminal said 'run running: ... 60 steps' while events.csv said stopped at
    step 67: the summary was printed from the last poll's view, before the run had ended."""
    from deeptui.tui.app import DeeptuiApp
    from tests.pilot import until

    eng = make_engine("run.epochs=50", "log.interval=1")
    app = DeeptuiApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.view.step >= 3, what="a few logged steps")
        await pilot.press("q")
    app.stop_session("quit")
    app.catch_up()
    assert not eng.alive
    line = summary_lines(app.view, eng.run_dir)[0]
    assert line.startswith("run stopped:") and f"{eng.train.step:,} steps" in line
    last = rows(eng.run_dir / "events.csv")[-1]
    assert last["event"] == "stopped" and int(last["step"]) == eng.train.step


def test_ls_tells_the_step_the_run_ended_at_as_its_summary_does(make_engine, monkeypatch):
    """Bug: ls said step 320 (the last logged row) where the summary said 328 steps."""
    from deeptui.tui.runs import run_info

    eng = make_engine("run.epochs=50", "log.interval=4")
    real_step = type(eng)._train_step

    def step_then_stop_at_7(self, x, y):  # stopped between two logged rows, however loaded
        out = real_step(self, x, y)
        if self.train.step == 6:  # the step is counted after this call
            self.send(C.Stop(reason="test"))
        return out

    monkeypatch.setattr(type(eng), "_train_step", step_then_stop_at_7)
    eng.run()
    view = show_view(eng.run_dir)
    assert view.curves.train_loss.x[-1] == 4 and eng.train.step == 7  # the last row is not the end
    assert run_info(eng.run_dir).step == view.step == 7
    assert ", 7 steps," in summary_lines(view, eng.run_dir)[0]


# ---- 2. show is the run -----------------------------------------------------------------------


def test_show_folds_the_same_events_as_the_live_view(make_engine):
    """Bug: show's run panel had the starting optimizer, lr, freeze state and mode, lost the test
    rows' mode (final 11% was the train-mode row), had no machine readings and no layer rows."""
    eng = make_engine(
        "run.epochs=3", "log.interval=2", "log.layers_interval=2", "log.system_seconds=1", "run.eval_mode='both'"
    )
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= 4)  # the run started on sgd, lr 0.05
    r.answer(eng.send(C.Pause()))
    for cmd in (C.SwitchOptimizer(name="adam"), C.SetLearningRate(lr=0.002), C.SetMode(mode="eval")):
        assert isinstance(r.answer(eng.send(cmd)), E.CommandApplied)
    r.wait(lambda e: isinstance(e, E.SystemStats), timeout=60)  # the machine is read while paused too
    r.answer(eng.send(C.Resume()))
    assert eng.wait_finished(120)
    live, shown = live_view(eng), show_view(eng.run_dir)
    assert shown.state == RunState.FINISHED and settings_of(shown) == settings_of(live)
    assert (shown.optimizer, shown.lr, shown.mode, shown.frozen) == ("adam", 0.002, "eval", False)
    for mode in ("eval", "train"):
        assert shown.curves.final_test(mode) == live.curves.final_test(mode) is not None
        assert shown.curves.best_test(mode) == live.curves.best_test(mode)
    assert len(shown.curves.test_loss) == len(live.curves.test_loss) == 3
    assert len(shown.curves.test_loss_train) == 3
    assert shown.layers == live.layers is not None  # the d key's views
    assert shown.system is not None  # the machine strip's last reading
    assert shown.markers == live.markers and shown.curves.train_loss == live.curves.train_loss
    assert summary_lines(shown, eng.run_dir) == summary_lines(live, eng.run_dir)
    assert any("in train mode" in line for line in summary_lines(shown, eng.run_dir))


def test_a_run_made_before_events_jsonl_still_opens_from_its_csv_files(make_engine):
    """Old run directories stay readable: without events.jsonl, show rebuilds from the CSVs, and
    a test row's mode column is the mode the test set was evaluated in."""
    eng = make_engine("run.epochs=1", "run.eval_mode='both'")
    eng.run()
    (eng.run_dir / "events.jsonl").unlink()
    cfg, events, state = read_run(eng.run_dir)
    v = fold(events)
    assert state == RunState.FINISHED and v.state == RunState.FINISHED
    live = live_view(eng)
    for mode in ("eval", "train"):
        assert v.curves.final_test(mode).test_error_pct == pytest.approx(live.curves.final_test(mode).test_error_pct)


def test_an_old_run_directory_opens_with_its_layers_machine_readings_and_timings(make_engine):
    """Bug: without events.jsonl, show rebuilt a run from metrics.csv and events.csv only: `d`
    waited for layer statistics forever, the strip said "no readings" and the timing was gone,
    although layers.csv, system.csv and the timing row were there."""
    eng = make_engine("run.epochs=1", "log.layers_interval=1", "log.system_seconds=0")  # one reading: the test's
    eng.send(C.RunTiming(repeats=1, sizes=(64, 32, 16)))
    reading = (("cuda:0", 40.0, 1024.0, 8192.0, 60.0, 90.0),)  # as a GPU run's strip takes them
    eng.report.emit(E.SystemStats, cpu_pct=87.5, rss_mb=512.0, gpus=reading)
    eng.run()
    (eng.run_dir / "events.jsonl").unlink()
    v = fold(read_run(eng.run_dir)[1])
    live = live_view(eng)
    assert v.layers is not None and live.layers is not None
    assert (v.layers.step, v.layers.layers) == (live.layers.step, live.layers.layers)
    assert v.layers.grad_norm == pytest.approx(live.layers.grad_norm, rel=1e-5)
    assert v.layers_version == live.layers_version  # every probed step, not only the last
    assert (v.system.cpu_pct, v.system.rss_mb) == (87.5, 512.0)
    assert v.system.gpus == reading
    assert v.timing is not None and v.timing.ratio == pytest.approx(live.timing.ratio, abs=0.05)


def test_a_run_tested_in_train_mode_only_has_a_best_test_error_in_every_view(make_engine, monkeypatch):
    """Bug: with run.eval_mode = "train", the summary told a best test error (and best.pt followed
    it), but ls and the run panel had none: they looked at eval-mode rows only."""
    from deeptui.tui.runs import run_info

    eng = make_engine("run.epochs=2", "run.eval_mode='train'")
    eng.run()
    live = live_view(eng)
    tests = [e for e in eng.events.read(0)[0] if isinstance(e, E.EpochEnd)]
    assert tests and {e.mode for e in tests} == {"train"}
    best = min(tests, key=lambda e: e.test_error_pct)
    assert live.best_test == (best.test_error_pct, best.epoch)
    assert show_view(eng.run_dir).best_test == live.best_test
    assert run_info(eng.run_dir).best == live.best_test
    told = f"best {best.test_error_pct:.2f}% (epoch {best.epoch})"
    assert any(told in line for line in summary_lines(live, eng.run_dir))


# ---- 3. the NaN dialog can always act ---------------------------------------------------------


def test_the_newest_good_checkpoint_of_any_kind_is_the_rewind_target():
    """Bug: the NaN dialog looked only for last.pt: presets that save best.pt by default got 'No
    good checkpoint yet' and could never rewind."""
    v = fold(
        [
            E.StateChanged(
                0, 1, 0, state="running", optimizer="sgd", optimizer_params="", lr=0.1, frozen=False, mode="train"
            ),
            E.CheckpointSaved(1.0, 1, 8, path="/r/best.pt", kind="best"),
            E.CheckpointSaved(2.0, 2, 16, path="/r/epoch-0002.pt", kind="epoch"),
            E.CheckpointSaved(3.0, 2, 12, path="/r/nonfinite.pt", kind="nonfinite"),
        ]
    )
    target = v.rewind_target()
    assert (target.which, target.step, target.lr) == ("epoch 2", 16, 0.1)
    assert fold([E.CheckpointSaved(1.0, 1, 8, path="/r/best.pt", kind="best")]).rewind_target().which == "best"


def test_the_engine_rewinds_to_best_when_only_best_exists(make_engine):
    eng = make_engine("run.epochs=50", "run.on_nan='pause'", "log.interval=1", "log.checkpoint_every=0")
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.CheckpointSaved) and e.kind == "best", timeout=120)  # the first epoch's end
    assert eng.checkpoints.find("last") is None
    r.answer(eng.send(C.SetLearningRate(lr=1e30)))
    nan = r.wait(lambda e: isinstance(e, E.NonFiniteLoss), timeout=60)
    assert nan.policy == "pause"
    target = live_view(eng).rewind_target()
    assert target.which == "best"
    done = r.answer(eng.send(C.RestoreCheckpoint(which=target.which, lr_scale=0.1)))
    assert isinstance(done, E.CommandApplied) and "best.pt" in done.detail
    assert all(torch.isfinite(p).all() for p in eng.model.parameters())
    assert live_view(eng).markers.count((nan.step, "nan")) == 0  # past the rewind: that branch was left
    eng.shutdown(timeout=60)


async def test_the_engines_own_nan_pause_does_not_start_the_timing(make_engine):
    """Bug: the engine's NaN pause started the automatic batch-vs-loop timing (header: timing)."""
    from deeptui.tui.app import DeeptuiApp
    from deeptui.tui.dialogs import NanScreen
    from tests.pilot import until

    eng = make_engine("run.epochs=50", "run.on_nan='pause'", "run.auto_timing=true", "log.interval=1")
    app = DeeptuiApp(eng, timing={"repeats": 1, "sizes": (64, 32, 16)})
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: eng.train.step >= 2, what="a few steps")
        eng.send(C.SetLearningRate(lr=1e30))
        await until(pilot, lambda: isinstance(app.screen, NanScreen), timeout=60, what="the NaN dialog")
        for _ in range(5):  # a few polls: a timing would have been sent at the first
            await pilot.pause(0.3)
        assert not any(isinstance(e, (E.TimingResult, E.TimingProgress)) for e in eng.events.read(0)[0])
        assert app.view.state == RunState.PAUSED and ("nan" in {k for _, k in app.view.markers})
        await pilot.press("escape")
        await pilot.press("q")


# ---- 4. a rewind is one history ---------------------------------------------------------------


def test_a_rewind_moves_the_abandoned_rows_out_and_every_view_follows(make_engine, tmp_path):
    """Bug: after a rewind metrics.csv kept the rows past the checkpoint, its time_s went back,
    the plot drew both branches, and show and the TensorBoard export had the wrong final loss,
    step count and wall time."""
    eng = make_engine("run.epochs=50", "log.interval=2", "log.layers_interval=2")
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= 4)
    saved = r.answer(eng.send(C.SaveCheckpoint()))
    at = saved.step
    r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= at + 6)
    rewound = r.answer(eng.send(C.RestoreCheckpoint(which="last")))
    assert isinstance(rewound, E.CommandApplied) and eng.train.step == at
    back = r.last(lambda e: isinstance(e, E.Rewound))
    r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= at + 4 and e.time_s > back.time_s)
    eng.shutdown(timeout=60)
    kept, orphaned = rows(eng.run_dir / "metrics.csv"), (eng.run_dir / "metrics.csv.orphaned").read_text()
    times = [float(x["time_s"]) for x in kept]
    assert times == sorted(times)  # the run's clock never goes back
    train = [int(x["step"]) for x in kept if x["split"] == "train"]
    assert train == sorted(set(train))  # each step once
    assert back.orphaned == len(orphaned.splitlines()) > 0
    assert all(int(line.split(",")[2]) > at for line in orphaned.splitlines())
    layers = [int(x["step"]) for x in rows(eng.run_dir / "layers.csv")]
    assert layers == sorted(layers)
    live, shown = live_view(eng), show_view(eng.run_dir)
    assert live.curves.train_loss.x == sorted(set(live.curves.train_loss.x))  # one branch drawn
    assert shown.curves.train_loss == live.curves.train_loss
    assert [int(x["step"]) for x in kept if x["split"] == "train"] == live.curves.train_loss.x
    assert shown.time_s == live.time_s == max(e.time_s for e in eng.events.read(0)[0])
    history = one_history(read_run(eng.run_dir)[1])
    last = [e for e in history if isinstance(e, E.StepMetrics)][-1]
    assert last.step == live.curves.train_loss.x[-1] and last.loss == live.curves.last_loss


def test_the_tensorboard_export_leaves_the_abandoned_branch_out(make_engine, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from deeptui.tui.cli import main

    eng = make_engine("run.epochs=50", "log.interval=2")
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= 4)
    at = r.answer(eng.send(C.SaveCheckpoint())).step
    r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= at + 6)
    r.answer(eng.send(C.RestoreCheckpoint(which="last")))
    r.wait(lambda e: isinstance(e, E.StepMetrics))  # the kept branch goes on
    eng.shutdown(timeout=60)
    out = tmp_path / "tb"
    assert main(["export", str(eng.run_dir), "--tensorboard", "--out", str(out)]) == 0
    acc = EventAccumulator(str(out))
    acc.Reload()
    steps = [s.step for s in acc.Scalars("train/loss")]
    assert steps == live_view(eng).curves.train_loss.x  # each step once: the branch that was kept


# ---- 5. rates and clocks count training time only ---------------------------------------------


def test_a_pause_inside_an_interval_does_not_inflate_samples_per_second(make_engine):
    """Bug: after a pause, a timing or a recompile mid-interval the next row's samples/s counted
    only the time since the resume (153,387 against about 40)."""
    eng = make_engine("run.epochs=1", "log.interval=1000")  # one row, at the epoch's end (16 steps)
    r = EventReader(eng)
    eng.start()
    while eng.train.step < 2:
        eng.events.wait(len(eng.events), 0.05)
    paused = r.answer(eng.send(C.Pause()))
    assert 0 < paused.step < 16  # inside the interval
    r.answer(eng.send(C.RunTiming(repeats=1, sizes=(256, 128, 64))))
    time.sleep(0.5)  # paused for a while: that time is not training time
    r.answer(eng.send(C.Resume()))
    row = r.wait(lambda e: isinstance(e, E.StepMetrics))
    assert eng.wait_finished(60) and row.step == 16
    assert row.samples_per_s * row.train_s <= 16 * 16 * 1.1 + 16  # the rate is over all its samples' time
    assert row.time_s > row.train_s + 0.4  # the pause counts on the run's clock only


def test_an_evaluation_and_a_checkpoint_inside_an_interval_are_not_training_time(make_engine, monkeypatch):
    """The training clock is held while the test set is evaluated and a checkpoint is written, so
    the row after them tells the samples/s of training (counted in, a slow test set or disk made
    the rate and the ETA look worse than the training was)."""
    from deeptui.engine import checkpoint
    from deeptui.engine import loop as loop_module

    def slowed(fn):
        def slow(*args, **kw):
            time.sleep(0.5)  # a large test set, a slow disk
            return fn(*args, **kw)

        return slow

    monkeypatch.setattr(loop_module, "evaluate", slowed(loop_module.evaluate))
    monkeypatch.setattr(checkpoint, "save_now", slowed(checkpoint.save_now))
    eng = make_engine("run.epochs=2", "log.interval=1000", "log.checkpoint_every=1")  # a row per epoch
    assert eng.run() == "finished"
    first, second = [e for e in eng.events.read(0)[0] if isinstance(e, E.StepMetrics)]
    wall, trained = second.time_s - first.time_s, second.train_s - first.train_s
    assert wall - trained >= 0.9  # epoch 1's evaluation and checkpoint: not training
    samples = second.samples_seen - first.samples_seen
    assert second.samples_per_s * trained >= 0.8 * samples  # the rate is over training time only


def test_the_eta_counts_training_time_only():
    """Bug: the ETA counted paused time (26:12 became 46:58 while throughput rose)."""
    v = RunView()
    v.apply(E.RunStarted(0, 1, 0, "p", "/r", "cpu", "m", 1, 10, 100, 0, False, ()))
    row = dict(loss=1.0, accuracy=0.5, lr=0.1, optimizer="sgd", frozen=False, mode="train", samples_per_s=10.0)
    v.apply(E.StepMetrics(10.0, 1, 100, samples_seen=1600, train_s=10.0, **row))
    v.apply(E.StepMetrics(20.0, 1, 200, samples_seen=3200, train_s=20.0, **row))
    steady = v.eta_s()
    v.apply(E.StepMetrics(320.0, 1, 300, samples_seen=4800, train_s=30.0, **row))  # 290 s paused in between
    assert v.eta_s() == pytest.approx(steady * 700 / 800)  # 0.1 s a step still


async def test_the_header_clock_goes_on_from_launch_and_never_back(tmp_path, monkeypatch):
    """Bug: the header's clock stopped while loading, then jumped back (00:07 -> 00:05): the engine's
    clock started at 0 when it was built, not when the user launched it."""
    from deeptui.engine.build import build_engine
    from deeptui.tui.app import DeeptuiApp
    from deeptui.tui.launch import Launch
    from tests.conftest import tiny_config

    cfg = tiny_config("run.epochs=50")
    launched = time.monotonic()

    def build(stage):
        stage("loading ...")
        time.sleep(1.5)  # a slow load: the clock must run through it
        return build_engine(cfg, data_root=tmp_path / "data", log_dir=tmp_path / "runs", started_at=launched)

    app = DeeptuiApp(Launch(cfg, build, started_at=launched))
    seen = []
    async with app.run_test(size=(100, 30)) as pilot:
        while not (app.view.step >= 2):
            seen.append(app.elapsed())
            await pilot.pause(0.1)
            assert time.monotonic() - launched < 120, "no steps"
        seen.append(app.elapsed())
        await pilot.press("q")
    assert seen == sorted(seen) and seen[-1] > 1.5, seen
    first = next(e for e in app.session.events.read(0)[0] if isinstance(e, E.RunStarted))
    assert first.time_s > 1.5  # the engine's clock counted the loading


# ---- 6. a rejected command changes nothing ----------------------------------------------------


def test_a_rejected_freeze_leaves_the_schedule_in_charge(make_engine):
    """Bug: SetFrozen on an already frozen model was rejected, but the override was set before the
    check, so the freeze schedule never unfroze the features."""
    eng = make_engine("run.epochs=2")  # frozen for the first epoch
    r = EventReader(eng)
    eng.send(C.Pause())
    eng.start()
    answer = r.answer(eng.send(C.SetFrozen(frozen=True)))
    assert isinstance(answer, E.CommandRejected) and "already frozen" in answer.reason
    assert eng.train.freeze_override is None
    r.answer(eng.send(C.Resume()))
    r.wait(lambda e: isinstance(e, E.ScheduleAction) and e.action == "unfreeze", timeout=120)
    assert eng.wait_finished(120) and not eng.trainer.frozen


# ---- 7. the run directory states its own config -----------------------------------------------


def test_config_toml_says_where_the_run_directory_went(tmp_path, monkeypatch):
    """Bug: after --log-dir X, config.toml said log.dir = "runs"."""
    import tomllib

    from deeptui.tui.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", "--headless", "--max-steps", "2", "--log-dir", str(tmp_path / "X")]) == 0
    (run,) = (tmp_path / "X").iterdir()
    assert tomllib.loads((run / "config.toml").read_text())["log"]["dir"] == str(tmp_path / "X")
    monkeypatch.setenv("DEEPTUI_LOG_DIR", str(tmp_path / "Y"))
    assert main(["quickstart", "--headless", "--max-steps", "2"]) == 0
    (run,) = (tmp_path / "Y").iterdir()
    assert tomllib.loads((run / "config.toml").read_text())["log"]["dir"] == str(tmp_path / "Y")


# ---- 8. multi-run show ------------------------------------------------------------------------


async def test_multi_run_show_moves_its_highlight_and_lists_only_its_own_keys(tmp_path):
    """Bug: in a multi-run show n moved the header, not the highlight; ? listed steering keys that
    cannot act and left out n and x."""
    from deeptui.tui.dialogs import HelpScreen
    from deeptui.tui.show import ShowApp
    from tests.pilot import text_of, until
    from tests.test_show import fake_run

    runs = [HistorySession(fake_run(tmp_path / f"run-{i}", lr)) for i, lr in enumerate((0.05, 0.1))]
    app = ShowApp(runs)

    def highlighted() -> str:
        text = app.dashboard.query_one("#run").content  # the Rich Text the panel shows now
        return next((text.plain[s.start : s.end] for s in text.spans if "reverse" in str(s.style)), "")

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: "run-0" in text_of(app, "#run"), what="the runs panel")
        assert highlighted().startswith("1 run-0")
        await pilot.press("n")
        await until(pilot, lambda: highlighted().startswith("2 run-1"), what="the highlight on run 2")
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help")
        listed = " ".join(str(label.render()) for label in app.screen.query("Label"))
        assert "next run" in listed and "x axis" in listed
        assert "pause" not in listed and "learning rate" not in listed
        await pilot.press("escape")
        await pilot.press("q")


def test_time_s_keeps_milliseconds_in_the_csv_files(tmp_path):
    """A year-long run's clock still has milliseconds in the CSV files (not 6 digits)."""
    from deeptui.engine.runlog import RunLog

    log = RunLog(tmp_path)
    row = dict(loss=1.0, accuracy=0.5, lr=0.1, optimizer="sgd", frozen=False, mode="train", samples_per_s=1.0)
    log.record(E.StepMetrics(365 * 86400 + 0.125, 1, 7, samples_seen=7, **row))
    log.close()
    assert rows(tmp_path / "metrics.csv")[0]["time_s"] == "31536000.125"
    assert math.isclose(float(rows(tmp_path / "metrics.csv")[0]["time_s"]), 31536000.125)


# ---- one vocabulary ---------------------------------------------------------------------------


def test_no_run_state_is_spelled_as_a_string_outside_run_state():
    """The front ends spelled the run's states as about 59 string literals; every layer now asks
    RunState (its members and predicates)."""
    import ast

    from tests.conftest import ROOT

    words = {s.value for s in RunState}
    found = []
    for path in sorted(p for folder in ("engine", "tui") for p in (ROOT / folder).rglob("*.py")):
        if path.name == "state.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                parts = [node.left, *node.comparators]
                consts = [c for p in parts for c in ([p] if isinstance(p, ast.Constant) else getattr(p, "elts", []))]
                found += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {c.value!r}"
                    for c in consts
                    if isinstance(c, ast.Constant) and c.value in words
                ]
            elif isinstance(node, ast.Dict):
                found += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {k.value!r}"
                    for k in node.keys
                    if isinstance(k, ast.Constant) and k.value in words
                ]
    assert not found, found


def test_a_config_is_typed_by_its_annotations_and_frozen_all_the_way_down():
    from typing import get_type_hints

    from deeptui.engine.config import ConfigError, OptimizerConfig, RunConfig
    from tests.conftest import tiny_config

    cfg = tiny_config("optimizer.group_lr={ features = 0.001 }", "model.freeze=['features']")
    assert cfg.optimizer.choices == ("sgd", "adam", "momentum") and cfg.model.freeze == ("features",)
    assert cfg.optimizer.betas == (0.9, 0.999)
    with pytest.raises(TypeError, match="frozen"):
        cfg.optimizer.group_lr["features"] = 1.0
    assert "Literal" in str(get_type_hints(RunConfig)["on_nan"]) and "Literal" in str(
        get_type_hints(OptimizerConfig)["name"]
    )
    with pytest.raises(ConfigError, match=r"run.on_nan = 'later' is out of range; fix: run.on_nan must be one of auto"):
        tiny_config("run.on_nan='later'")
    assert tiny_config().to_dict()["optimizer"]["choices"] == ["sgd", "adam", "momentum"]  # TOML-ready again


# ---- show is what the live dashboard showed at its end ----------------------------------------


def screen_of(app) -> dict[str, str]:
    """What the dashboard shows: every panel, both plots with their titles, the event log."""
    from tests.pilot import text_of

    dash = app.dashboard
    dash.refresh_view(True)
    shown = {sel: text_of(app, sel) for sel in ("#header", "#run", "#timing", "#system", "#log")}
    for plot in ("#loss", "#accuracy"):
        widget = dash.query_one(plot)
        shown[plot] = f"{widget.border_title} | {widget.border_subtitle}\n{widget.content.plain}"
    return shown


async def test_show_draws_what_the_live_dashboard_drew_at_its_end(make_engine):
    """A run with interventions, a rewind, both test modes and layer rows: its dashboard at the
    end, then `deeptui show` of its directory, panel by panel, plot by plot (and the d key's view)."""
    from deeptui.tui.app import DeeptuiApp
    from tests.pilot import until

    eng = make_engine("run.epochs=3", "log.interval=2", "log.layers_interval=2", "run.eval_mode='both'")
    app = DeeptuiApp(eng)
    async with app.run_test(size=(120, 40)) as pilot:
        r = EventReader(eng)
        r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= 4, timeout=120)
        at = r.answer(eng.send(C.SaveCheckpoint())).step
        r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= at + 4)
        for cmd in (
            C.RestoreCheckpoint(which="last", lr_scale=0.5),
            C.SwitchOptimizer(name="adam"),
            C.SetMode(mode="eval"),
            C.RunTiming(repeats=1, sizes=(64, 32, 16)),
        ):
            assert isinstance(r.answer(eng.send(cmd)), E.CommandApplied)
        assert any(isinstance(e, E.TimingResult) for e in r.seen)
        await until(pilot, lambda: app.view.finished, timeout=120, what="the end of the run")
        live = screen_of(app)
        await pilot.press("d")
        await until(pilot, lambda: app.depth, what="the depth view")
        live_depth = screen_of(app)["#accuracy"]
        await pilot.press("q")
    shown_app = DeeptuiApp(HistorySession(eng.run_dir))
    async with shown_app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: shown_app.view.finished, what="the history")
        await pilot.pause(0.3)
        shown = screen_of(shown_app)
        await pilot.press("d")
        await until(pilot, lambda: shown_app.depth, what="the depth view")
        shown_depth = screen_of(shown_app)["#accuracy"]
        await pilot.press("q")
    for part in live:
        assert shown[part] == live[part], part
    assert shown_depth == live_depth
    assert "rewound" in live["#log"] and "in train mode" in live["#run"] and "restore" in live["#loss"]
    assert "ms" in live["#timing"]  # the timing's figures, compared above too


async def test_a_resumed_runs_dashboard_shows_the_whole_run(make_engine):
    """Bug: a --resume's dashboard began at the checkpoint: its plots drew only the new steps, the
    run panel had no test error, and its summary left out the test errors that `show` printed.
    Now the engine folds the earlier processes' events first; the live dashboard at the end, its
    summary and a client's history are `show`'s."""
    from deeptui.engine.remote.server import ControlServer
    from deeptui.tui.app import DeeptuiApp
    from tests.pilot import until

    first = make_engine("run.epochs=2", "log.interval=2")
    first.run()
    before = [e for e in read_run(first.run_dir)[1] if isinstance(e, E.EpochEnd)]
    assert [e.epoch for e in before] == [1, 2]
    resumed = make_engine("run.epochs=3", "log.interval=2", resume=first.run_dir)
    served, _ = ControlServer(resumed).history()
    assert [e.epoch for e in served if isinstance(e, E.EpochEnd)] == [1, 2]  # an attach's history too
    app = DeeptuiApp(resumed)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.view.finished, timeout=120, what="the end of the resumed run")
        live = screen_of(app)
        live_summary = summary_lines(app.view, str(resumed.run_dir))
        await pilot.press("q")
    curves = app.view.curves
    assert [e.epoch for e in curves.tests["eval"]] == [1, 2, 3] and curves.train_loss.x[0] <= 2  # from the start
    shown_app = DeeptuiApp(HistorySession(resumed.run_dir))
    async with shown_app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: shown_app.view.finished, what="the history")
        shown = screen_of(shown_app)
        shown_summary = summary_lines(shown_app.view, str(resumed.run_dir))
        await pilot.press("q")
    for part in live:
        assert shown[part] == live[part], part
    assert live_summary == shown_summary and any(line.startswith("test error:") for line in live_summary)


def test_a_rewind_to_an_epochs_end_replays_that_epoch_as_it_was(make_engine, monkeypatch):
    """After a rewind the loop goes on from the checkpoint's place in its epoch: the schedule of
    that epoch applies again and the same batches come in the same order, so the same model at
    the same step trains to the same loss (it went on with the next epoch's batches, its schedule
    unapplied)."""
    eng = make_engine("run.epochs=50", "log.interval=2", "log.checkpoint_every=1", "log.keep_checkpoints=100")
    r = EventReader(eng)  # the tiny preset: 16 steps an epoch, features frozen for the first
    pause: list[int] = []
    real_step = type(eng)._train_step

    def step_then_pause_in_epoch_3(self, x, y):  # the engine pauses itself there, however loaded
        out = real_step(self, x, y)
        if self.train.step == 35 and not pause:  # the step is counted after this call
            pause.append(self.send(C.Pause()))
        return out

    monkeypatch.setattr(type(eng), "_train_step", step_then_pause_in_epoch_3)
    eng.start()
    first = r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step == 18)  # epoch 2's first row
    r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= 36)  # into epoch 3
    assert isinstance(r.answer(pause[0]), E.CommandApplied)
    rewound = r.answer(eng.send(C.RestoreCheckpoint(which="epoch 1")))
    assert isinstance(rewound, E.CommandApplied) and eng.train.step == 16
    r.answer(eng.send(C.Resume()))
    unfreeze = r.wait(lambda e: isinstance(e, E.ScheduleAction))
    assert (unfreeze.action, unfreeze.step) == ("unfreeze", 16)  # epoch 2's schedule, at once
    again = r.wait(lambda e: isinstance(e, E.StepMetrics))
    eng.shutdown(timeout=60)
    assert again.step == 18 and again.loss == first.loss and again.accuracy == first.accuracy
