"""Your own model and data: model.factory and data.factory on examples/stripes.py keep every
control (freeze, optimizer switch, checkpoint, restore, resume, the NaN dialog), torchvision's
models and data sets by name train, and every bad factory gets one line and exit 2."""

from __future__ import annotations

import csv
import textwrap

import pytest
import torch

from deeptui.engine import checkpoint
from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.build import build_engine
from deeptui.engine.config import load_config
from deeptui.engine.errors import DataError
from deeptui.tui.cli import main
from tests.conftest import ROOT, EventReader
from tests.datafiles import write_mnist

OWN = ROOT / "presets" / "own_model.toml"
SMALL = [
    "data.n_train=200",
    "data.n_test=40",
    "data.batch_size=20",
    "log.interval=2",
    "run.device='cpu'",
    "log.system_seconds=0",
]
ALL = ["data.train_size=0", "data.test_size=0"]  # the tiny preset's sizes are for shapes


@pytest.fixture
def at_root(monkeypatch):
    """deeptui imports factories from the current directory: the repository's top folder here."""
    monkeypatch.chdir(ROOT)


@pytest.fixture
def own(tmp_path, at_root):
    """own(*overrides) -> an Engine on presets/own_model.toml with small data, logging under tmp_path."""
    made = []

    def make(*overrides: str, **kw):
        cfg = load_config(OWN, [*SMALL, *overrides])
        eng = build_engine(cfg, data_root=tmp_path / "data", log_dir=tmp_path / "runs", **kw)
        made.append(eng)
        return eng

    yield make
    for eng in made:
        if eng.alive:
            eng.shutdown(timeout=30)


def frozen_parts(eng) -> dict[str, bool]:
    return {
        name: all(not p.requires_grad for p in getattr(eng.model, name).parameters()) for name in eng.model._modules
    }


def test_the_factory_preset_keeps_every_key_in_its_config(own):
    eng = own()
    assert type(eng.model).__name__ == "StripesNet" and eng.model.head.out_features == 4
    assert eng.model.stem[0].out_channels == 16  # width = 16 from [model]
    assert eng.data.train_size == 200 and eng.data.num_classes == 4  # n_train from [data]
    # config.toml is written as a preset is: the factories' keys are keys of their tables again
    again = load_config(eng.run_dir / "config.toml")
    assert again.model == eng.cfg.model and again.data == eng.cfg.data
    assert again.model.kwargs == {"width": 16, "num_classes": 4}


def test_freeze_schedule_switch_checkpoint_and_restore_on_a_factory_model(own):
    # 100 steps an epoch and no epoch checkpoints: however late a pause lands on a loaded machine,
    # the schedule has not unfrozen yet and last.pt is the one saved below (once a pause landed
    # past the epoch's end, whose checkpoint replaced it)
    eng = own("run.epochs=3", "data.n_train=2000", "log.checkpoint_every=0")
    r = EventReader(eng)
    # model.freeze = ["stem", "block1"]: frozen for epoch 1 by the schedule, the rest trains
    assert frozen_parts(eng) == {"stem": True, "block1": True, "block2": False, "head": False}
    stem_before = eng.model.stem[0].weight.detach().clone()
    eng.send(C.Pause())
    eng.start()
    started = r.wait(lambda e: isinstance(e, E.RunStarted))
    assert started.model == "StripesNet" and started.freeze_modules == ("stem", "block1") and started.has_features
    assert isinstance(r.answer(eng.send(C.SwitchOptimizer(name="adam"))), E.CommandApplied)
    assert isinstance(eng.optimizer, torch.optim.Adam)
    eng.send(C.Resume())
    r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= 4)
    assert torch.equal(eng.model.stem[0].weight, stem_before)  # frozen: no gradient, no change
    eng.send(C.Pause())
    unfreeze = r.answer(eng.send(C.SetFrozen(frozen=False)))
    assert isinstance(unfreeze, E.CommandApplied) and unfreeze.detail.startswith("stem, block1 trainable")
    assert not any(frozen_parts(eng).values())
    assert isinstance(r.answer(eng.send(C.SaveCheckpoint())), E.CommandApplied)
    saved_step = eng.train.step
    eng.send(C.Resume())
    r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= saved_step + 4)
    eng.send(C.Pause())
    restored = r.answer(eng.send(C.RestoreCheckpoint()))
    assert isinstance(restored, E.CommandApplied) and eng.train.step == saved_step
    assert isinstance(eng.optimizer, torch.optim.Adam) and not any(frozen_parts(eng).values())
    assert eng.shutdown(timeout=60)


