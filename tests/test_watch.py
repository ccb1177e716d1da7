"""deeptui.watch: a loop of the user's own, steered through the engine's commands. Each test sends
what the dashboard, attach or send would and checks the loop's own model and optimizer changed as
the answer says; then that every view (ls, show, attach, export) serves the watched run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from deeptui.engine import checkpoint
from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.history import HistorySession
from deeptui.engine.remote.client import RemoteSession
from deeptui.engine.state import RunState
from tests.conftest import SYNC_METHODS, EventReader
from tests.ownloop import OwnLoop, tiny_model


@pytest.fixture
def own_loop(tmp_path):
    made: list[OwnLoop] = []

    def make(**kw) -> OwnLoop:
        loop = OwnLoop(tmp_path / "runs", **kw)
        made.append(loop)
        return loop

    yield make
    for loop in made:
        loop.finish()


def lrs(loop: OwnLoop) -> list[float]:
    return [g["lr"] for g in loop.run.optimizer.param_groups]


def test_importing_deeptui_loads_neither_torch_nor_textual():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import deeptui, sys, json; print(json.dumps([callable(deeptui.watch), sorted(sys.modules)]))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    has_watch, modules = json.loads(out.stdout)
    assert has_watch
    assert not [m for m in modules if m.split(".")[0] in ("torch", "textual", "rich", "plotext")]


def test_lr_is_set_and_scaled_on_the_loops_parameter_groups_keeping_their_ratio(own_loop):
    loop = own_loop()
    assert isinstance(loop.command(C.SetLearningRate(lr=0.2)), E.CommandApplied)
    assert lrs(loop) == pytest.approx([0.2, 0.02])
    answer = loop.command(C.ScaleLearningRate(factor=0.5))
    assert isinstance(answer, E.CommandApplied) and answer.detail == "lr 0.2 -> 0.1"
    assert lrs(loop) == pytest.approx([0.1, 0.01])
    assert isinstance(loop.command(C.SetLearningRate(lr=-1.0)), E.CommandRejected)
    assert lrs(loop) == pytest.approx([0.1, 0.01])
    assert loop.optimizer is loop.run.optimizer  # changed in place: the loop's own name still works


def test_freeze_acts_on_the_named_modules_and_a_frozen_encoder_does_not_train(own_loop):
    loop = own_loop()
    answer = loop.command(C.SetFrozen(frozen=True))
    # no freeze schedule to override, so no "schedule overridden"
    assert isinstance(answer, E.CommandApplied) and answer.detail == "encoder frozen (40 parameters)"
    assert not any(p.requires_grad for p in loop.model.encoder.parameters())
    assert all(p.requires_grad for p in loop.model.head.parameters())
    encoder, head = loop.model.encoder.weight.detach().clone(), loop.model.head.weight.detach().clone()
    loop.command(C.Resume())
    loop.reader.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= 6 and e.frozen)
    loop.command(C.Pause())
    assert torch.equal(loop.model.encoder.weight, encoder)  # the optimizer skips a parameter without a gradient
    assert not torch.equal(loop.model.head.weight, head)
    assert isinstance(loop.command(C.SetFrozen(frozen=False)), E.CommandApplied)
    assert all(p.requires_grad for p in loop.model.encoder.parameters())


def test_a_pause_blocks_the_loop_in_step_until_resumed(own_loop):
    loop = own_loop(paused=False)
    loop.reader.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= 4)
    assert isinstance(loop.command(C.Pause()), E.CommandApplied)
    at = loop.run.train.step
    loop.stepped.clear()
    assert not loop.stepped.wait(0.5), "the loop went on while paused"
    assert loop.run.train.step == at and loop.run.state == RunState.PAUSED
    loop.command(C.Resume())
    assert loop.stepped.wait(30)
    loop.reader.wait(lambda e: isinstance(e, E.StepMetrics) and e.step > at)


def test_a_saved_checkpoint_reloads_into_a_fresh_model(own_loop):
    loop = own_loop()
    loop.command(C.Resume())
    loop.reader.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= 4)
    loop.command(C.Pause())
    answer = loop.command(C.SaveCheckpoint())
    assert isinstance(answer, E.CommandApplied)
    path = loop.run.run_dir / checkpoint.LAST
    payload = torch.load(path, weights_only=True)
    fresh = tiny_model()
    fresh.load_state_dict(payload["model"])
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), loop.model.state_dict().values()))
    restored = torch.optim.SGD([{"params": fresh.encoder.parameters()}, {"params": fresh.head.parameters()}], lr=1.0)
    restored.load_state_dict(payload["optimizer"])  # the loop's own optimizer state
    assert [g["lr"] for g in restored.param_groups] == lrs(loop)
    assert checkpoint.load(path)["train"]["step"] == loop.run.train.step  # deeptui's own reader takes it


def test_a_stop_ends_the_loop_with_a_checkpoint(own_loop):
    loop = own_loop(paused=False)
    loop.reader.wait(lambda e: isinstance(e, E.StepMetrics))
    assert isinstance(loop.command(C.Stop(reason="enough")), E.CommandApplied)
    loop.thread.join(30)
    assert not loop.thread.is_alive()  # step() returned False and the loop broke out
    end = loop.reader.wait(lambda e: isinstance(e, E.Finished))
    assert (end.state, end.reason) == ("stopped", "enough")
    assert (loop.run.run_dir / checkpoint.LAST).is_file()
    assert loop.run.step(torch.tensor(1.0)) is False  # after the end, step() says so


def test_an_optimizer_switch_picks_among_the_named_factories(own_loop):
    loop = own_loop(optimizers={"adam": lambda params: torch.optim.Adam(params, lr=1e-3)})
    answer = loop.command(C.SwitchOptimizer())
    assert isinstance(answer, E.CommandApplied) and answer.detail.startswith("momentum -> adam")
    assert isinstance(loop.run.optimizer, torch.optim.Adam) and len(loop.run.optimizer.param_groups) == 2
    assert isinstance(loop.command(C.SwitchOptimizer(name="lion")), E.CommandRejected)


def test_what_the_loop_cannot_do_is_rejected_with_why(own_loop):
    loop = own_loop(freeze=())
    reasons = [
        loop.command(cmd).reason
        for cmd in (C.SwitchOptimizer(), C.SetEvalMode(mode="both"), C.EvaluateNow(), C.SetFrozen(frozen=True))
    ]
    assert "optimizers=" in reasons[0]  # the key says how to offer a switch
    assert "its own test set" in reasons[1] and "run.test" in reasons[2]
    assert "no pretrained features" in reasons[3] and "deeptui.watch(freeze=" in reasons[3]


def test_a_mode_set_by_the_user_is_kept_over_the_loops_own_model_train(own_loop):
    loop = own_loop()
    assert isinstance(loop.command(C.SetMode(mode="eval")), E.CommandApplied)
    loop.command(C.Resume())
    loop.reader.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= 4)
    loop.command(C.Pause())
    assert not loop.model.training  # the loop calls model.train() every step; the user's eval holds
    assert loop.reader.last(lambda e: isinstance(e, E.StepMetrics)).mode == "eval"


def test_one_host_sync_per_logging_interval(own_loop, monkeypatch):
    loop = own_loop(log_every=5)
    syncs: list[str] = []
    step = loop.run.step

    def counted_step(*a, **kw):
        for name in SYNC_METHODS:
            real = getattr(torch.Tensor, name)
            monkeypatch.setattr(
                torch.Tensor, name, lambda self, *x, _r=real, _n=name, **k: (syncs.append(_n), _r(self, *x, **k))[1]
            )
        try:
            return step(*a, **kw)
        finally:
            monkeypatch.undo()

    loop.run.step = counted_step
    loop.command(C.Resume())
    loop.reader.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= 20)
    loop.command(C.Pause())
    assert syncs.count("tolist") == loop.run.train.step // 5 and set(syncs) == {"tolist"}


def test_a_non_finite_loss_stops_a_loop_no_dashboard_watches(own_loop):
    loop = own_loop(paused=False)
    loop.reader.wait(lambda e: isinstance(e, E.StepMetrics))
    loop.blow_up = True
    loop.thread.join(30)
    assert not loop.thread.is_alive() and loop.run.final_state == "failed"
    assert loop.reader.wait(lambda e: isinstance(e, E.NonFiniteLoss)).policy == "stop"


def test_a_model_that_is_not_finite_is_never_saved_over_a_finite_one(own_loop):
    loop = own_loop()
    loop.command(C.SaveCheckpoint())
    good = (loop.run.run_dir / checkpoint.LAST).read_bytes()
    with torch.no_grad():
        loop.model.head.weight.fill_(float("nan"))
    answer = loop.command(C.SaveCheckpoint())
    assert isinstance(answer, E.CommandRejected) and "not finite" in answer.reason
    assert (loop.run.run_dir / checkpoint.LAST).read_bytes() == good
    assert (loop.run.run_dir / checkpoint.NONFINITE).is_file()


def test_a_watched_run_is_listed_attached_shown_and_exported(own_loop, tmp_path, capsys):
    from deeptui.tui.export import export_main
    from deeptui.tui.runs import list_runs
    from deeptui.tui.show import show_main

    loop = own_loop(test_every=3)
    loop.command(C.Resume())
    loop.reader.wait(lambda e: isinstance(e, E.EpochEnd))
    loop.command(C.Pause())
    assert all(e.mode == "train" for e in loop.reader.seen if isinstance(e, E.StateChanged))  # eval's mode is its own
    (listed,) = list_runs(tmp_path / "runs")
    assert listed.path == loop.run.run_dir and listed.state == RunState.PAUSED and listed.live

    attached = RemoteSession(loop.run.run_dir)  # deeptui attach's session
    attached.start()
    cid = attached.send(C.ScaleLearningRate(factor=2.0))
    answer = EventReader(attached).answer(cid)
    assert isinstance(answer, E.CommandApplied) and lrs(loop) == pytest.approx([0.2, 0.02])
    attached.detach()

    loop.finish()
    shown = HistorySession(loop.run.run_dir)  # what deeptui show folds
    assert shown.final_state == "stopped"
    assert any(isinstance(e, E.EpochEnd) for e in shown.events.read(0)[0])
    assert show_main([str(loop.run.run_dir), "--headless"]) == 0
    assert "run stopped: own, epoch 1, 3 steps" in capsys.readouterr().out
    assert "applied:ScaleLearningRate" in (loop.run.run_dir / "events.csv").read_text()
    assert export_main([str(loop.run.run_dir), "--tensorboard", "--out", str(tmp_path / "tb")]) == 0
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_a_watched_runs_notify_command_runs_and_the_engine_will_not_resume_it(own_loop, tmp_path, capsys):
    from deeptui.tui.cli import main

    said = tmp_path / "said"
    loop = own_loop(paused=False, steps=4, notify_command=f'echo "$DEEPTUI_EVENT $DEEPTUI_STEP" > {said}')
    loop.thread.join(60)
    assert loop.run.final_state == "finished" and said.read_text() == "finished 4\n"
    capsys.readouterr()
    assert main(["--headless", "--resume", str(loop.run.run_dir), "--trust-run"]) == 2  # its loop: a script's
    assert "run.kind = 'watched'" in capsys.readouterr().err


SCRIPT = """
import sys, torch, deeptui
model = torch.nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
with_block = sys.argv[2] == "with"
run = deeptui.watch(model, opt, name="term", log_every=1, log_dir=sys.argv[1])
if with_block:
    run.__enter__()
