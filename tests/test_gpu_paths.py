"""The CUDA-only bookkeeping, run on the CPU with torch.cuda's calls replaced by recorders: which
device is synchronised, made current and asked for its memory and RNG; what --nproc a machine can
run; the benchmark's baseline in PyTorch's default state."""

from __future__ import annotations

import threading

import pytest
import torch

from deeptui.engine import checkpoint, timing
from deeptui.engine.device import activate
from deeptui.engine.metrics import gpu_memory
from deeptui.tui.cli import main
from tests.conftest import ROOT

QUICK = str(ROOT / "presets" / "quickstart.toml")


class FakeCudaTensor:
    """Enough of a tensor on cuda:1 for the timing loop (fn does the work)."""

    device = torch.device("cuda", 1)


class FakeEvent:
    def __init__(self, enable_timing=False):
        self.t = 0.0

    def record(self):
        import time

        self.t = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return (end.t - self.t) * 1e3


def test_the_timing_waits_for_and_warms_up_the_device_it_measures(monkeypatch):
    """Bug: `bench --device cuda:1` synchronised the current device (cuda:0), so it timed kernel
    launches only; and one warm-up call left the GPU at idle clocks."""
    synced, current = [], []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "device", lambda d: current.append(d) or threading.Lock())
    monkeypatch.setattr(timing, "CUDA_WARMUP_S", 0.05)
    calls = []
    seconds = timing._median_time(lambda x, w, y: calls.append(1), FakeCudaTensor(), None, None, 3, None)
    assert synced and all(d == torch.device("cuda", 1) for d in synced)
    assert current and all(d == torch.device("cuda", 1) for d in current)  # CUDA events on cuda:1
    assert len(calls) > 3 + 1  # warmed up for CUDA_WARMUP_S, then 3 timed calls
    assert seconds >= 0


def test_the_engine_thread_makes_the_runs_device_current(make_engine, monkeypatch):
    """Bug: a single-process run on cuda:N never called set_device in its thread, so the calls
    without a device (synchronize, memory stats) went to cuda:0."""
    import deeptui.engine.loop as loop

    made_current = []
    monkeypatch.setattr(loop, "activate", lambda d: made_current.append((d, threading.current_thread().name)))
    eng = make_engine("run.max_steps=1")
    eng.start()
    assert eng.wait_finished(60)
    assert made_current == [(eng.device, "deeptui-engine")]
    set_to = []
    monkeypatch.setattr(torch.cuda, "set_device", set_to.append)
    activate(torch.device("cpu"))
    activate(torch.device("cuda", 3))
    assert set_to == [torch.device("cuda", 3)]


