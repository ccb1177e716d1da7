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
    """torch.cuda.set_sync_debug_mode('error') inside every training step: any host sync raises."""
    eng = make_engine("run.device='cuda'", "run.max_steps=20", "schedule.freeze_features_epochs=1", *extra)
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