try:
    while True:
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        run.step(loss, batch_size=8)
finally:
    print("the script's finally ran", flush=True)
    if with_block:
        run.__exit__(*sys.exc_info())
"""


@pytest.mark.parametrize("how", ["with", "atexit"])
def test_sigterm_stops_a_watched_script_with_a_checkpoint_and_exit_143(tmp_path, how):
    """Bug: SIGTERM (kill, timeout, a scheduler's preemption) killed a watched script with no
    checkpoint and no end: control.sock and deeptui.pid were left and `ls` said interrupted. It
    now ends the run as Ctrl+C does: stopped, last.pt, the script's finally blocks run, exit 143."""
    import signal
    import time

    script = tmp_path / "loop.py"
    script.write_text(SCRIPT)
    logs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, str(script), str(logs), how], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        rows = lambda: [d / "metrics.csv" for d in logs.glob("*")]  # noqa: E731
        while not any(p.is_file() and p.read_text().count("\n") > 2 for p in rows()):
            assert time.monotonic() < deadline and proc.poll() is None, "the script never trained"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    assert "the script's finally ran" in out
    (run_dir,) = logs.iterdir()
    end = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()][-1]
    assert end["type"] == "Finished" and end["state"] == "stopped" and "SIGTERM" in end["reason"], end
    assert (run_dir / "last.pt").is_file()
    assert not (run_dir / "control.sock").exists() and not (run_dir / "deeptui.pid").exists()