def test_nproc_above_the_gpu_count_is_refused_with_the_fix(monkeypatch, capsys, tmp_path):
    """Bug: --nproc 2 on a 1-GPU machine ended in a raw CUDA traceback from a rank."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main([QUICK, "--nproc", "2", "--device", "cuda", "--log-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("deeptui: --nproc 2: this machine has 1 GPU(s), one per process; fix: --nproc 1 or --device cpu")
    assert not list(tmp_path.iterdir())  # nothing started


def test_nproc_above_the_cpu_cores_is_refused(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert main([QUICK, "--nproc", "64", "--device", "cpu", "--log-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "this machine has 2 CPU core(s)" in err and "fix: --nproc 2 or fewer" in err


def test_gpu_memory_is_current_use_and_the_intervals_peak(monkeypatch):
    """Risk: the panel showed the lifetime peak (a data set's load included), not current use."""
    mib = 2**20
    stats = {"allocated": 100 * mib, "reserved": 300 * mib, "peak": 250 * mib}
    asked = []

    def reader(key):
        return lambda device=None: asked.append(device) or stats[key]

    monkeypatch.setattr(torch.cuda, "memory_allocated", reader("allocated"))
    monkeypatch.setattr(torch.cuda, "memory_reserved", reader("reserved"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", reader("peak"))
    monkeypatch.setattr(
        torch.cuda, "reset_peak_memory_stats", lambda device=None: stats.update(peak=stats["allocated"])
    )
    dev = torch.device("cuda", 1)
    assert gpu_memory(dev) == (100.0, 300.0, 250.0)
    assert gpu_memory(dev) == (100.0, 300.0, 100.0)  # the next interval's peak starts from now
    assert set(asked) == {dev}
    assert gpu_memory(torch.device("cpu")) == (0.0, 0.0, 0.0)


def test_a_checkpoint_keeps_the_rng_of_its_own_gpu_only(make_engine, monkeypatch):
    """Risk: checkpoints saved every GPU's RNG state, and resuming on a host with fewer GPUs crashed."""
    eng = make_engine("run.max_steps=1")
    eng.run()
    assert checkpoint.collect(eng)["rng"]["cuda"] is None  # a CPU run has no CUDA RNG to keep
    asked = []
    monkeypatch.setattr(
        torch.cuda, "get_rng_state", lambda device=None: asked.append(device) or torch.zeros(8, dtype=torch.uint8)
    )
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("every GPU's RNG asked for"))
    real_device, eng.trainer.device = eng.trainer.device, torch.device("cuda", 1)
    try:
        payload = checkpoint.collect(eng)
    finally:
        eng.trainer.device = real_device
    assert asked == [torch.device("cuda", 1)] and payload["rng"]["cuda"].shape == (8,)
    eng.trainer.load_state_dict(payload, eng.run_dir)  # resumed where there is no GPU: the CUDA RNG is left alone


def test_the_lecture_baseline_runs_in_pytorchs_default_state(monkeypatch, tmp_path):
    """Bug: benchmarks/train_speed.py's lecture loop inherited cudnn.benchmark = True from the engine
    after the first repeat, so its ratio mixed two configurations."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import train_speed

    from deeptui.engine import models
    from tests.datafiles import write_cifar10

    seen = []
    real_forward = models.Monster.forward
    monkeypatch.setattr(
        models.Monster, "forward", lambda self, x: seen.append(torch.backends.cudnn.benchmark) or real_forward(self, x)
    )
    write_cifar10(tmp_path, n_train=40, n_test=10)
    torch.backends.cudnn.benchmark = True  # as an engine run on CUDA leaves it
    train_speed.lecture_loop(tmp_path, torch.device("cpu"), steps=1, warmup=1, blocks=1, workers=0)
    assert seen and not any(seen)


@pytest.mark.parametrize("state,want", [("finished", "destroy"), ("failed", "abort"), ("stopped", "abort")])
def test_a_run_that_did_not_finish_aborts_nccl_instead_of_waiting_for_a_dead_rank(
    make_engine, monkeypatch, state, want
):
    """Bug: after a rank died under NCCL, rank 0 could hang in destroy_process_group, waiting for
    the dead peer until NCCL's watchdog aborted it. A run that did not finish (failed, or stopped:
    the launcher's SIGTERM when a rank dies) aborts the process group instead."""
    import torch.distributed as dist

    from deeptui.engine import distributed
    from deeptui.engine.state import RunState

    eng = make_engine("run.max_steps=1")
    eng.run()
    ended = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(dist, "destroy_process_group", lambda group=None: ended.append("destroy"))
    monkeypatch.setattr(dist.distributed_c10d, "_abort_process_group", lambda group=None: ended.append("abort"))
    eng.dist = distributed.DistInfo(rank=0, world=2, local_rank=0)
    eng._finish(RunState(state), "")  # the end of every run
    assert ended == [want]


def test_bf16_on_a_gpu_without_it_is_refused_before_the_run(monkeypatch, capsys, tmp_path):
    """Bug: perf.amp = "bf16" on a GPU without bf16 (before Ampere) started the run and failed at
    its first step (or ran emulated, slowly); it is refused before anything is made."""
    import deeptui.engine.build as build

    monkeypatch.setattr(build, "resolve_device", lambda spec: torch.device("cuda", 1))
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or (7, 5))
    code = main([QUICK, "--headless", "--log-dir", str(tmp_path), "--set", "perf.amp='bf16'"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and asked == [torch.device("cuda", 1)], err
    assert err == [
        f"deeptui: {QUICK}: perf.amp = 'bf16': cuda:1 has no bf16 support (compute capability 7.5; bf16 needs "
        "8.0, Ampere or newer); fix: --set perf.amp='fp16' (with a gradient scaler) or 'off'"
    ]
    assert not list(tmp_path.iterdir())


def test_torchrun_with_more_ranks_than_gpus_is_refused_in_one_line(monkeypatch, capsys, tmp_path):
    """Bug: only --nproc was checked: plain `torchrun --nproc-per-node 2 -m deeptui` on a 1-GPU
    machine ended rank 1 in a raw traceback from torch.cuda.set_device. Every rank refuses it
    before waiting for the others; rank 0 prints the line."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        torch.cuda, "set_device", lambda d: pytest.fail("rank 0 went on, to wait for a rank that cannot start")
    )
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    code = main([QUICK, "--headless", "--device", "cuda", "--log-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "deeptui: torchrun started 2 processes on this machine, which has 1 GPU(s), one per process; fix: "
        "torchrun --nproc-per-node 1 (or deeptui --nproc 1), or --device cpu"
    ], err


def test_a_sweep_warms_the_device_up_once(monkeypatch):
    """Bug: `bench --sweep` warmed a GPU up for CUDA_WARMUP_S at each of its 12 batch sizes (12 s
    of the sweep); the device is warm after the first. Here the CPU is given a 0.3 s warm-up."""
    calls: dict[int, int] = {}
    real_batch, real_loop = timing._batch, timing._loop

    def counting(real):
        def fn(x, w, y):
            calls[x.shape[0]] = calls.get(x.shape[0], 0) + 1
            return real(x, w, y)

        return fn

    monkeypatch.setattr(timing, "warmup_seconds", lambda device: 0.3)
    monkeypatch.setattr(timing, "_batch", counting(real_batch))
    monkeypatch.setattr(timing, "_loop", counting(real_loop))
    rows = timing.sweep("cpu", batch_sizes=[1, 2, 4], repeats=3, sizes=(4, 8, 8))
    assert [r[0] for r in rows] == [1, 2, 4]
    assert calls[1] > 2 * (1 + 3)  # the first size: the warm-up, then 3 timed runs of each form
    assert calls[2] == calls[4] == 2 * (1 + 3)  # then one first call and 3 timed runs each
