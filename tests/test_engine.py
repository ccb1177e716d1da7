"""The engine without any UI: push commands, read events, check the model and optimizer changed
as the events say."""

from __future__ import annotations

import csv
import subprocess
import sys
import time

import torch

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.runlog import EVENTS_HEADER, METRICS_HEADER
from tests.conftest import ROOT, EventReader


def test_switch_optimizer_changes_class_and_keeps_lr(make_engine):
    eng = make_engine()
    r = EventReader(eng)
    eng.send(C.Pause())
    eng.start()
    assert isinstance(eng.optimizer, torch.optim.SGD)
    ev = r.answer(eng.send(C.SwitchOptimizer()))  # next in choices: adam
    assert isinstance(ev, E.CommandApplied)
    assert isinstance(eng.optimizer, torch.optim.Adam)
    assert "sgd -> adam" in ev.detail and "state starts fresh" in ev.detail
    assert all(g["lr"] == 0.05 for g in eng.optimizer.param_groups)
    state = r.last(lambda e: isinstance(e, E.StateChanged))
    assert state.optimizer == "adam"
    assert state.lr == 0.05
    ev = r.answer(eng.send(C.SwitchOptimizer(name="momentum")))
    assert isinstance(ev, E.CommandApplied)
    assert isinstance(eng.optimizer, torch.optim.SGD) and eng.optimizer.param_groups[0]["momentum"] == 0.9
    ev = r.answer(eng.send(C.SwitchOptimizer(name="lbfgs")))
    assert isinstance(eng.optimizer, torch.optim.LBFGS)
    ev = r.answer(eng.send(C.SwitchOptimizer(name="lion")))
    assert isinstance(ev, E.CommandRejected) and "unknown optimizer" in ev.reason
    assert isinstance(eng.optimizer, torch.optim.LBFGS)


def test_lbfgs_trains(make_engine):
    eng = make_engine("optimizer.name='lbfgs'", "run.max_steps=4", "log.interval=2")
    r = EventReader(eng)
    eng.start()
    fin = r.wait(lambda e: isinstance(e, E.Finished))
    assert fin.state == "finished"
    losses = [e.loss for e in r.seen if isinstance(e, E.StepMetrics)]
    assert len(losses) == 2 and all(l == l for l in losses)


def test_freeze_unfreeze_sets_requires_grad_and_overrides_schedule(make_engine):
    eng = make_engine()
    r = EventReader(eng)
    eng.send(C.Pause())
    eng.start()
    feats = list(eng.model.features.parameters())
    assert all(not p.requires_grad for p in feats)  # schedule: frozen in epoch 1
    ev = r.answer(eng.send(C.SetFrozen(frozen=False)))
    assert isinstance(ev, E.CommandApplied)
    assert all(p.requires_grad for p in feats)
    ev = r.answer(eng.send(C.SetFrozen(frozen=True)))
    assert all(not p.requires_grad for p in feats)
    assert r.last(lambda e: isinstance(e, E.StateChanged)).frozen
    # The user's freeze overrides the schedule: still frozen in epoch 2.
    eng.send(C.Resume())
    fin = r.wait(lambda e: isinstance(e, E.Finished))
    assert fin.state == "finished"
    assert all(not p.requires_grad for p in feats)
    assert not any(isinstance(e, E.ScheduleAction) for e in r.seen)


def test_schedule_unfreezes_after_n_epochs(make_engine):
    eng = make_engine()
    r = EventReader(eng)
    eng.start()
    ev = r.wait(lambda e: isinstance(e, E.ScheduleAction))
    assert ev.action == "unfreeze" and ev.epoch == 2
    r.wait(lambda e: isinstance(e, E.Finished))
    assert all(p.requires_grad for p in eng.model.features.parameters())
    rows = list(csv.DictReader(open(eng.run_dir / "metrics.csv")))
    frozen_by_epoch = {(r["epoch"], r["frozen"]) for r in rows if r["split"] == "train"}
    assert ("1", "true") in frozen_by_epoch and ("2", "false") in frozen_by_epoch


