"""The engine's invariants hold for a watched loop too: a Hypothesis state machine steers a loop of
the user's own (tests/ownloop.py, evaluating every 3 steps) with random sequences of pause, resume,
lr set and scale, freeze, mode, the commands it refuses (test mode, evaluate, an optimizer it was
not given), save, restore, a non-finite loss and stop; after every rule the views agree with the
loop's own model and optimizer, every command is answered once and changed nothing when rejected,
the files keep one history and every checkpoint is finite; at the end `show` tells what the live
view told. `make test` runs a few sequences; DEEPTUI_WATCH_EXAMPLES=500 runs many."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.checkpoint import NONFINITE
from deeptui.engine.history import HistorySession
from deeptui.engine.state import RunState
from deeptui.tui.summary import summary_lines
from tests.ownloop import OwnLoop
from tests.test_stateful import OneTruth, fold

EXAMPLES = int(os.environ.get("DEEPTUI_WATCH_EXAMPLES", "4"))


class WatchedTruth(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.loop = None

    @initialize()
    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="deeptui-watched-")
        self.loop = OwnLoop(
            f"{self.tmp}/runs",
            test_every=3,
            on_nan="pause",
            optimizers={"adam": lambda p: torch.optim.Adam(p, lr=1e-3), "sgd": lambda p: torch.optim.SGD(p, lr=0.05)},
        )
        self.run, self.r = self.loop.run, self.loop.reader
        self.eng = self.run  # the engine machine's invariants, reused below, read `eng`
        self.sent: list[int] = []
        self.orphaned_past: list[int] = []
        self.r.wait(lambda e: isinstance(e, E.StateChanged) and e.state == "paused")
        self.ended = False

    def teardown(self):
        if self.loop is not None:
            try:
                self.loop.finish()
                self.final_checks()
            finally:
                shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- driving ------------------------------------------------------------------------

    def snapshot(self) -> tuple:
        t = self.run.trainer
        groups = tuple(g["lr"] for g in t.optimizer.param_groups)
        return (self.run.state, tuple(sorted(t.train.state_dict().items())), t.frozen, t.model.training, groups)

    def command(self, cmd: C.Command) -> E.Event:
        before = self.snapshot()
        self.sent.append(self.run.send(cmd))
        answer = self.r.answer(cmd.id, timeout=120)
        if isinstance(answer, E.CommandRejected):
            assert self.snapshot() == before, f"{answer.command} was rejected but changed the run"
        return answer

    def paused(self) -> bool:
        return not self.ended and self.run.state == RunState.PAUSED

    @precondition(lambda self: self.paused())
    @rule(steps=st.integers(1, 6))
    def train(self, steps):
        target = self.run.train.step + steps

        def there(e: E.Event) -> bool:
            return (isinstance(e, E.StepMetrics) and e.step >= target) or (
                isinstance(e, E.StateChanged) and e.state == "paused"
            )

        answer = self.command(C.Resume())
        after = self.r.seen[len(self.r.seen) - self.r.seen[::-1].index(answer) :]  # read with the answer
        if not any(there(e) for e in after):  # a fast loop may be there already
            self.r.wait(there, timeout=120)
        if self.run.state != RunState.PAUSED:
            self.command(C.Pause())
        else:  # it paused itself (a non-finite loss): wait until it waits between steps
            self.command(C.FlushLogs())

    @precondition(lambda self: not self.ended)
    @rule(name=st.sampled_from(["adam", "sgd", "", "momentum", "nope"]))
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
    @rule(what=st.sampled_from(["test mode", "evaluate"]))
    def refused(self, what):
        """What a loop with its own test set refuses."""
        cmd = C.SetEvalMode(mode="both") if what == "test mode" else C.EvaluateNow()
        assert isinstance(self.command(cmd), E.CommandRejected)

    @precondition(lambda self: not self.ended)
    @rule()
    def save(self):
        self.command(C.SaveCheckpoint())

    @precondition(lambda self: not self.ended)
    @rule(which=st.sampled_from(["last", "best", "epoch 1"]))
    def restore(self, which):
        if isinstance(self.command(C.RestoreCheckpoint(which=which)), E.CommandApplied):
            self.orphaned_past.append(self.run.train.step)

    @precondition(lambda self: self.paused())
    @rule()
    def blow_up(self):
        """The loop's loss turns nan: the run pauses itself (run.on_nan = pause)."""
        self.loop.blow_up = True
        self.train(4)
        self.loop.blow_up = False

    @precondition(lambda self: not self.ended)
    @rule()
    def stop(self):
        self.command(C.Stop(reason="the machine stops"))
        self.loop.thread.join(120)
        assert self.run.final_state == "stopped"
        self.ended = True

    @precondition(lambda self: self.ended)
    @rule()
    def show(self):
        """After the end: the run as deeptui show opens it is the run as the dashboard saw it."""
        self.final_checks()

    # ---- what must hold after every rule: the engine machine's invariants, on this run -----

    @invariant()
    def the_view_is_the_loop(self):
        if self.loop is None:
            return
        v = fold(self.run.events.read(0)[0])
        t = self.run.trainer
        assert v.state == self.run.state
        assert (v.optimizer, v.lr, v.frozen, v.mode) == (t.train.optimizer, t.train.base_lr, t.frozen, t.train.mode)
        assert v.lr == t.optimizer.param_groups[0]["lr"] or not self.paused()  # the loop's own optimizer
        assert v.step == t.train.step

    @invariant()
    def every_command_is_answered_once(self):
        if self.loop is not None:
            OneTruth.every_command_is_answered_once(self)

    @invariant()
    def the_files_keep_one_history(self):
        if self.loop is not None:
            OneTruth.the_files_keep_one_history(self)

    @invariant()
    def every_checkpoint_is_finite(self):
        if self.loop is None:
            return
        for path in self.run.run_dir.glob("*.pt"):
            if path.name != NONFINITE:
                saved = torch.load(path, weights_only=True)
                assert saved["finite"] and all(torch.isfinite(v).all() for v in saved["model"].values()), path

    def final_checks(self):
        live = fold(self.run.events.read(0)[0])
        shown = fold(HistorySession(self.run.run_dir).events.read(0)[0])
        assert shown.state == live.state and shown.state.ended
        for name in ("optimizer", "lr", "frozen", "mode", "step", "epoch", "time_s", "markers"):
            assert getattr(shown, name) == getattr(live, name), name
        same = lambda a, b: repr(a) == repr(b)  # noqa: E731 - a non-finite loss is nan on both sides
        assert same(shown.curves.train_loss, live.curves.train_loss)
        assert same(shown.curves.final_test("eval"), live.curves.final_test("eval"))
        assert shown.log == live.log
        assert summary_lines(shown, self.run.run_dir) == summary_lines(live, self.run.run_dir)


WatchedTruth.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=EXAMPLES < 50,
)


@pytest.mark.timeout(600)
class TestWatchedTruth(WatchedTruth.TestCase):
    pass
