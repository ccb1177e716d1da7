"""One rank of a data-parallel test run (started by torchrun from tests/test_distributed.py).

Rank 0 switches the optimizer and unfreezes the features mid-run; every rank then writes what
its own engine ended with to <out>/rank<N>.json, so the test can compare the ranks."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deeptui.engine import commands as C  # noqa: E402
from deeptui.engine import events as E  # noqa: E402
from deeptui.engine.build import build_engine  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402


def main(out: Path) -> None:
    cfg = tiny_config("run.epochs=1", "schedule.freeze_features_epochs=5", "log.interval=2")
    eng = build_engine(cfg, data_root=out / "data", log_dir=out / "runs")

    def steer():  # rank 0's user presses o, then f, mid-run
        while eng.train.step < 3:
            time.sleep(0.005)
        eng.send(C.SwitchOptimizer(name="adam"))
        eng.send(C.SetFrozen(frozen=False))

    if eng.is_main:
        threading.Thread(target=steer, daemon=True).start()
    eng.run()
    evs = eng.events.read(0)[0]
    applied = {e.command: e.step for e in evs if isinstance(e, E.CommandApplied)}
    (out / f"rank{eng.dist.rank}.json").write_text(
        json.dumps(
            {
                "optimizer": type(eng.optimizer).__name__,
                "features_require_grad": [p.requires_grad for p in eng.model.features.parameters()],
                "step": eng.train.step,
                "applied_at": applied,
                "final_state": eng.final_state,
                "fc_weight_sum": float(eng.model.fc.weight.detach().sum()),
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
