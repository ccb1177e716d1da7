"""Every branch a GPU user takes, run on the CPU: fused optimizers (perf.fused), the multi-tensor
kernels CUDA takes unfused (perf.foreach = true, forced: the CPU's default loops one tensor at a
time), autocast in bf16 and fp16 (with torch.amp.GradScaler("cpu")), crop+flip augmentation, both
loaders, torch.compile, LBFGS under channels_last.

Each case trains a small Monster through a scheduled freeze -> unfreeze and an optimizer switch
mid-run, and must: stay finite, end "finished", give the same weights fused, foreach and (in fp32)
one tensor at a time (the math is the same), and make no host sync inside a training step, except
where the README says a step reads a value back (LBFGS; fp16 with an optimizer that has no fused
kernel). On a GPU the same cases run with DEEPTUI_TEST_DEVICE=cuda (benchmarks/gpu_check.sh does).

The default run takes the matrix over precision x optimizer x (foreach, fused) with the in-memory
loader (adagrad, adadelta, adamax and nadam, which have no fused kernel here, in fp32 only), and
the DataLoader path for a few cases; the full matrix (both loaders everywhere, the
single-tensor loops in every precision, and a real inductor compile) runs with:
DEEPTUI_FULL_MATRIX=1 .venv/bin/python -m pytest tests/test_device_parity.py
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import tempfile
from pathlib import Path

import pytest
import torch

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.build import build_engine
from deeptui.engine.registry import OPTIMIZERS
from tests.conftest import SYNC_METHODS, TEST_DEVICE, tiny_config

FULL = os.environ.get("DEEPTUI_FULL_MATRIX") == "1"
# The same cases on a GPU (benchmarks/gpu_check.sh): DEEPTUI_TEST_DEVICE=cuda. Two kernels give the
# same weights there only without TF32 and with cuDNN's deterministic algorithms (the backward of
# a convolution may otherwise sum in another order each run); perf.cudnn_benchmark is off below.
DEVICE = TEST_DEVICE
if DEVICE == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
PARITY = f"""
[run]
name = "parity"
epochs = 2
seed = 0
device = "{DEVICE}"
auto_timing = false
on_nan = "stop"
[data]
dataset = "shapes"
batch_size = 16
train_size = 128
test_size = 32
crop_padding = 2
flip = true
num_workers = 0
[model]
name = "monster"
blocks = 2
channels = 8
[optimizer]
lr = 0.02
[schedule]
freeze_features_epochs = 1
[log]
interval = 4
[perf]
cudnn_benchmark = false
"""
SWITCH_AT = 12  # asked during step 12 (mid epoch 2, after the unfreeze at 8), applied before step 13
SWITCH_TO = {
    "sgd": "momentum",
    "momentum": "adam",
    "nesterov": "sgd",
    "adam": "momentum",
    "rmsprop": "adam",
    "lbfgs": "sgd",
    "adamw": "adagrad",  # fused -> unfused
    "adagrad": "adadelta",
    "adadelta": "adamax",
    "adamax": "nadam",
    "nadam": "adagrad",
}
# Optimizers whose step is normalised by a running gradient size (Adam's family): rounding noise
# in a gradient becomes a full step, so fused and unfused kernels are compared as assert_same_weights says.
NORMALISED = {"adam", "adamw", "adamax", "nadam"}


def run_case(amp: str, name: str, fused: bool, loader: str = "memory", *extra: str):
    """Train one case; returns (engine, events, host syncs counted in each step)."""
    tmp = Path(tempfile.mkdtemp(prefix="parity-"))
    cfg = tiny_config(
        f"optimizer.name='{name}'",
        f"perf.amp='{amp}'",
        f"perf.fused={str(fused).lower()}",
        f"data.loader='{loader}'",
        *extra,
        text=PARITY,
    )
    eng = build_engine(cfg, data_root=tmp, log_dir=tmp)
    syncs: list[str] = []
    real = {m: getattr(torch.Tensor, m) for m in SYNC_METHODS}

    def counting(method):
        def read_back(self, *a, **kw):
            # An optimizer's step counter (and NAdam's mu_product) lives on the host even in a CUDA
            # run (unless fused or capturable): reading it is no device sync, so it is not counted.
            states = [s for s in eng.optimizer.state.values() if isinstance(s, dict)]
            host = {id(s.get(key)) for s in states for key in ("step", "mu_product")}
            if id(self) not in host:
                syncs.append(method)
            return real[method](self, *a, **kw)

        return read_back

    per_step: list[int] = []
    real_step = type(eng)._train_step

    def step(self, x, y):
        if self.train.step == SWITCH_AT:
            self.send(C.SwitchOptimizer(name=SWITCH_TO[name]))
        before = len(syncs)
        real_step(self, x, y)
        per_step.append(len(syncs) - before)

    for m in SYNC_METHODS:
        setattr(torch.Tensor, m, counting(m))
    type(eng)._train_step = step
    try:
        eng.run()
    finally:
        for m in SYNC_METHODS:
            setattr(torch.Tensor, m, real[m])
        type(eng)._train_step = real_step
    return eng, eng.events.read(0)[0], per_step


def expected_syncs(amp: str, name: str, fused: bool, optimizer: str) -> str:
    """The README's promise for a step: 'none', 'one' (fp16 without a fused kernel) or 'some' (LBFGS)."""
    if optimizer == "lbfgs":
        return "some"
    if amp == "fp16" and not (fused and OPTIMIZERS[optimizer].fused):
        return "one"
    return "none"


