"""The engine's parts, each on its own: the step runner, the interval sums, the command table,
the train state, checkpoints, and the Session protocol that front ends rely on."""

from __future__ import annotations

import time

import torch
from torch import nn

from deeptui.engine import commands as C
from deeptui.engine import control
from deeptui.engine.config import PerfConfig
from deeptui.engine.metrics import IntervalSums, evaluate
from deeptui.engine.remote.client import RemoteSession
from deeptui.engine.session import Session
from deeptui.engine.state import RunState, TrainState
from deeptui.engine.step import StepRunner
from tests.conftest import EventReader, tiny_config
from tests.fake import FakeSession


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


def test_step_runner_trains_and_returns_detached_tensors():
    model = tiny_model()
    runner = StepRunner(model, torch.device("cpu"), PerfConfig())
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,))
    before = model[1].weight.detach().clone()
    loss, logits = runner.step(opt, x, y, frozen=False)
    assert not loss.requires_grad and not logits.requires_grad and logits.shape == (8, 3)
    assert not torch.equal(before, model[1].weight)
    lbfgs = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=2)
    loss2, _ = runner.step(lbfgs, x, y, frozen=False, lbfgs=True)
    assert loss2.item() < loss.item()


def test_interval_sums_read_once_then_start_a_fresh_interval():
    trained = [10.0]  # the run's training clock, seconds
    sums = IntervalSums(torch.device("cpu"), lambda: trained[0])
    assert sums.read() is None  # nothing summed: no readback
    sums.add(torch.tensor(2.0), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    sums.add(torch.tensor(4.0), torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 0]))
    sums.add(torch.tensor(3.0), torch.tensor([[1.0, 0.0]] * 4), torch.tensor([0] * 4), timed=False)  # a compile's step
    trained[0] = 12.0
    loss, acc, n, rate = sums.read()
    assert (loss, acc, n) == (3.0, 7 / 8, 8) and sums.readbacks == 1
    assert rate == 2.0  # the 4 timed samples over the 2 training seconds
    assert sums.read() is None


def test_the_training_clock_stops_while_held_and_the_run_clock_goes_on():
    from deeptui.engine.clock import RunClock

    clock = RunClock(started_at=time.monotonic() - 5.0)
    assert clock.now() >= 5.0 and clock.trained() == 0.0  # held until the loop lets it run
    clock.release()
    time.sleep(0.05)
    with clock.held():
        stopped = clock.trained()
        time.sleep(0.1)
        assert clock.trained() == stopped  # a pause: no training time
    assert 0.04 < stopped < 0.1 and clock.now() > 5.15
    clock.continue_from(100.0, 40.0)  # a resume: both clocks go on from the checkpoint's
    assert 105.0 <= clock.now() < 106.0 and 40.0 <= clock.trained() < 41.0  # + the 5 s since launch


def test_evaluate_restores_the_mode_and_handles_an_empty_set():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(12, 3))
    model.train()
    batches = [(torch.randn(5, 3, 2, 2), torch.randint(0, 3, (5,)))]
    no_autocast = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    loss, acc = evaluate(model, batches, no_autocast, torch.device("cpu"))
    assert loss > 0 and 0 <= acc <= 1 and model.training
    assert evaluate(model, [], no_autocast, torch.device("cpu")) is None


def test_every_command_has_a_handler():
    assert set(control.HANDLERS) == set(C.ALL)


def test_train_state_round_trips_through_its_state_dict():
    t = TrainState(
        optimizer="adam",
        base_lr=0.1,
        epoch=2,
        step=50,
        batch_in_epoch=3,
        samples_seen=800,
        mode="eval",
        freeze_override=False,
        best_accuracy=0.5,
        best_epoch=2,
    )
    back = TrainState(optimizer="sgd", base_lr=1.0)
    back.load_state_dict(t.state_dict())
    assert back == t
    back.load_state_dict(TrainState(optimizer="sgd", base_lr=1.0).state_dict())
    assert back.freeze_override is None


def test_run_states_are_the_strings_events_carry():
    assert RunState.PAUSED == "paused" and str(RunState.RUNNING) == "running"
    assert RunState.FAILED.ended and not RunState.TIMING.ended


def test_a_checkpoint_restores_model_optimizer_and_counters(make_engine):
    eng = make_engine("run.max_steps=6", "optimizer.name='adam'")
    eng.run()
    path = eng.checkpoints.find("last")
    other = make_engine()
    r = EventReader(other)
    other.send(C.Pause())
    other.start()
    r.answer(other.send(C.RestoreCheckpoint()))  # its own run has no checkpoint yet
    from deeptui.engine import checkpoint

    other.trainer.load_state_dict(checkpoint.load(path, other.cfg), other.run_dir)
    assert other.train.step == 6 and other.train.optimizer == "adam"
    assert isinstance(other.optimizer, torch.optim.Adam) and other.optimizer.state
    for a, b in zip(eng.model.state_dict().values(), other.model.state_dict().values()):
        assert torch.equal(a, b)


def test_engine_remote_client_and_fake_implement_the_session(make_engine, tmp_path):
    eng = make_engine()
    assert isinstance(eng, Session)
    assert isinstance(FakeSession(tiny_config(), []), Session)
    (tmp_path / "config.toml").write_text('[run]\nname = "x"\n')
    assert isinstance(RemoteSession(tmp_path), Session)