def test_a_count_of_correct_predictions_needs_the_batch_size(tmp_path):
    """Bug: run.step(loss, correct=3) without batch_size logged an accuracy of 300%."""
    import deeptui

    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with deeptui.watch(model, opt, log_dir=tmp_path / "runs", log_every=1) as run:
        with pytest.raises(ValueError, match="needs batch_size="):
            run.step(torch.tensor(0.5), correct=3)
        assert run.step(torch.tensor(0.5), batch_size=4, correct=3)
    (run_dir,) = (tmp_path / "runs").iterdir()
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    header, first = rows[0].split(","), rows[1].split(",")
    assert float(first[header.index("accuracy")]) == pytest.approx(0.75)


def test_the_plain_lines_of_a_loop_that_gives_no_epoch_count_say_no_total():
    """Bug: `deeptui run --headless` of a loop without `epochs=` printed `epoch 1/0 step 10 ...`."""
    import io

    from deeptui.tui.headless import HeadlessPrinter

    out = io.StringIO()
    printer = HeadlessPrinter(out=out, summary=False)
    row = dict(loss=0.5, accuracy=float("nan"), samples_per_s=80.0, samples_seen=640)
    settings = dict(optimizer="adam", frozen=False, mode="train", lr=0.01)
    printer.handle(E.StepMetrics(1.0, 1, 10, **row, **settings))
    printer.epochs = 30
    printer.handle(E.StepMetrics(2.0, 1, 20, **row, **settings))
    first, second = out.getvalue().splitlines()
    assert first.startswith("epoch 1 step 10 loss 0.5000 lr 0.01 adam") and second.startswith("epoch 1/30 step 20")