def check_case(amp, name, fused, eng, events, per_step, foreach: bool = False):
    errors = [e.message for e in events if isinstance(e, E.RunError)]
    assert eng.final_state == "finished", errors
    losses = [e.loss for e in events if isinstance(e, E.StepMetrics)]
    assert losses and all(torch.isfinite(torch.tensor(losses))), losses
    assert all(torch.isfinite(p).all() for p in eng.model.parameters())
    assert any(isinstance(e, E.ScheduleAction) and e.action == "unfreeze" for e in events)
    switched = [e for e in events if isinstance(e, E.CommandApplied) and e.command == "SwitchOptimizer"]
    assert len(switched) == 1 and switched[0].step == SWITCH_AT + 1
    params = {e.optimizer: e.optimizer_params.split() for e in events if isinstance(e, E.StateChanged)}
    for opt, said in params.items():
        assert ("fused" in said) == (fused and OPTIMIZERS[opt].fused), (opt, params)
        assert ("foreach" in said) == (foreach and "fused" not in said and OPTIMIZERS[opt].foreach), (opt, params)
    # host syncs inside each step: before the switch with the first optimizer, after it with the second
    for i, n in enumerate(per_step):
        opt = name if i <= SWITCH_AT else SWITCH_TO[name]
        want = expected_syncs(amp, name, fused, opt)
        if want == "none":
            assert n == 0, (i, opt, per_step)
        elif want == "one":
            assert n == 1, (i, opt, per_step)


def weights(eng) -> dict[str, torch.Tensor]:
    """The parameters that determine what the network computes. Left out: the biases of the
    residual blocks' convolutions, which a BatchNorm follows: it cancels them, so their gradient
    is zero up to rounding, and Adam's normalised step turns that rounding noise (which differs
    between the fused and the unfused kernel) into full-size steps that change nothing."""
    return {
        n: p.detach().clone()
        for n, p in eng.model.named_parameters()
        if not (n.startswith("resnet_blocks.") and ".conv" in n and n.endswith(".bias"))
    }


def assert_same_weights(want: dict, got: dict, amp: str, adam_steps: int) -> None:
    """Fused and unfused kernels round differently; with SGD that stays at rounding level. Adam's
    first steps are about lr * sign(gradient): where a gradient is rounding noise (the biases that
    a BatchNorm cancels), the two kernels step those elements in opposite directions. In the
    lecture's blocks (x + b(x), no ReLU after the sum) the second BatchNorm also nearly cancels the
    first one's bias on a channel whose ReLU is on almost everywhere: the two runs' steps there
    differ by up to an lr, flip a few ReLUs, and the difference spreads a little. So in fp32 with
    Adam, every element stays within what the Adam steps could move it apart (2 x lr a step) and
    the weights as a whole agree to 1e-3 of their size; in fp16/bf16 the cancelled biases leak
    into the rounding of every later layer, so with Adam the weights are not comparable and only
    the other checks apply."""
    tol = {"off": 1e-5, "bf16": 1e-3, "fp16": 1e-3}[amp]
    if adam_steps and amp != "off":
        return
    diffs, sizes = [], []
    for n in want:
        diff = (got[n] - want[n]).abs()
        if adam_steps:
            assert diff.max() <= 2 * 0.02 * adam_steps, (n, diff.max(), adam_steps)
            diffs.append(diff.flatten())
            sizes.append(want[n].abs().flatten())
        else:
            torch.testing.assert_close(got[n], want[n], rtol=tol, atol=tol, msg=lambda m, n=n: f"{n}: {m}")
    if adam_steps:
        mean_diff, mean_size = torch.cat(diffs).mean(), torch.cat(sizes).mean()
        assert mean_diff <= 1e-3 * mean_size, (mean_diff, mean_size)


