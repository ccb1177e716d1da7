"""Checkpoints that never lose good weights: last.pt on every save, best.pt for the best test
accuracy, the newest epoch-N.pt, and a non-finite model only ever in nonfinite.pt."""

from __future__ import annotations

import math

import torch

from deeptui.engine import checkpoint
from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.tui.cli import main
from tests.conftest import ROOT, EventReader

QUICK = str(ROOT / "presets" / "quickstart.toml")


def finite_model(path) -> bool:
    st = checkpoint.load(path)
    return all(torch.isfinite(t).all() for t in st["model"].values() if t.is_floating_point())


def test_epoch_checkpoints_keep_the_newest_and_best_holds_the_best(make_engine):
    eng = make_engine("run.epochs=4", "log.checkpoint_every=1", "log.keep_checkpoints=2")
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.Finished))
    names = sorted(p.name for p in eng.run_dir.glob("*.pt"))
    assert names == ["best.pt", "epoch-0003.pt", "epoch-0004.pt", "last.pt"]
    tests = [e for e in r.seen if isinstance(e, E.EpochEnd)]
    best = max(tests, key=lambda e: e.test_accuracy)
    st = checkpoint.load(eng.run_dir / "best.pt")
    assert st["train"]["best_epoch"] == best.epoch and st["train"]["best_accuracy"] == best.test_accuracy
    kinds = {e.kind for e in r.seen if isinstance(e, E.CheckpointSaved)}
    assert kinds == {"last", "epoch", "best"}


def test_a_non_finite_model_is_never_saved_over_a_finite_one(make_engine):
    eng = make_engine("run.epochs=50", "run.on_nan='pause'")
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.StepMetrics))
    r.answer(eng.send(C.SaveCheckpoint()))
    r.answer(eng.send(C.EvaluateNow()))  # a test accuracy: best.pt
    good_step = checkpoint.load(eng.run_dir / "last.pt")["train"]["step"]
    r.answer(eng.send(C.SetLearningRate(lr=1e30)))
    r.wait(lambda e: isinstance(e, E.NonFiniteLoss))
    ev = r.answer(eng.send(C.SaveCheckpoint()))
    assert isinstance(ev, E.CommandRejected) and "not finite" in ev.reason
    assert eng.shutdown(timeout=60)  # q after the NaN: the final save must not destroy last.pt
    assert finite_model(eng.run_dir / "last.pt") and finite_model(eng.run_dir / "best.pt")
    assert checkpoint.load(eng.run_dir / "last.pt")["train"]["step"] == good_step
    assert not finite_model(eng.run_dir / "nonfinite.pt")
    warnings = [e.message for e in r.seen if isinstance(e, E.Warning)]
    assert any("not saved over the last good checkpoint (last.pt)" in w for w in warnings), warnings


def test_nan_then_quit_then_resume_trains_on_finite_weights(tmp_path, capsys):
    """The issue's case: quitting after a NaN used to write NaN weights over the only checkpoint,
    and --resume then failed at once."""
    from deeptui.engine.build import build_engine
    from deeptui.engine.config import load_config

    cfg = load_config(
        QUICK,
        [
            "run.on_nan='pause'",
            "data.train_size=512",
            "data.test_size=128",
            "run.epochs=3",
            "log.interval=2",
            "run.device='cpu'",
        ],
    )
    eng = build_engine(cfg, log_dir=tmp_path)
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.CheckpointSaved) and e.kind == "last")  # end of epoch 1
    r.answer(eng.send(C.SetLearningRate(lr=1e30)))
    r.wait(lambda e: isinstance(e, E.NonFiniteLoss))
    assert eng.shutdown("quit", timeout=60)
    code = main(["--resume", str(eng.run_dir), "--headless", "--epochs", "3"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert f"resuming from {eng.run_dir / 'last.pt'}" in err
    after = [
        float(line.split(" loss ")[1].split()[0])
        for line in out.splitlines()
        if " loss " in line and line.startswith("epoch ") and "test" not in line
    ]
    assert after and all(math.isfinite(v) for v in after), out


def test_resume_falls_back_to_the_newest_readable_checkpoint_and_says_which(tmp_path, capsys):
    assert (
        main(
            [
                QUICK,
                "--headless",
                "--log-dir",
                str(tmp_path),
                "--epochs",
                "2",
                "--set",
                "data.train_size=256",
                "--set",
                "data.test_size=64",
                "--set",
                "log.checkpoint_every=1",
                "--set",
                "run.device='cpu'",
            ]
        )
        == 0
    )
    (run_dir,) = tmp_path.iterdir()
    (run_dir / "last.pt").write_bytes(b"torn")
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--headless", "--epochs", "3"]) == 0
    assert f"resuming from {run_dir / 'epoch-0002.pt'}" in capsys.readouterr().err


def test_restore_can_name_best_or_an_epoch_and_set_the_lr(make_engine):
    eng = make_engine("run.epochs=50", "log.checkpoint_every=1")
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.CheckpointSaved) and e.kind == "epoch")
    r.answer(eng.send(C.Pause()))
    ev = r.answer(eng.send(C.RestoreCheckpoint(which="epoch 1", lr_scale=0.1)))
    assert isinstance(ev, E.CommandApplied) and "epoch-0001.pt" in ev.detail
    assert eng.train.step == 16 and math.isclose(eng.train.base_lr, 0.005)
    ev = r.answer(eng.send(C.RestoreCheckpoint(which="best", lr=0.02)))
    assert isinstance(ev, E.CommandApplied) and "best.pt" in ev.detail and eng.train.base_lr == 0.02
    ev = r.answer(eng.send(C.RestoreCheckpoint(which="epoch 7")))
    assert isinstance(ev, E.CommandRejected) and "no epoch 7 checkpoint" in ev.reason, ev


