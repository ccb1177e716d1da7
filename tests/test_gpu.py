"""GPU-only checks (skipped without CUDA; benchmarks/gpu_check.sh runs them on a lent GPU)."""

from __future__ import annotations

import pytest
import torch

from deeptui.engine import events as E
from tests.conftest import EventReader

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def run_strict(make_engine, monkeypatch, *settings: str):
    """The engine with torch.cuda.set_sync_debug_mode('error') inside every training step (any
    host sync raises); returns it once finished."""
    eng = make_engine("run.device='cuda'", "run.epochs=8", "schedule.freeze_features_epochs=1", *settings)
    real = type(eng)._train_step

    def strict_step(self, x, y):
        torch.cuda.set_sync_debug_mode("error")
        try:
            real(self, x, y)
        finally:
            torch.cuda.set_sync_debug_mode(0)

    monkeypatch.setattr(type(eng), "_train_step", strict_step)
    r = EventReader(eng)
    eng.start()
    fin = r.wait(lambda e: isinstance(e, E.Finished))
    errors = [e.message for e in r.seen if isinstance(e, E.RunError)]
    assert fin.state == "finished", errors
    return eng


@pytest.mark.parametrize(
    "extra",
    [[], ["perf.amp='bf16'", "perf.channels_last=true"], ["perf.amp='fp16'", "optimizer.name='momentum'"]],
    ids=["fp32", "bf16-cl", "fp16-fused-momentum"],
)
def test_training_step_is_sync_free_on_cuda(make_engine, monkeypatch, extra):
    """120 steps through the unfreeze at step 17, the layer probe watching every 5th (its default
    interval, 50, was never reached in 20 steps)."""
    eng = run_strict(make_engine, monkeypatch, "run.max_steps=120", "log.layers_interval=5", *extra)
    assert eng.train.step == 120 and eng.layers.readbacks == 24


@pytest.mark.parametrize("fused", ["true", "false"], ids=["fused", "foreach"])
@pytest.mark.parametrize("name", ["adam", "momentum"])
def test_adam_and_momentum_steps_are_sync_free_on_cuda(make_engine, monkeypatch, name, fused):
    """Fused, and unfused (CUDA's foreach kernels, whose step counters stay on the host), through
    the unfreeze: Adam's bias correction and the momentum buffers read nothing back."""
    eng = run_strict(make_engine, monkeypatch, "run.max_steps=40", f"optimizer.name='{name}'", f"perf.fused={fused}")
    assert eng.train.step == 40
