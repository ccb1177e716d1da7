"""GPU-only checks (skipped without CUDA; benchmarks/gpu_check.sh runs them on a lent GPU)."""

from __future__ import annotations

import pytest
import torch

from deeptui.engine import events as E
from tests.conftest import EventReader

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize(
    "extra",
    [[], ["perf.amp='bf16'", "perf.channels_last=true"], ["perf.amp='fp16'", "optimizer.name='momentum'"]],
    ids=["fp32", "bf16-cl", "fp16-fused-momentum"],
)
def test_training_step_is_sync_free_on_cuda(make_engine, monkeypatch, extra):
    """torch.cuda.set_sync_debug_mode('error') inside every training step: any host sync raises.
    120 steps through the unfreeze at step 17, the layer probe watching every 5th (its default
    interval, 50, was never reached in 20 steps)."""
    eng = make_engine(
        "run.device='cuda'",
        "run.epochs=8",
        "run.max_steps=120",
        "log.layers_interval=5",
        "schedule.freeze_features_epochs=1",
        *extra,
    )
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
    assert eng.train.step == 120 and eng.layers.readbacks == 24