def test_epoch_checkpoints_past_epoch_9999_keep_the_newest(tmp_path):
    files = checkpoint.CheckpointFiles(tmp_path, keep=2)
    for epoch in (9998, 9999, 10000, 10001):
        files.write({"finite": True, "epoch": epoch}, epoch=epoch)
    assert [p.name for p in files.epochs()] == ["epoch-10000.pt", "epoch-10001.pt"]
    assert files.find("epoch 10001") == tmp_path / "epoch-10001.pt"


def test_a_restore_that_does_not_fit_changes_nothing(make_engine):
    """Bug: RestoreCheckpoint took the checkpoint's weights, frozen state and step counters back
    before its optimizer state, which can still refuse (a checkpoint of another optimizer setup):
    rejected, the run went on half restored, the checkpoint's weights and step with its own
    optimizer. A per-parameter buffer of the wrong shape was taken without a word, and the next
    step failed on it."""
    eng = make_engine("run.epochs=50", "optimizer.name='adam'", "log.checkpoint_every=1")
    r = EventReader(eng)
    eng.start()
    saved = r.wait(lambda e: isinstance(e, E.CheckpointSaved) and e.kind == "epoch")
    r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step > saved.step + 2)  # moved on from it
    r.answer(eng.send(C.Pause()))
    path = eng.checkpoints.find("last")
    good = checkpoint.load(path)
    assert good["train"]["step"] < eng.train.step
    weights = {k: v.clone() for k, v in eng.model.state_dict().items()}
    train, optimizer = eng.train.state_dict(), eng.optimizer
    moments = {id(p): s["exp_avg"].clone() for p, s in optimizer.state.items()}
    trainable = [p.requires_grad for p in eng.model.parameters()]

    fewer = {
        **good,
        "optimizer": {**good["optimizer"], "param_groups": [dict(g) for g in good["optimizer"]["param_groups"]]},
    }
    fewer["optimizer"]["param_groups"][0]["params"] = fewer["optimizer"]["param_groups"][0]["params"][1:]
    state = {i: dict(s) for i, s in good["optimizer"]["state"].items()}
    first = min(state)
    state[first]["exp_avg"] = torch.zeros(3)
    misshapen = {**good, "optimizer": {**good["optimizer"], "state": state}}
    for crafted, why in ((fewer, "doesn't match the size"), (misshapen, "exp_avg is (3,)")):
        torch.save(crafted, path)
        ev = r.answer(eng.send(C.RestoreCheckpoint(which="last")))
        assert isinstance(ev, E.CommandRejected), ev
        assert "optimizer state does not fit" in ev.reason and why in ev.reason, ev.reason
        assert eng.train.state_dict() == train and eng.optimizer is optimizer
        assert all(torch.equal(v, weights[k]) for k, v in eng.model.state_dict().items())
        assert all(torch.equal(s["exp_avg"], moments[id(p)]) for p, s in optimizer.state.items())
        assert [p.requires_grad for p in eng.model.parameters()] == trainable
    r.answer(eng.send(C.Stop()))
    r.wait(lambda e: isinstance(e, E.Finished))
    assert eng.final_state == "stopped"
