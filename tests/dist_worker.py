"""One rank of a data-parallel test run (started by torchrun from tests/test_distributed.py and
benchmarks/gpu_check.sh).

mode "steer": a fused fp16 momentum run with crop+flip; rank 0 switches the optimizer and
unfreezes the features mid-run, then saves a checkpoint and restores it. mode "factory": the same
steering on presets/own_model.toml (examples/stripes.py's model and data, model.freeze's
modules). mode "nan": the learning rate makes the loss non-finite; rank 0 is watched by a
dashboard (on_nan = "auto" pauses there) and its user stops the run once it has paused. mode
"stopped": rank 0's user stops the run mid-run (a run that did not finish: gpu_check.sh's test).
mode "slow_eval": rank 0's evaluation of the test set takes longer than run.collective_timeout_s.

Every rank then writes what its own engine ended with to <out>/rank<N>.json, and exits 1 when
its run did not end as its mode expects (finished; stopped for "nan")."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deeptui.engine import checkpoint, distributed, models  # noqa: E402
from deeptui.engine import commands as C  # noqa: E402
from deeptui.engine import events as E  # noqa: E402
from deeptui.engine.build import build_engine  # noqa: E402
from deeptui.engine.config import load_config  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402

MODES = {
    "steer": [
        "schedule.freeze_features_epochs=5",
        "optimizer.name='momentum'",
        "perf.fused=true",
        "perf.amp='fp16'",
        "data.crop_padding=2",
        "data.flip=true",
    ],
    "nan": ["optimizer.lr=1e30", "run.on_nan='auto'"],
    "factory": ["data.n_train=200", "data.n_test=40", "data.batch_size=20", "log.system_seconds=0"],
    "stopped": [],  # rank 0's user stops the run mid-run: a run that did not finish
    # rank 0's evaluation (8 test batches, slowed to 1 s each) outlasts the collective timeout
    "slow_eval": ["run.epochs=2", "run.collective_timeout_s=4", "data.test_batch_size=8", "log.system_seconds=0"],
}
SLOW_BATCH_S = 1.0


class SlowBatches:
    """A test set whose batches take SLOW_BATCH_S each; `seconds` is how long the last pass took."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0

    def __len__(self):
        return len(self.inner)

    def __iter__(self):
        t0 = time.monotonic()
        for batch in self.inner:
            time.sleep(SLOW_BATCH_S)
            yield batch
        self.seconds = time.monotonic() - t0


def main(out: Path, mode: str) -> str:
    device = os.environ.get("DEEPTUI_TEST_DEVICE", "cpu")  # benchmarks/gpu_check.sh: cuda (NCCL)
    common = ["run.epochs=1", "log.interval=2", f"run.device='{device}'", *MODES[mode]]
    if mode == "factory":
        os.chdir(ROOT)  # where `examples` is found
        cfg = load_config(ROOT / "presets" / "own_model.toml", common)
    else:
        cfg = tiny_config(*common)
    broadcasts = []
    real_broadcast = distributed.broadcast_object

    def counting_broadcast(obj, info):
        broadcasts.append(type(obj).__name__)
        return real_broadcast(obj, info)

    distributed.broadcast_object = counting_broadcast  # control messages: how many, how often
    loads = []
    real_load = checkpoint.load

    def counting_load(path, cfg=None):
        loads.append(str(path))
        return real_load(path, cfg)

    checkpoint.load = counting_load  # who reads a checkpoint file
    eng = build_engine(cfg, data_root=out / "data", log_dir=out / "runs")

    def steer():  # rank 0's user presses o, then f, mid-run
        while eng.train.step < 3:
            time.sleep(0.005)
        eng.send(C.SwitchOptimizer(name="adam"))
        eng.send(C.SetFrozen(frozen=False))
        while eng.train.step < 6:
            time.sleep(0.005)
        eng.send(C.SaveCheckpoint())
        eng.send(C.RestoreCheckpoint())

    def stop_mid_run():
        while eng.train.step < 3:
            time.sleep(0.005)
        eng.send(C.Stop(reason="the user stopped the run"))

    def stop_when_paused():  # rank 0's user sees the pause (the NaN dialog) and stops the run
        while eng.state != "paused":
            time.sleep(0.005)
        eng.send(C.Stop(reason="user stopped after the non-finite loss"))

    if eng.is_main and mode == "slow_eval":
        eng.data.test = SlowBatches(eng.data.test)
    elif eng.is_main:
        eng.interactive = mode == "nan"  # a dashboard watches rank 0 only
        user = {"nan": stop_when_paused, "stopped": stop_mid_run}.get(mode, steer)
        threading.Thread(target=user, daemon=True).start()
    eng.run()
    evs = eng.events.read(0)[0]
    applied = {e.command: e.step for e in evs if isinstance(e, E.CommandApplied)}
    (out / f"rank{eng.dist.rank}.json").write_text(
        json.dumps(
            {
                "optimizer": type(eng.optimizer).__name__,
                "features_require_grad": [
                    p.requires_grad
                    for m in models.freeze_targets(eng.model, eng.trainer.freeze)
                    for p in m.parameters()
                ],
                "step": eng.train.step,
                "applied_at": applied,
                "final_state": eng.final_state,
                "states": [e.state for e in evs if isinstance(e, E.StateChanged)],
                "errors": [e.message for e in evs if isinstance(e, E.RunError)],
                "fc_weight_sum": float([p for p in eng.model.parameters() if p.dim() == 2][-1].detach().sum()),
                "finite": all(bool(p.isfinite().all()) for p in eng.model.parameters()),
                "broadcasts": broadcasts,
                "checkpoint_loads": loads,
                "evaluation_s": getattr(eng.data.test, "seconds", None),
            }
        )
    )
    return eng.final_state


EXPECTED = {"nan": "stopped"}  # how each mode's run ends; any other end is this rank's exit 1


if __name__ == "__main__":
    mode = sys.argv[2] if len(sys.argv) > 2 else "steer"
    state = main(Path(sys.argv[1]), mode)
    sys.exit(0 if state == EXPECTED.get(mode, "finished") else 1)
