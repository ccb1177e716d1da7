"""Invariants under any sequence of commands: a Hypothesis state machine drives a real engine on a
tiny model with random sequences of pause, resume, optimizer switches, lr set and scale, freeze,
unfreeze, train/eval mode, test mode, save, restore (each checkpoint kind), timing, a non-finite
loss, training and stop, under a step lr schedule and gradient clipping; after every rule and at
the end it checks that every view of the run tells what the engine did.

`make test` runs a few sequences; DEEPTUI_STATEFUL_EXAMPLES=2000 runs thousands."""

from __future__ import annotations

import csv
import os
import shutil

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.build import build_engine
from deeptui.engine.checkpoint import NONFINITE
from deeptui.engine.history import HistorySession
from deeptui.engine.state import RunState
from deeptui.tui.summary import summary_lines
from deeptui.tui.view import RunView
from tests.conftest import EventReader, tiny_config

EXAMPLES = int(os.environ.get("DEEPTUI_STATEFUL_EXAMPLES", "6"))
BATCH, EVERY = 8, 2
SETTINGS = (  # the tiny preset (features frozen for the first epoch), smaller, with every file and kind of checkpoint
    "run.epochs=1000",
    "run.on_nan='pause'",
    f"data.batch_size={BATCH}",
    "data.train_size=32",
    "data.test_size=16",
    "model.blocks=1",
    "model.channels=4",
    f"log.interval={EVERY}",
    "log.checkpoint_every=1",
    "log.keep_checkpoints=2",
    "log.layers_interval=3",
    "log.system_seconds=0",
    "log.flush_seconds=0.2",
    "optimizer.clip_grad_norm=1.0",  # clipping and a step schedule: the lr follows it unless a command set one
    "schedule.lr='step'",
    "schedule.lr_step_epochs=2",
    "schedule.lr_gamma=0.5",
)


def fold(events) -> RunView:
    view = RunView()
    for ev in events:
        view.apply(ev)
    return view