def test_resume_a_factory_run_from_its_run_directory(own, tmp_path, capsys):
    eng = own("run.epochs=2", "run.max_steps=6")
    assert eng.run() == "finished"
    payload = checkpoint.load(eng.run_dir / "last.pt", eng.cfg)
    code = main(["--resume", str(eng.run_dir), "--headless", "--max-steps", "12", "--trust-run"])  # its own run
    out = capsys.readouterr().out
    assert code == 0 and "resumed own_model" in out and "StripesNet" in out, out
    rows = [r for r in csv.DictReader(open(eng.run_dir / "metrics.csv")) if r["split"] == "train"]
    steps = [int(r["step"]) for r in rows]
    assert steps == [2, 4, 6, 8, 10, 12] and payload["train"]["step"] == 6  # went on from step 6


def test_the_factory_preset_trains_headless(at_root, tmp_path, capsys):
    code = main(
        [str(OWN), "--headless", "--log-dir", str(tmp_path), "--epochs", "2", *sum([["--set", s] for s in SMALL], [])]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "StripesNet (7,380 parameters)" in out and "stem, block1 trainable at epoch 2" in out
    (run_dir,) = tmp_path.iterdir()
    test_rows = [r for r in csv.DictReader(open(run_dir / "metrics.csv")) if r["split"] == "test"]
    assert len(test_rows) == 2 and float(test_rows[-1]["accuracy"]) > 0.25  # better than chance, 4 classes


def test_torchvision_resnet18_with_num_classes_10_trains_on_shapes(make_engine):
    eng = make_engine(
        "model.factory='torchvision.models:resnet18'",
        "model.num_classes=10",
        "data.batch_size=4",
        "data.train_size=32",
        "data.test_size=8",
        "run.max_steps=2",
        "log.interval=1",
    )
    assert type(eng.model).__name__ == "ResNet" and eng.model.fc.out_features == 10
    assert eng.run() == "finished"
    losses = [e.loss for e in eng.events.read(0)[0] if isinstance(e, E.StepMetrics)]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))


def test_torchvision_fashion_mnist_by_name_through_torchvisions_own_class(make_engine, tmp_path):
    write_mnist(tmp_path / "data", n_train=60, n_test=20)
    (tmp_path / "data" / "MNIST").rename(tmp_path / "data" / "FashionMNIST")  # the same idx format
    eng = make_engine(
        "data.dataset='torchvision:FashionMNIST'", "model.name='mlp'", "schedule.freeze_features_epochs=0", *ALL
    )
    assert (eng.data.train_size, eng.data.test_size, eng.data.in_channels, eng.data.image_size) == (60, 20, 1, 28)
    assert eng.data.num_classes == 10 and eng.run() == "finished"


def test_imagefolder_reads_class_folders_of_pngs(make_engine, tmp_path):
    from PIL import Image

    root = tmp_path / "pics"
    for split, n in (("train", 6), ("val", 2)):
        for colour in ("red", "blue", "green"):
            (root / split / colour).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (12, 12), colour).save(root / split / colour / f"{i}.png")
    eng = make_engine(
        f"data.dataset='imagefolder:{root}'", "model.name='mlp'", "schedule.freeze_features_epochs=0",
        "data.batch_size=6", *ALL,
    )  # fmt: skip
    assert (eng.data.train_size, eng.data.test_size, eng.data.num_classes) == (18, 6, 3)
    x, y = next(iter(eng.data.train))
    assert x.shape == (6, 3, 12, 12) and x.max() <= 1.0 and eng.run() == "finished"
    eng2 = make_engine(
        f"data.dataset='imagefolder:{root}'", "model.name='mlp'", "schedule.freeze_features_epochs=0",
        "data.loader='dataloader'", "data.num_workers=0", "data.flip=true", "data.batch_size=6", *ALL,
    )  # fmt: skip
    x2, _ = next(iter(eng2.data.test))
    assert x2.shape == (6, 3, 12, 12) and eng2.data.num_classes == 3
    Image.new("RGB", (16, 12), "red").save(root / "train" / "red" / "wide.png")
    with pytest.raises(DataError, match=r"samples differ in shape \(\(3, 12, 12\) and \(3, 12, 16\)\); fix: "):
        make_engine(f"data.dataset='imagefolder:{root}'", "model.name='mlp'", "schedule.freeze_features_epochs=0", *ALL)