def test_frozen_features_get_no_gradient_and_do_not_change(make_engine):
    eng = make_engine("run.max_steps=3")
    before = [p.detach().clone() for p in eng.model.features.parameters()]
    conv_before = eng.model.converter[0].weight.detach().clone()
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.Finished))
    for b, p in zip(before, eng.model.features.parameters()):
        assert p.grad is None and torch.equal(b, p.detach())
    assert not torch.equal(conv_before, eng.model.converter[0].weight.detach())


def test_freeze_rejected_on_model_without_features(make_engine):
    eng = make_engine("model.name='mlp'", "schedule.freeze_features_epochs=0")
    r = EventReader(eng)
    eng.send(C.Pause())
    eng.start()
    ev = r.answer(eng.send(C.SetFrozen(frozen=True)))
    assert isinstance(ev, E.CommandRejected) and "no pretrained features" in ev.reason


def test_mode_switch_sets_model_training(make_engine):
    eng = make_engine("model.name='mlp'", "model.dropout=0.5", "schedule.freeze_features_epochs=0", "run.max_steps=6")
    r = EventReader(eng)
    eng.send(C.Pause())
    eng.start()
    ev = r.answer(eng.send(C.SetMode(mode="eval")))
    assert isinstance(ev, E.CommandApplied)
    assert eng.model.training is False and eng.train.mode == "eval"
    ev = r.answer(eng.send(C.SetMode(mode="eval")))
    assert isinstance(ev, E.CommandRejected)
    eng.send(C.Resume())
    r.wait(lambda e: isinstance(e, E.Finished))
    rows = [x for x in csv.DictReader(open(eng.run_dir / "metrics.csv")) if x["split"] == "train"]
    assert rows and all(x["mode"] == "eval" for x in rows)
    assert eng.model.training is False  # evaluation restored the user's mode


def test_no_steps_while_paused_then_resume(make_engine):
    eng = make_engine()
    r = EventReader(eng)
    eng.send(C.Pause())
    eng.start()
    r.wait(lambda e: isinstance(e, E.StateChanged) and e.state == "paused")
    time.sleep(0.8)
    assert eng.train.step == 0
    ev = r.answer(eng.send(C.Pause()))
    assert isinstance(ev, E.CommandRejected) and "already paused" in ev.reason
    r.answer(eng.send(C.Resume()))
    r.wait(lambda e: isinstance(e, E.StepMetrics))
    assert eng.train.step > 0


def test_learning_rate_set_and_scale_apply_to_every_group(make_engine):
    eng = make_engine("optimizer.group_lr={ features = 0.005 }")
    r = EventReader(eng)
    eng.send(C.Pause())
    eng.start()
    lrs = {g["group"]: g["lr"] for g in eng.optimizer.param_groups}
    assert lrs == {"default": 0.05, "features": 0.005}
    r.answer(eng.send(C.ScaleLearningRate(factor=2.0)))
    lrs = {g["group"]: g["lr"] for g in eng.optimizer.param_groups}
    assert abs(lrs["default"] - 0.1) < 1e-12 and abs(lrs["features"] - 0.01) < 1e-12
    ev = r.answer(eng.send(C.SetLearningRate(lr=-1)))
    assert isinstance(ev, E.CommandRejected)
    r.answer(eng.send(C.SetLearningRate(lr=0.02)))
    assert abs(eng.optimizer.param_groups[0]["lr"] - 0.02) < 1e-12
    r.answer(eng.send(C.SwitchOptimizer(name="adam")))  # the groups and their lrs carry over
    lrs = {g["group"]: g["lr"] for g in eng.optimizer.param_groups}
    assert abs(lrs["features"] - 0.002) < 1e-12


def test_one_readback_per_logging_interval(make_engine):
    eng = make_engine("run.epochs=1", "log.interval=4")  # 256/16 = 16 steps -> 4 intervals
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.Finished))
    assert eng.train.step == 16
    assert eng.sums.readbacks == 4
    assert len([e for e in r.seen if isinstance(e, E.StepMetrics)]) == 4


