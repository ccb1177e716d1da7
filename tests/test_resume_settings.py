"""A resume with other [perf] settings than the checkpoint's, for every optimizer: fused off -> on,
fp32 -> fp16, channels_last off -> on. On a GPU these are a CPU run resumed on CUDA (where fused
is on by default) or a --set on resume; here the CPU runs the same code with the settings forced.

Each resumed run must train to its end, run what its settings say (and the panel say so), keep
every optimizer buffer in its weight's memory layout, and compute what the unfused single-tensor
kernels compute from the same checkpoint."""

from __future__ import annotations

import copy

import pytest
import torch

from deeptui.engine import checkpoint
from deeptui.engine import events as E
from deeptui.engine.registry import NAMES, OPTIMIZERS
from tests.test_device_parity import assert_same_weights, weights

SMALL = (
    "model.blocks=1",
    "model.channels=4",
    "data.train_size=64",
    "data.test_size=16",
    "schedule.freeze_features_epochs=0",
    "log.interval=2",
    "log.system_seconds=0",
    "optimizer.lr=0.005",  # rmsprop and adam diverge at the tiny preset's 0.05 in fp16
)
SAVED = ("perf.fused=false",)  # a CPU run's checkpoint
# what the resume runs with: perf.fused on (as on CUDA), then also fp16, then also channels_last
CASES = {
    "fused-off-on": ("perf.fused=true",),
    "fp32-fp16": ("perf.fused=true", "perf.amp='fp16'"),
    "channels_last-off-on": ("perf.fused=true", "perf.channels_last=true"),
}


def resume(make_engine, payload: dict, name: str, *settings: str):
    """The checkpoint resumed (a copy: the optimizer may adopt its tensors) for one more step."""
    return make_engine(f"optimizer.name='{name}'", "run.max_steps=3", *SMALL, *settings, resume=copy.deepcopy(payload))


def mismatched_layouts(optimizer) -> list[str]:
    return [
        f"{key} {tuple(v.stride())} vs {tuple(p.stride())}"
        for p, state in optimizer.state.items()
        for key, v in state.items()
        if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride()
    ]


@pytest.mark.parametrize("name", NAMES)
def test_a_resume_runs_the_settings_it_was_given(make_engine, name):
    saved = make_engine(f"optimizer.name='{name}'", "run.max_steps=2", *SMALL, *SAVED)
    saved.run()
    payload = checkpoint.load(saved.run_dir / checkpoint.LAST)
    fused = OPTIMIZERS[name].fused
    for case, settings in CASES.items():
        eng = resume(make_engine, payload, name, *settings)
        groups = eng.optimizer.param_groups
        assert [bool(g.get("fused")) for g in groups] == [fused] * len(groups), case
        assert ("fused" in eng.trainer.describe_optimizer().split()) == fused, case  # what the run panel shows
        assert not mismatched_layouts(eng.optimizer), case
        eng.run()
        events = eng.events.read(0)[0]
        assert eng.final_state == "finished", (case, [e.message for e in events if isinstance(e, E.RunError)])
        assert eng.train.step == 3 and all(torch.isfinite(p).all() for p in eng.model.parameters()), case
        said = [e.message for e in events if isinstance(e, E.Warning) and e.message.startswith("resumed with")]
        assert said and all(s.split("=")[0] in said[0] for s in settings), (case, said)
        if fused:  # the same step as the unfused single-tensor kernels take from the same checkpoint
            plain = resume(make_engine, payload, name, *settings, "perf.fused=false")
            plain.run()
            amp = "fp16" if "fp16" in case else "off"
            assert_same_weights(weights(plain), weights(eng), amp, adam_steps=1 if name == "adam" else 0)


def test_the_gradient_scalers_scale_is_resumed(make_engine):
    """Bug: the GradScaler's scale was not checkpointed: a resumed fp16 run started again at
    2**16 and skipped steps while it backed off to where the run had been."""
    eng = make_engine("optimizer.name='momentum'", "perf.amp='fp16'", "run.max_steps=4", *SMALL)
    eng.trainer.runner.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)  # the first steps overflow
    eng.run()
    scale = eng.trainer.runner.scaler.get_scale()
    assert scale < 2.0**40
    back = make_engine(
        "optimizer.name='momentum'",
        "perf.amp='fp16'",
        "run.max_steps=5",
        *SMALL,
        resume=checkpoint.load(eng.run_dir / checkpoint.LAST),
    )
    assert back.trainer.runner.scaler.get_scale() == scale