def test_cifar100_offline_gets_the_same_message_as_cifar10(tmp_path, monkeypatch, capsys):
    import torchvision.datasets as tvd

    def offline(self):
        raise RuntimeError("Error downloading cifar-100-python.tar.gz: <urlopen error [Errno -3] no network>")

    monkeypatch.setattr(tvd.CIFAR100, "download", offline)
    base = ["quickstart", "--headless", "--data-dir", str(tmp_path / "data"), "--log-dir", str(tmp_path / "runs")]
    code = main([*base, "--set", "data.dataset='torchvision:CIFAR100'"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert str(tmp_path / "data" / "cifar-100-python") in err and "the download failed" in err and "no network" in err
    code = main([*base, "--set", "data.dataset='torchvision:CIFAR100'", "--set", "data.download=false"])
    err = capsys.readouterr().err
    assert code == 2 and "data.download = false" in err and "set data.download = true" in err
    code = main([*base, "--set", "data.dataset='torchvision:CIFAR1000'"])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean 'torchvision:CIFAR100'" in err


BAD_MODULE = """
from torch import nn

not_callable = 5

def returns_text(**kw):
    return "a model"

def raises(width=3):
    raise ValueError("width must be even\\nsecond line")

def needs(width):
    return nn.Linear(width, 10)

def good(width=8, num_classes=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))

def too_few(num_classes=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))

def wrong_input():
    return nn.Linear(7, 10)

def data_number():
    return 42
"""


@pytest.mark.parametrize(
    "sets,words",
    [
        (["model.factory='nosuchpkg.models:make'"], ["model.factory", "no module named 'nosuchpkg'", "PYTHONPATH"]),
        (["model.factory='broken:make'"], ["importing broken failed", "no_such_dependency", "fix:"]),
        (["model.factory='badfactories:godo'"], ["badfactories has no attribute 'godo'", "did you mean 'good'"]),
        (["model.factory='badfactories:not_callable'"], ["is a int, not a function"]),
        (["model.factory='badfactories:returns_text'"], ["returned a str, not an nn.Module"]),
        (["model.factory='badfactories:raises'"], ["raised ValueError: width must be even;", "model.factory"]),
        (["model.factory='badfactories:needs'"], ["needs 'width'", "add width = ... to [model]"]),
        (["model.factory='badfactories:good'", "model.widht=3"], ["unknown key model.widht", "did you mean 'width'"]),
        (["model.factory='badfactories:too_few'"], ["gives 3 outputs per sample but shapes has 10 classes"]),
        (["model.factory='badfactories:wrong_input'"], ["cannot take the data's samples of shape (3, 32, 32)"]),
        (["model.factory='badfactories:good'", "model.freeze=['layer9']"], ["model.freeze names 'layer9'"]),
        (["model.factory='models only'"], ["model.factory", '"package.module:function"']),
        (["data.factory='badfactories:data_number'"], ["data.factory", "returned a int", "(train, test) Datasets"]),
    ],
    ids=[
        "no-module",
        "import-fails",
        "no-attribute",
        "not-callable",
        "not-a-module",
        "factory-raised",
        "missing-argument",
        "unknown-argument",
        "too-few-outputs",
        "wrong-input",
        "freeze-unknown-module",
        "bad-spec",
        "data-wrong-type",
    ],
)
def test_bad_factories_exit_2_with_one_line(tmp_path, monkeypatch, capsys, sets, words):
    (tmp_path / "badfactories.py").write_text(BAD_MODULE)
    (tmp_path / "broken.py").write_text("import no_such_dependency\n")
    monkeypatch.chdir(tmp_path)  # factories are found in the current directory
    argv = ["quickstart", "--headless", "--log-dir", str(tmp_path / "runs"), "--set", "data.train_size=64"]
    code = main([*argv, *sum([["--set", s] for s in sets], [])])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "quickstart.toml" in err and "fix:" in err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "runs").exists()  # nothing started


def test_a_data_factory_gets_its_keys_and_may_return_tensors(tmp_path, monkeypatch, make_engine):
    (tmp_path / "mydata.py").write_text(
        textwrap.dedent(
            """
            import torch

            def make(n=30, device=None):
                g = torch.Generator().manual_seed(0)
                x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
                y = torch.arange(n) % 5
                make.device = device
                return (x, y), (x[:10], y[:10])
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    eng = make_engine(
        "data.factory='mydata:make'", "data.n=40", "model.name='mlp'", "schedule.freeze_features_epochs=0",
        "data.normalize=true", "data.flip=true", "data.crop_padding=1", *ALL,
    )  # fmt: skip
    import mydata

    assert mydata.make.device == torch.device("cpu")  # deeptui passes what the factory names
    assert (eng.data.train_size, eng.data.test_size, eng.data.num_classes, eng.data.image_size) == (40, 10, 5, 8)
    assert eng.run() == "finished"


@pytest.mark.asyncio
async def test_the_dashboard_steers_a_factory_model_through_keys_and_the_nan_dialog(own):
    from deeptui.tui.app import DeeptuiApp
    from deeptui.tui.dialogs import NanScreen
    from tests.pilot import text_of, until

    eng = own("run.epochs=50", "run.on_nan='pause'")
    eng.send(C.Pause())
    app = DeeptuiApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "paused" in text_of(app, "#header"), what="paused")
        assert "StripesNet" in text_of(app, "#run") and "stem, block1 frozen" in text_of(app, "#run")
        await pilot.press("f")  # the schedule froze model.freeze's modules: the key unfreezes them
        await until(pilot, lambda: "stem, block1 trainable" in text_of(app, "#run"), what="unfrozen")
        assert not any(frozen_parts(eng).values())
        await pilot.press("o")  # momentum -> adam, the preset's next choice
        await until(pilot, lambda: "\nadam  lr" in text_of(app, "#run"), what="adam")
        await pilot.press("s")
        await until(pilot, lambda: "checkpoint saved" in text_of(app, "#log"), what="checkpoint")
        saved = eng.train.step
        eng.send(C.SetLearningRate(lr=1e30))  # the loss turns non-finite at the next row
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, NanScreen), timeout=60, what="NaN dialog")
        assert eng.state == "paused"
        app.screen.dismiss("rewind")  # back to the last good checkpoint as it was, and resume
        restored = lambda: any(  # noqa: E731
            isinstance(e, E.CommandApplied) and e.command == "RestoreCheckpoint" for e in eng.events.read(0)[0]
        )
        await until(pilot, restored, what="restored")
        assert eng.train.base_lr == pytest.approx(0.05) and eng.train.step >= saved
        await pilot.press("q")
    assert not eng.alive and eng.final_state == "stopped"


@pytest.mark.e2e
def test_a_detached_factory_run_shows_its_machine_in_ls_and_is_steered(at_root, tmp_path, capsys):
    import os
    import signal

    from deeptui.engine.remote.client import RemoteSession
    from deeptui.tui.runs import ls_main

    sets = sum([["--set", s] for s in [*SMALL, "log.system_seconds=1"]], [])
    assert main([str(OWN), "--detach", "--log-dir", str(tmp_path), "--epochs", "200", *sets]) == 0
    (run_dir,) = tmp_path.iterdir()
    pid = int((run_dir / "deeptui.pid").read_text())
    capsys.readouterr()
    session = RemoteSession(run_dir)
    try:
        session.start()
        r = EventReader(session)
        r.wait(lambda e: isinstance(e, E.SystemStats), timeout=60)
        assert ls_main(["--log-dir", str(tmp_path)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[2].split()[:2] == [run_dir.name, "running"] and lines[3].strip().startswith("machine: cpu ")
        assert isinstance(r.answer(session.send(C.Pause())), E.CommandApplied)  # the schedule stands still
        frozen = r.last(lambda e: isinstance(e, E.StateChanged)).frozen
        reply = r.answer(session.send(C.SetFrozen(frozen=not frozen)))
        want = "stem, block1 trainable" if frozen else "stem, block1 frozen"
        assert isinstance(reply, E.CommandApplied) and reply.detail.startswith(want), reply
        assert session.shutdown("the test is done", timeout=60) and session.final_state == "stopped"
    finally:
        session.detach()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    events = [r["event"] for r in csv.DictReader(open(run_dir / "events.csv"))]
    assert "applied:SetFrozen" in events and events[-1] == "stopped"
    assert (run_dir / "last.pt").is_file() and ",cpu,,,,,," in (run_dir / "system.csv").read_text()