# Unfused optimizers whose bf16/fp16 runs add no branch of their own (only the foreach kernel,
# compared with nothing there): fp32 only, but in the full matrix.
FP32_BY_DEFAULT = {"adagrad", "adadelta", "adamax", "nadam"}
MATRIX = [
    (amp, name)
    for amp in ("off", "bf16", "fp16")
    for name in SWITCH_TO
    if amp == "off" or (name != "lbfgs" and (FULL or name not in FP32_BY_DEFAULT))
]
LOADERS = ["memory", "dataloader"] if FULL else ["memory"]


@functools.cache
def foreach_run(amp: str, name: str, loader: str):
    """The forced-foreach run of a case, which the other kernels are compared with: run once."""
    return run_case(amp, name, False, loader, "perf.foreach=true")


def no_fused_kernel(name: str) -> str:
    """Why optimizer `name` runs unfused under perf.fused = true on this torch."""
    cls = OPTIMIZERS[name].torch_class
    if "fused" in inspect.signature(getattr(torch.optim, cls)).parameters:
        return f"deeptui does not offer torch's fused {cls}"
    return f"torch {torch.__version__} has no fused {cls}"


@pytest.mark.parametrize("kernel", ["foreach", "single-tensor", "fused"])
@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("amp,name", MATRIX, ids=[f"{a}-{n}" for a, n in MATRIX])
def test_a_device_branch_trains_through_unfreeze_and_switch(amp, name, loader, kernel):
    """Unfused with foreach forced (CUDA's unfused path), fused where there is a kernel, and the
    CPU's own single-tensor loops (fp32; every precision in the full matrix): the same weights."""
    eng, events, per_step = foreach_run(amp, name, loader)
    target = SWITCH_TO[name]
    adam_steps = SWITCH_AT if name in NORMALISED else 0
    adam_steps += eng.train.step - SWITCH_AT if target in NORMALISED else 0
    if kernel == "foreach":
        check_case(amp, name, False, eng, events, per_step, foreach=True)
    elif kernel == "single-tensor":
        if amp != "off" and not FULL:
            pytest.skip("single-tensor loops run in fp32 only; every precision: DEEPTUI_FULL_MATRIX=1")
        loop_eng, loop_events, loop_steps = run_case(amp, name, False, loader, "perf.foreach=false")
        check_case(amp, name, False, loop_eng, loop_events, loop_steps)
        assert_same_weights(weights(loop_eng), weights(eng), amp, adam_steps)
    else:
        if not (OPTIMIZERS[name].fused or OPTIMIZERS[target].fused):
            pytest.skip(f"{no_fused_kernel(name)}; {no_fused_kernel(target)}")
        fused_eng, fused_events, fused_steps = run_case(amp, name, True, loader, "perf.foreach=true")
        check_case(amp, name, True, fused_eng, fused_events, fused_steps, foreach=True)
        assert_same_weights(weights(eng), weights(fused_eng), amp, adam_steps)


@pytest.mark.parametrize("amp,name", [("off", "momentum"), ("fp16", "adam")], ids=["fp32-momentum", "fp16-adam"])
def test_the_dataloader_path_takes_the_same_branches(amp, name):
    """The DataLoader path (torchvision's own crop and flip, so other random crops than the memory
    loader's) with 2 worker processes (persistent; pinned memory on CUDA) through the same
    freeze, switch and fused fp16 steps."""
    if FULL:
        pytest.skip("the full matrix runs every case on both loaders")
    dl, dl_events, dl_steps = run_case(amp, name, True, "dataloader", "data.num_workers=2")
    check_case(amp, name, True, dl, dl_events, dl_steps)


def test_fused_momentum_survives_an_unfreeze_that_crashed_it(make_engine):
    """Bug: on CUDA (fused by default) momentum + frozen features crashed at the first unfreeze,
    TypeError: expected Tensor as element 0 in argument 2, but got NoneType."""
    eng = make_engine("optimizer.name='momentum'", "perf.fused=true")  # frozen in epoch 1, trainable in 2
    assert eng.optimizer.defaults["fused"]
    eng.run()
    assert eng.final_state == "finished", [e.message for e in eng.events.read(0)[0] if isinstance(e, E.RunError)]
    assert all(eng.optimizer.state[p]["momentum_buffer"] is not None for p in eng.model.parameters())