def test_evaluate_now_runs_in_eval_mode_and_restores(make_engine):
    eng = make_engine()
    r = EventReader(eng)
    eng.send(C.Pause())
    eng.start()
    seen_modes = []
    eng.model.register_forward_pre_hook(lambda m, inp: seen_modes.append(m.training))
    r.answer(eng.send(C.EvaluateNow()))
    ev = r.last(lambda e: isinstance(e, E.EpochEnd))
    assert 0 <= ev.test_error_pct <= 100
    assert seen_modes and not any(seen_modes)
    assert eng.model.training is True


def test_seeded_cpu_runs_are_reproducible(make_engine):
    losses = []
    for _ in range(2):
        eng = make_engine("run.max_steps=8")
        r = EventReader(eng)
        eng.start()
        r.wait(lambda e: isinstance(e, E.Finished))
        losses.append([e.loss for e in r.seen if isinstance(e, E.StepMetrics)])
    assert losses[0] == losses[1] and len(losses[0]) == 2


def test_run_directory_has_three_files_with_exact_headers(make_engine):
    eng = make_engine("run.epochs=1")
    r = EventReader(eng)
    eng.start()
    eng.send(C.SaveCheckpoint())
    r.wait(lambda e: isinstance(e, E.Finished))
    with open(eng.run_dir / "metrics.csv") as f:
        assert f.readline().strip() == ",".join(METRICS_HEADER)
        assert f.readline().strip() != ""
    with open(eng.run_dir / "events.csv") as f:
        assert f.readline().strip() == ",".join(EVENTS_HEADER)
    assert (eng.run_dir / "config.toml").read_text().count("[optimizer]") == 1
    events = [row["event"] for row in csv.DictReader(open(eng.run_dir / "events.csv"))]
    assert events[0] == "start" and events[-1] == "finished"
    assert "applied:SaveCheckpoint" in events
    rows = list(csv.DictReader(open(eng.run_dir / "metrics.csv")))
    assert {r["split"] for r in rows} == {"train", "test"}
    assert all(len(r) == len(METRICS_HEADER) and None not in r.values() for r in rows)


def test_the_end_of_a_run_is_labelled_with_its_last_epoch(make_engine):
    """After 2 epochs the final test row, checkpoint and 'finished' say epoch 2, not 3."""
    eng = make_engine("run.epochs=2")
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.Finished))
    events = eng.events.read(0)[0]
    assert max(e.epoch for e in events) == 2
    assert isinstance(events[-1], E.Finished) and events[-1].epoch == 2
    rows = list(csv.DictReader(open(eng.run_dir / "events.csv")))
    assert rows[-1]["event"] == "finished" and rows[-1]["epoch"] == "2"
    metrics = list(csv.DictReader(open(eng.run_dir / "metrics.csv")))
    assert {r["epoch"] for r in metrics} == {"1", "2"}


def test_engine_does_not_import_textual():
    code = (
        "import sys, deeptui.engine.loop, deeptui.engine.data, deeptui.engine.config, "
        "deeptui.engine.timing; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'plotext') "
        "or m.startswith('deeptui.tui')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rows_written_while_paused_reach_the_disk(make_engine):
    eng = make_engine("log.flush_seconds=0.2")
    r = EventReader(eng)
    eng.send(C.Pause())
    eng.start()
    r.answer(eng.send(C.SetMode(mode="eval")))
    # still paused: nothing else is written, yet the rows reach the disk within flush_seconds
    deadline = time.monotonic() + 30
    while "applied:SetMode" not in (eng.run_dir / "events.csv").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    events = (eng.run_dir / "events.csv").read_text()
    assert "applied:Pause" in events and "applied:SetMode" in events


def test_the_first_training_row_is_on_disk_at_once(tmp_path):
    """The curve's first point is in metrics.csv as soon as it is logged (a reader tailing the
    file, or deeptui ls, sees it), not at the next 2-second flush; later rows batch as before."""
    from deeptui.engine.runlog import RunLog

    log = RunLog(tmp_path, flush_seconds=3600)
    row = dict(loss=2.3, accuracy=0.1, lr=0.05, optimizer="sgd", frozen=False, mode="train", samples_per_s=100.0)
    log.record(E.StepMetrics(1.0, 1, 10, samples_seen=160, **row))
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1].split(",")[2] == "10"
    log.record(E.StepMetrics(2.0, 1, 20, samples_seen=320, **row))
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 2  # batched until a flush
    log.close()
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 3