class OneTruth(RuleBasedStateMachine):
    """The engine is paused between rules (`train` lets it run a few steps), so that what the
    views say can be compared with the engine's own state without a race."""

    def __init__(self):
        super().__init__()
        self.eng = None

    @initialize()
    def start(self):
        import tempfile

        self.tmp = tempfile.mkdtemp(prefix="deeptui-machine-")
        self.eng = build_engine(tiny_config(*SETTINGS), data_root=f"{self.tmp}/data", log_dir=f"{self.tmp}/runs")
        self.r = EventReader(self.eng)
        self.sent: list[int] = []
        self.orphaned_past: list[int] = []  # for each rewind: the step it went back to
        self.eng.send(C.Pause())
        self.eng.start()
        self.r.wait(lambda e: isinstance(e, E.StateChanged) and e.state == "paused")
        self.ended = False

    def teardown(self):
        if self.eng is not None:
            try:
                if self.eng.alive:
                    self.eng.shutdown(timeout=60)
                self.final_checks()
            finally:
                shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- driving ------------------------------------------------------------------------

    def snapshot(self) -> tuple:
        t = self.eng.trainer
        groups = tuple(g["lr"] for g in t.optimizer.param_groups)
        return (self.eng.state, tuple(sorted(t.train.state_dict().items())), t.frozen, t.eval_mode, groups)

    def command(self, cmd: C.Command) -> E.Event:
        """Send one command while paused; its one answer; a rejected one changed nothing."""
        before = self.snapshot()
        self.sent.append(self.eng.send(cmd))
        answer = self.r.answer(cmd.id, timeout=120)
        if isinstance(answer, E.CommandRejected):
            assert self.snapshot() == before, f"{answer.command} was rejected but changed the run"
        return answer

    def paused(self) -> bool:
        return not self.ended and self.eng.state == RunState.PAUSED

    @precondition(lambda self: self.paused())
    @rule(steps=st.integers(1, 6))
    def train(self, steps):
        """Resume, let it train a few steps (or up to a non-finite loss), pause again."""
        target = self.eng.train.step + steps
        self.command(C.Resume())
        self.r.wait(
            lambda e: (
                (isinstance(e, E.StepMetrics) and e.step >= target)
                or (isinstance(e, E.StateChanged) and e.state == "paused")
            ),
            timeout=120,
        )
        if self.eng.state != RunState.PAUSED:
            self.command(C.Pause())
        else:  # the engine paused itself (a non-finite loss): wait until it waits between steps
            self.command(C.FlushLogs())

    @precondition(lambda self: not self.ended)
    @rule(name=st.sampled_from(["sgd", "adam", "adamw", "momentum", "rmsprop", "", "nope"]))
    def switch(self, name):
        self.command(C.SwitchOptimizer(name=name))

    @precondition(lambda self: not self.ended)
    @rule(lr=st.sampled_from([0.01, 0.1, 0.0, -1.0, float("nan")]))
    def set_lr(self, lr):
        self.command(C.SetLearningRate(lr=lr))

    @precondition(lambda self: not self.ended)
    @rule(factor=st.sampled_from([2.0, 0.5, 0.0]))
    def scale_lr(self, factor):
        self.command(C.ScaleLearningRate(factor=factor))

    @precondition(lambda self: not self.ended)
    @rule(frozen=st.booleans())
    def freeze(self, frozen):
        self.command(C.SetFrozen(frozen=frozen))

    @precondition(lambda self: not self.ended)
    @rule(mode=st.sampled_from(["train", "eval", "sideways"]))
    def mode(self, mode):
        self.command(C.SetMode(mode=mode))

    @precondition(lambda self: not self.ended)
    @rule(mode=st.sampled_from(["eval", "train", "both"]))
    def test_mode(self, mode):
        self.command(C.SetEvalMode(mode=mode))

    @precondition(lambda self: not self.ended)
    @rule()
    def evaluate(self):
        self.command(C.EvaluateNow())

    @precondition(lambda self: not self.ended)
    @rule()
    def save(self):
        self.command(C.SaveCheckpoint())

    @precondition(lambda self: not self.ended)
    @rule(which=st.sampled_from(["last", "best", "epoch 1", "epoch 2", "epoch 3", "the middle one"]))
    def restore(self, which):
        answer = self.command(C.RestoreCheckpoint(which=which))
        if isinstance(answer, E.CommandApplied):
            self.orphaned_past.append(self.eng.train.step)

    @precondition(lambda self: not self.ended)
    @rule()
    def timing(self):
        self.command(C.RunTiming(repeats=1, sizes=(64, 32, 16)))

    @precondition(lambda self: self.paused())
    @rule()
    def blow_up(self):
        """An absurd learning rate, then training: the loss turns non-finite and the engine pauses."""
        self.command(C.SetLearningRate(lr=1e30))
        self.train(6)

    @precondition(lambda self: not self.ended)
    @rule()
    def stop(self):
        self.command(C.Stop(reason="the machine stops"))
        assert self.eng.wait_finished(120)
        self.ended = True

    @precondition(lambda self: self.ended)
    @rule()
    def show(self):
        """After the end: the run as deeptui show opens it is the run as the dashboard saw it."""
        self.final_checks()

    # ---- what must hold after every rule --------------------------------------------------

    @invariant()
    def the_view_is_the_engine(self):
        if self.eng is None:
            return
        v = fold(self.eng.events.read(0)[0])
        t = self.eng.trainer
        assert v.state == self.eng.state
        assert (v.optimizer, v.lr, v.frozen, v.mode, v.eval_mode) == (
            t.train.optimizer,
            t.train.base_lr,
            t.frozen,
            t.train.mode,
            t.eval_mode,
        )
        assert v.step == t.train.step
        assert v.lr_schedule == t.settings().lr_schedule

    @invariant()
    def the_schedule_sets_the_lr_unless_the_user_did(self):
        """The lr of the last step is the schedule's until a typed or scaled lr (or the NaN dialog's)
        overrides it; a rewind takes the checkpoint's lr and override with it."""
        if self.eng is None:
            return
        t = self.eng.trainer
        if t.follows_schedule:
            assert t.train.base_lr == pytest.approx(t.schedule.lr(max(t.train.step - 1, 0)))
        assert all(g["lr"] == pytest.approx(t.train.base_lr * g.get("ratio", 1.0)) for g in t.optimizer.param_groups)

    @invariant()
    def every_command_is_answered_once(self):
        if self.eng is None:
            return
        answers = [
            e.command_id
            for e in self.eng.events.read(0)[0]
            if isinstance(e, (E.CommandApplied, E.CommandRejected)) and e.command_id in set(self.sent)
        ]
        assert sorted(answers) == sorted(self.sent)

    @invariant()
    def the_files_keep_one_history(self):
        if self.eng is None:
            return
        self.eng.report.log.flush()
        run_dir = self.eng.run_dir
        with open(run_dir / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        times = [float(r["time_s"]) for r in rows]
        assert times == sorted(times), "time_s went back"
        train = [int(r["step"]) for r in rows if r["split"] == "train"]
        assert train == sorted(set(train)), "a training step twice, or back"
        tests = [int(r["step"]) for r in rows if r["split"] == "test"]
        assert tests == sorted(tests), "a test row of a branch that was left"
        orphaned = run_dir / "metrics.csv.orphaned"
        if orphaned.exists():
            steps = [int(line.split(",")[2]) for line in orphaned.read_text().splitlines()]
            assert len(steps) == sum(e.orphaned for e in self.eng.events.read(0)[0] if isinstance(e, E.Rewound))
            assert all(s > min(self.orphaned_past) for s in steps)

    @invariant()
    def every_checkpoint_is_finite(self):
        if self.eng is None:
            return
        for path in self.eng.run_dir.glob("*.pt"):
            if path.name == NONFINITE:
                continue
            st_ = torch.load(path, weights_only=True)
            assert st_["finite"] and all(torch.isfinite(v).all() for v in st_["model"].values()), path

    @invariant()
    def samples_per_second_is_over_training_time(self):
        if self.eng is None:
            return
        events = self.eng.events.read(0)[0]
        previous = None
        for ev in events:
            if isinstance(ev, (E.Rewound, E.RunStarted)):
                previous = None
            elif isinstance(ev, E.StepMetrics):
                if previous is not None and ev.train_s > previous.train_s:
                    implied = ev.samples_per_s * (ev.train_s - previous.train_s)
                    assert implied <= (ev.step - previous.step) * BATCH * 1.1 + BATCH, (previous, ev)
                previous = ev

    # ---- and at the end -------------------------------------------------------------------

    def final_checks(self):
        """What show folds from the files is what the live view folded: settings, tests by mode,
        steps, samples, interventions; and the printed summary says the same."""
        live = fold(self.eng.events.read(0)[0])
        shown = fold(HistorySession(self.eng.run_dir).events.read(0)[0])
        assert shown.state == live.state and shown.state.ended
        for name in ("optimizer", "lr", "frozen", "mode", "eval_mode", "step", "epoch", "time_s", "markers"):
            assert getattr(shown, name) == getattr(live, name), name
        same = lambda a, b: repr(a) == repr(b)  # noqa: E731 - a non-finite loss is nan on both sides
        assert same(shown.curves.train_loss, live.curves.train_loss)
        assert shown.curves.samples_seen == live.curves.samples_seen
        for mode in ("eval", "train"):
            assert same(shown.curves.final_test(mode), live.curves.final_test(mode))
            assert same(shown.curves.best_test(mode), live.curves.best_test(mode))
        assert shown.log == live.log  # every intervention, each answer, in the same words
        assert summary_lines(shown, self.eng.run_dir) == summary_lines(live, self.eng.run_dir)


OneTruth.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=EXAMPLES < 50,  # make test: the same few sequences every time
)


@pytest.mark.timeout(max(900, 5 * EXAMPLES))  # a long search (the environment variable) gets its time
class TestOneTruth(OneTruth.TestCase):
    pass