def test_a_skipped_first_fp16_step_leaves_no_uninitialised_momentum(make_engine, monkeypatch):
    """Bug: fused SGD's first step makes its momentum buffers with torch.empty_like; when the
    GradScaler skips that step (inf at the initial scale), they keep whatever memory held and the
    weights turn NaN a step later. Here empty_like in torch's SGD returns NaN to show it."""
    import inspect

    real_empty_like = torch.empty_like

    def garbage_in_sgd(t, *a, **kw):
        if inspect.stack()[1].filename.endswith(os.path.join("optim", "sgd.py")):
            return torch.full_like(t, float("nan"))
        return real_empty_like(t, *a, **kw)

    monkeypatch.setattr(torch, "empty_like", garbage_in_sgd)
    eng = make_engine(
        "optimizer.name='momentum'",
        "perf.fused=true",
        "perf.amp='fp16'",
        "run.max_steps=16",
        "schedule.freeze_features_epochs=0",
    )
    eng.trainer.runner.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**20)  # the first steps overflow
    eng.run()
    assert eng.trainer.runner.scaler.get_scale() < 2.0**20  # some steps were skipped
    assert eng.final_state == "finished"
    assert all(torch.isfinite(p).all() for p in eng.model.parameters())


def test_fp16_without_a_fused_kernel_says_it_syncs_every_step(make_engine):
    eng = make_engine("perf.amp='fp16'", "optimizer.name='sgd'", "run.max_steps=2")
    eng.run()
    warnings = [e.message for e in eng.events.read(0)[0] if isinstance(e, E.Warning)]
    assert any("fp16 with sgd" in w and "every step" in w for w in warnings), warnings
    eng = make_engine(  # (the machine strip's own warnings, e.g. no psutil on a bare GPU image, aside)
        "perf.amp='fp16'", "optimizer.name='sgd'", "perf.fused=true", "run.max_steps=2", "log.system_seconds=0"
    )
    eng.run()
    warnings = [e.message for e in eng.events.read(0)[0] if isinstance(e, E.Warning)]
    assert not [w for w in warnings if "every step" in w], warnings  # the fused kernel: no sync to say
    assert all("without fast fp16 kernels" in w for w in warnings), warnings  # only fp16's cost on a CPU, if so


def test_fused_auto_is_on_for_cuda_only_and_cpu_keeps_fp32_by_default(make_engine):
    from deeptui.engine.optim import uses_fused

    assert uses_fused("adam", "auto", "cuda") and not uses_fused("adam", "auto", "cpu")
    assert uses_fused("momentum", True, "cpu") and not uses_fused("rmsprop", True, "cuda")
    eng = make_engine("optimizer.name='adam'")
    runner = eng.trainer.runner
    assert not eng.optimizer.defaults.get("fused") and runner.amp_dtype is None and not runner.compile


def counting_compile(compiles: list, engine_of):
    """torch.compile with a backend that records the step of every (re)compile: dynamo's guards
    and recompiles are the real ones; the code generation is skipped (inductor takes ~60 s here)."""
    real_compile = torch.compile

    def compile_(module, **kw):
        def backend(gm, example_inputs):
            compiles.append(engine_of().train.step)
            return gm.forward

        return real_compile(module, backend=backend, **kw)

    return compile_


def test_every_recompile_shows_the_compiling_state(make_engine, monkeypatch):
    """A freeze change, an eval-mode toggle and a last partial batch each make torch.compile
    trace again: the step that does shows "compiling", and no other step does."""
    torch._dynamo.reset()
    compiles: list[int] = []
    box = {}
    monkeypatch.setattr(torch, "compile", counting_compile(compiles, lambda: box["eng"]))
    eng = make_engine("perf.compile=true", "data.train_size=264", "log.interval=100")  # 16 full batches + 8
    box["eng"] = eng
    real_step = type(eng)._train_step

    def step(self, x, y):
        if self.train.step == 20:
            self.send(C.SetMode(mode="eval"))
        if self.train.step == 23:
            self.send(C.SetMode(mode="train"))
        real_step(self, x, y)

    monkeypatch.setattr(type(eng), "_train_step", step)
    eng.run()
    assert eng.final_state == "finished"
    shown = [e.step for e in eng.events.read(0)[0] if isinstance(e, E.StateChanged) and e.state == "compiling"]
    # epoch 1 frozen: step 0 (batch 16), step 16 (batch 8); epoch 2 trainable: step 17, eval mode
    # from step 21 (asked during step 20), train again from 24 (traced before), the last batch at 33
    assert compiles == shown == [0, 16, 17, 21, 33], (compiles, shown)


