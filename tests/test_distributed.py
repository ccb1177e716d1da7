"""Data-parallel runs on CPU with gloo and 2 processes, through torchrun's machinery."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_faults import assert_csv_complete, only_run_dir

pytestmark = pytest.mark.e2e  # torchrun and its ranks, in subprocesses

QUICK = str(ROOT / "presets" / "quickstart.toml")


def env() -> dict[str, str]:
    """The test's environment (read when a process starts: its own XDG_STATE_HOME, from conftest)."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def deeptui(*argv, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "deeptui", *argv], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout
    )


def train_losses(run_dir: Path) -> list[tuple[int, float]]:
    rows = csv.DictReader(open(run_dir / "metrics.csv"))
    return [(int(r["step"]), float(r["loss"])) for r in rows if r["split"] == "train"]


# An MLP without batch norm or dropout: DDP averages gradients, so 2 ranks with half the
# global batch each compute the same update as 1 process with the whole batch.
MLP = [
    "--set",
    "model.name='mlp'",
    "--set",
    "model.hidden=[64]",
    "--set",
    "schedule.freeze_features_epochs=0",
    "--set",
    "data.train_size=640",
    "--set",
    "data.test_size=100",
    "--set",
    "log.interval=5",
    "--set",
    "optimizer.name='momentum'",
    "--set",
    "optimizer.lr=0.02",
    "--epochs",
    "2",
    "--headless",
    "--device",
    "cpu",
]


def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    one = deeptui(QUICK, "--log-dir", str(tmp_path / "one"), *MLP)
    assert one.returncode == 0, one.stderr
    two = deeptui(QUICK, "--nproc", "2", "--log-dir", str(tmp_path / "two"), *MLP)
    assert two.returncode == 0, two.stderr[-3000:]
    run_one, run_two = only_run_dir(tmp_path / "one"), only_run_dir(tmp_path / "two")
    assert_csv_complete(run_two)
    a, b = train_losses(run_one), train_losses(run_two)
    assert [s for s, _ in a] == [s for s, _ in b] and len(a) == 4  # 10 steps per epoch, 2 epochs
    for (_, la), (_, lb) in zip(a, b):
        assert abs(la - lb) <= 1e-4 * max(1.0, abs(la)), (a, b)  # stated tolerance: 1e-4 relative
    # Only rank 0 wrote: one run directory, one set of files, one "start".
    events = [r["event"] for r in csv.DictReader(open(run_two / "events.csv"))]
    assert events.count("start") == 1 and events[-1] == "finished"
    assert "deeptui: finished" in two.stdout and two.stdout.count("deeptui: started") == 1


def two_ranks(tmp_path: Path, mode: str) -> tuple[dict, dict]:
    """tests/dist_worker.py on 2 gloo ranks; what each rank's engine ended with."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(ROOT / "tests" / "dist_worker.py"),
            str(tmp_path),
            mode,
        ],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1))
    return r0, r1


def test_a_command_mid_run_applies_at_the_same_step_on_every_rank(tmp_path):
    """Fused momentum in fp16 with crop+flip on 2 ranks; rank 0 switches to adam and unfreezes."""
    r0, r1 = two_ranks(tmp_path, "steer")
    assert r0["optimizer"] == r1["optimizer"] == "Adam"
    assert all(r0["features_require_grad"]) and all(r1["features_require_grad"])
    assert r0["applied_at"]["SwitchOptimizer"] == r1["applied_at"]["SwitchOptimizer"] >= 3
    assert r0["applied_at"]["SetFrozen"] == r1["applied_at"]["SetFrozen"]
    assert r0["step"] == r1["step"] and r0["final_state"] == r1["final_state"] == "finished"
    assert r0["fc_weight_sum"] == pytest.approx(r1["fc_weight_sum"], rel=1e-6)  # same weights
    assert r0["finite"] and r1["finite"]
    # Control messages travel only when there is something to say: the run directory at the start,
    # rank 0's on_nan policy, the commands (two batches), the restored checkpoint; not one pickled
    # broadcast per step.
    assert len(r0["broadcasts"]) == len(r1["broadcasts"]) <= 6 < r0["step"], (r0["broadcasts"], r1["broadcasts"])
    # A restore reads the file on rank 0 only and sends what it read: the ranks cannot diverge.
    assert len(r0["checkpoint_loads"]) == 1 and r1["checkpoint_loads"] == []
    assert r0["applied_at"]["RestoreCheckpoint"] == r1["applied_at"]["RestoreCheckpoint"]


def test_a_factory_model_is_steered_the_same_on_both_ranks(tmp_path):
    """presets/own_model.toml (examples/stripes.py) on 2 ranks: optimizer switch, unfreezing
    model.freeze's modules, checkpoint and restore, all at the same step everywhere."""
    r0, r1 = two_ranks(tmp_path, "factory")
    assert r0["optimizer"] == r1["optimizer"] == "Adam"
    assert r0["features_require_grad"] and all(r0["features_require_grad"]) and all(r1["features_require_grad"])
    for command in ("SwitchOptimizer", "SetFrozen", "RestoreCheckpoint"):
        assert r0["applied_at"][command] == r1["applied_at"][command], command
    assert r0["step"] == r1["step"] == 10 and r0["final_state"] == r1["final_state"] == "finished"
    assert r0["fc_weight_sum"] == pytest.approx(r1["fc_weight_sum"], rel=1e-6) and r0["finite"]


def test_a_non_finite_loss_pauses_every_rank_when_rank_0_has_a_dashboard(tmp_path):
    """on_nan = "auto" pauses under a dashboard, stops headless: rank 0's policy holds on every
    rank, so the ranks pause together and the user's Stop ends them all cleanly."""
    r0, r1 = two_ranks(tmp_path, "nan")
    for r in (r0, r1):
        assert "paused" in r["states"] and r["final_state"] == "stopped" and not r["errors"], r
    assert r0["step"] == r1["step"]


def test_an_evaluation_longer_than_the_collective_timeout_keeps_the_run(tmp_path):
    """Bug: rank 0 evaluates alone while the others wait for it in a collective; a test set that
    took longer than run.collective_timeout_s (60 s by default) ended the run on every rank."""
    r0, r1 = two_ranks(tmp_path, "slow_eval")
    assert r0["evaluation_s"] > 4  # run.collective_timeout_s
    for r in (r0, r1):
        assert r["final_state"] == "finished" and not r["errors"], r
    assert r0["step"] == r1["step"]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _local_rank(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"LOCAL_RANK=")), None)


def test_killing_one_worker_ends_the_run_with_exit_1(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deeptui",
            QUICK,
            "--nproc",
            "2",
            "--log-dir",
            str(tmp_path),
            "--headless",
            "--device",
            "cpu",
            "--epochs",
            "50",
            "--set",
            "log.interval=2",
            "--set",
            "data.train_size=1000",
        ],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while "step 4 " not in proc.stdout.readline():
            assert time.monotonic() < deadline and proc.poll() is None
        workers = {_local_rank(p): p for p in _children(proc.pid)}
        assert set(workers) >= {"0", "1"}, workers
        os.kill(workers["1"], signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    assert "worker rank 1" in err and "Traceback" not in err.split("deeptui: worker rank")[-1]

    def gone(pid: int) -> bool:
        try:
            return "zombie" in Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return True

    deadline = time.monotonic() + 30
    while not all(gone(p) for p in workers.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(gone(p) for p in workers.values())
    metrics, events = assert_csv_complete(only_run_dir(tmp_path))
    assert metrics  # rows written before the failure are kept
