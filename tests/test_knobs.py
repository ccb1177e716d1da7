"""Training knobs people expect (issue 21 item 9): AdamW, a learning-rate schedule that a typed lr
overrides (and says so), gradient clipping with the share of clipped steps in the run panel and
metrics.csv."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.errors import ConfigError
from deeptui.engine.schedule import LrSchedule
from deeptui.tui import panels
from deeptui.tui.view import RunView
from tests.conftest import EventReader, tiny_config


def fold(events) -> RunView:
    view = RunView()
    for ev in events:
        view.apply(ev)
    return view


def train_rows(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["split"] == "train"]


def test_adamw_is_in_the_optimizer_table_with_decoupled_weight_decay(make_engine):
    eng = make_engine("optimizer.name=adamw", "optimizer.weight_decay=0.05", "run.max_steps=2")
    assert type(eng.optimizer) is torch.optim.AdamW
    assert eng.optimizer.param_groups[0]["weight_decay"] == 0.05
    r = EventReader(eng)
    eng.send(C.SwitchOptimizer(name="sgd"))
    back = eng.send(C.SwitchOptimizer(name="adamw"))
    eng.start()
    answer = r.answer(back)
    assert isinstance(answer, E.CommandApplied) and "sgd -> adamw" in answer.detail
    assert "weight_decay=0.05" in answer.detail
    r.wait(lambda e: isinstance(e, E.Finished))


def test_schedules_as_functions_of_the_step():
    cosine = LrSchedule(tiny_config("schedule.lr=cosine", "optimizer.lr=0.1", "schedule.lr_min_ratio=0.1"), 10, 101)
    assert cosine.lr(0) == pytest.approx(0.1)
    assert cosine.lr(50) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))
    assert cosine.lr(100) == pytest.approx(0.01)
    step = LrSchedule(tiny_config("schedule.lr=step", "schedule.lr_step_epochs=2", "optimizer.lr=1.0"), 10, 100)
    assert [step.lr(s) for s in (0, 19, 20, 40)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    assert "1 -> 0.1" in step.milestone(20) and not step.milestone(21)
    warm = LrSchedule(tiny_config("schedule.lr=warmup_cosine", "schedule.lr_warmup_steps=4"), 10, 100)
    lrs = [warm.lr(s) for s in range(8)]
    assert lrs[:5] == sorted(lrs[:5]) and lrs[4] == pytest.approx(0.05) and lrs[7] < lrs[4]
    assert "warm-up done" in warm.milestone(4)


def test_a_bad_schedule_is_one_line_with_the_closest_name():
    with pytest.raises(ConfigError, match=r"schedule.lr .*did you mean 'cosine'"):
        tiny_config("schedule.lr=cosin")


def test_the_schedule_sets_the_lr_until_a_typed_lr_overrides_it_and_says_so(make_engine):
    eng = make_engine("schedule.lr=step", "schedule.lr_step_epochs=1", "schedule.lr_gamma=0.5", "run.epochs=3")
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.ScheduleAction) and e.action == "lr")  # the decay after epoch 1
    second = r.wait(lambda e: isinstance(e, E.StepMetrics) and e.epoch == 2)
    assert second.lr == pytest.approx(0.025)
    answer = r.answer(eng.send(C.SetLearningRate(lr=0.3)))
    assert "overrides the lr schedule (step)" in answer.detail
    r.wait(lambda e: isinstance(e, E.Finished), timeout=120)
    rows = train_rows(eng.run_dir)
    assert float(rows[-1]["lr"]) == pytest.approx(0.3)  # epoch 3 would have been 0.0125
    view = fold(r.seen)
    assert ("lr" in {kind for _, kind in view.markers}) and not view.lr_schedule  # drawn as an lr marker
    assert any("overrides the lr schedule" in text for _, text in view.log)


def test_the_run_panel_names_the_schedule_in_force(make_engine):
    eng = make_engine("schedule.lr=cosine", "run.max_steps=8")
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.Finished))
    rows = train_rows(eng.run_dir)
    assert float(rows[0]["lr"]) > float(rows[-1]["lr"])  # falling along the cosine
    text = panels.run_panel(fold(r.seen)).plain
    assert "cosine" in text


@pytest.mark.parametrize("amp", ["off", "fp16"])
def test_clipping_counts_the_clipped_steps_in_the_panel_and_metrics_csv(make_engine, amp):
    eng = make_engine("optimizer.clip_grad_norm=1e-6", "run.max_steps=8", f"perf.amp={amp}")
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.Finished))
    rows = train_rows(eng.run_dir)
    assert rows and all(float(row["clipped"]) == 1.0 for row in rows)
    view = fold(r.seen)
    text = panels.run_panel(view).plain
    assert "clipped 100% of the last steps" in text and "clip=1e-06" in text


def test_no_clipping_leaves_the_column_empty_and_the_panel_quiet(make_engine):
    eng = make_engine("run.max_steps=4", "optimizer.clip_grad_norm=1e6")  # never reached: 0%
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.Finished))
    assert all(float(row["clipped"]) == 0.0 for row in train_rows(eng.run_dir))
    off = make_engine("run.max_steps=4")
    r2 = EventReader(off)
    off.start()
    r2.wait(lambda e: isinstance(e, E.Finished))
    assert all(row["clipped"] == "" for row in train_rows(off.run_dir))
    assert math.isnan(fold(r2.seen).clipped) and "clipped" not in panels.run_panel(fold(r2.seen)).plain


def test_clipping_and_a_schedule_make_no_host_sync(make_engine, monkeypatch):
    """The clipped count stays on the device until the interval's readback; the schedule sets host
    floats: the steps still reach Python only at the readbacks (as tests/test_perf.py counts)."""
    from tests.conftest import count_host_syncs

    eng = make_engine(
        *("run.epochs=1", "log.interval=4", "schedule.freeze_features_epochs=0"),
        "optimizer.clip_grad_norm=0.5",
        "schedule.lr=cosine",
    )
    syncs, steps = count_host_syncs(monkeypatch, eng)
    eng.run()
    assert eng.train.step == 16 and eng.sums.readbacks == 4
    increases = [b - a for a, b in zip(steps, steps[1:]) if b != a]
    assert increases == [1, 1, 1], (steps, syncs)
    assert set(syncs[: steps[-1]]) == {"tolist"}, syncs