@pytest.mark.skipif(not FULL, reason="a real inductor compile takes about a minute here: DEEPTUI_FULL_MATRIX=1")
def test_a_real_inductor_compile_trains(make_engine):
    torch._dynamo.reset()
    eng = make_engine("perf.compile=true", "run.max_steps=3", "schedule.freeze_features_epochs=0")
    eng.run()
    assert eng.final_state == "finished"


@pytest.mark.parametrize("amp", ["off", "fp16"])
def test_the_quickstart_with_fused_momentum_trains_through_its_unfreeze(amp, tmp_path, capsys):
    """The issue's own case: the shipped quickstart (momentum, features unfrozen at epoch 2) with
    perf.fused = true, as every CUDA run has it, crashed at epoch 2; fp16 on top of it too."""
    from deeptui.tui.cli import main

    code = main(
        [
            "quickstart",
            "--headless",
            "--device",
            "cpu",
            "--log-dir",
            str(tmp_path),
            "--epochs",
            "2",
            "--set",
            "perf.fused=true",
            "--set",
            "optimizer.name='momentum'",
            "--set",
            f"perf.amp='{amp}'",
            "--set",
            "data.train_size=640",
            "--set",
            "data.test_size=128",
            "--set",
            "log.interval=5",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "schedule: features trainable at epoch 2" in out and "deeptui: finished" in out
    (run_dir,) = tmp_path.iterdir()
    rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    losses = [float(r.split(",")[4]) for r in rows]
    assert len(losses) >= 4 and all(math.isfinite(v) for v in losses), rows


def test_lbfgs_trains_under_channels_last(make_engine):
    """Bug: LBFGS flattens each gradient with view(-1), which a channels_last weight's gradient
    refuses: with perf.channels_last = true the o key's cycle reaches lbfgs (both shipped presets
    offer it) and the run crashed at its first LBFGS step."""
    eng = make_engine("perf.channels_last=true", "optimizer.name='momentum'", "run.max_steps=3")
    eng.send(C.SwitchOptimizer(name="lbfgs"))  # applied before the first step
    eng.run()
    events = eng.events.read(0)[0]
    assert eng.final_state == "finished", [e.message for e in events if isinstance(e, E.RunError)]
    assert eng.train.optimizer == "lbfgs" and eng.train.step == 3
    assert all(torch.isfinite(p).all() for p in eng.model.parameters())


def test_each_engine_of_a_series_compiles_its_own_model(make_engine, monkeypatch):
    """Bug: Dynamo's recompile limit (8) counts the compiles of every engine in the process while
    the earlier ones live (a compare series' dashboard keeps them; each torch.compile brings a new
    backend, a recompile of the same forward): the later runs of a series ran eager while the
    dashboard said "compiling", and the series compared eager with compiled. Here the limit is 2
    and the series has 3 runs, every engine kept."""
    torch.compiler.reset()
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 2)
    compiles: list[int] = []
    box = {}
    monkeypatch.setattr(torch, "compile", counting_compile(compiles, lambda: box["eng"]))
    for run in range(3):
        box["eng"] = eng = make_engine(
            "perf.compile=true", "run.max_steps=1", "model.blocks=1", "schedule.freeze_features_epochs=0"
        )
        eng.run()
        assert eng.final_state == "finished"
        assert len(compiles) == run + 1, compiles  # this run's first step compiled, not eager


def test_lbfgs_says_it_runs_without_amp(make_engine):
    """Bug: LBFGS's closure runs in fp32, and perf.amp was silently not applied to it."""
    eng = make_engine("optimizer.name='lbfgs'", "perf.amp='bf16'", "run.max_steps=1")
    eng.send(C.SwitchOptimizer(name="momentum"))
    eng.send(C.SwitchOptimizer(name="lbfgs"))
    eng.run()
    events = eng.events.read(0)[0]
    warnings = [e.message for e in events if isinstance(e, E.Warning)]
    assert any("lbfgs runs in fp32: perf.amp = 'bf16' does not apply to it" in w for w in warnings), warnings
    applied = [e.detail for e in events if isinstance(e, E.CommandApplied) and e.command == "SwitchOptimizer"]
    assert "perf.amp" not in applied[0] and "lbfgs runs in fp32" in applied[1], applied
