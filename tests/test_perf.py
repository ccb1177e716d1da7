"""The fast path: no host sync inside a training step, [perf] options that run, compile variants."""

from __future__ import annotations

import torch

from deeptui.engine import events as E
from tests.conftest import EventReader, count_host_syncs


def test_training_steps_make_no_host_sync(make_engine, monkeypatch):
    """Count every way a tensor's value can reach Python: only the readback per logging interval
    (and the evaluation) may do it."""
    eng = make_engine("run.epochs=1", "log.interval=4", "schedule.freeze_features_epochs=0")
    syncs, steps = count_host_syncs(monkeypatch, eng)
    eng.run()
    assert eng.train.step == 16 and eng.sums.readbacks == 4
    # syncs counted before each step grow only at readbacks: 16 steps, 4 intervals -> 4 tolist calls
    # before the last step's readback; the evaluation adds 1 at the end.
    assert steps[0] == 0
    increases = [b - a for a, b in zip(steps, steps[1:]) if b != a]
    assert increases == [1, 1, 1], (steps, syncs)
    assert syncs.count("tolist") == 5
    # while training, the readbacks only (the checkpoints after it check finiteness with a bool)
    assert set(syncs[: steps[-1]]) == {"tolist"}, syncs


def test_channels_last_and_amp_options_train(make_engine):
    eng = make_engine("perf.channels_last=true", "perf.amp='bf16'", "run.max_steps=4")
    r = EventReader(eng)
    eng.start()
    assert r.wait(lambda e: isinstance(e, E.Finished)).state == "finished"
    assert eng.model.converter[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert eng.trainer.runner.amp_dtype is torch.bfloat16  # honoured on the CPU too (issue 13): the suite runs it


def test_compile_keeps_a_variant_per_freeze_state(make_engine, monkeypatch):
    compiled = []

    def fake_compile(model, **kw):  # the real compiler is slow on 2 cores; the bookkeeping is ours
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    eng = make_engine("perf.compile=true")  # frozen in epoch 1, trainable in epoch 2
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.Finished))
    assert len(compiled) == 2 and set(eng.trainer.runner.variants) == {True, False}
    states = [e.state for e in r.seen if isinstance(e, E.StateChanged)]
    assert states.count("compiling") == 2
    assert states[states.index("compiling") + 1] == "running"


def test_a_watched_step_makes_no_tensor_from_host_data(make_engine, monkeypatch):
    """Bug: the layer probe built two tensors from Python lists inside the watched step (each
    parameter's layer, and which parameters have a gradient): on CUDA each is a copy from pageable
    host memory, a sync every log.layers_interval steps. aten.lift_fresh is the op that makes a
    tensor of host data: a watched step may dispatch no more of them than a plain step. The
    features are frozen, so only some parameters have a gradient."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class HostData(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            HostData.count += func is torch.ops.aten.lift_fresh.default
            return func(*args, **(kwargs or {}))

    eng = make_engine("log.layers_interval=2", "run.max_steps=4", "run.epochs=1")
    assert eng.trainer.frozen
    per_step = []
    real_step = type(eng)._train_step

    def step(self, x, y):
        before = HostData.count
        with HostData():
            real_step(self, x, y)
        per_step.append(HostData.count - before)

    monkeypatch.setattr(type(eng), "_train_step", step)
    eng.run()
    assert eng.layers.readbacks == 2  # steps 2 and 4 were watched
    assert per_step[1] == per_step[0] and per_step[3] == per_step[2], per_step
