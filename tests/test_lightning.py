"""deeptui.integrations.lightning: a tiny real LightningModule trains on the CPU with DeeptuiCallback;
deeptui's commands pause its Trainer, change its lr, save through the Trainer's checkpointing,
freeze a module and stop the fit, and the run directory is a deeptui run like any other."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("lightning")

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from deeptui.engine import commands as C  # noqa: E402
from deeptui.engine import events as E  # noqa: E402
from deeptui.engine.history import read_run  # noqa: E402
from deeptui.integrations.lightning import DeeptuiCallback  # noqa: E402
from tests.conftest import EventReader  # noqa: E402


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.encoder, self.head = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(self.encoder(x)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        self.log("val_loss", F.cross_entropy(out, y))
        self.log("val_acc", (out.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(n: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)), 8)


def test_deeptuis_commands_pause_change_lr_save_and_stop_a_lightning_fit(tmp_path):
    torch.manual_seed(0)
    module, callback = Tiny(), DeeptuiCallback(name="lit", freeze=["encoder"], log_every=2, log_dir=tmp_path / "runs")
    trainer = pl.Trainer(
        max_epochs=1000,
        accelerator="cpu",
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    started = threading.Event()
    real_start = callback.on_train_start

    def on_train_start(trainer, pl_module):  # the test's first command waits in the first step
        real_start(trainer, pl_module)
        callback.run.send(C.Pause())
        started.set()

    callback.on_train_start = on_train_start
    fit = threading.Thread(target=trainer.fit, args=(module, loader(64), loader(16)), daemon=True)
    fit.start()
    assert started.wait(120)
    run, reader = callback.run, EventReader(callback.run)
    reader.wait(lambda e: isinstance(e, E.StateChanged) and e.state == "paused")

    def command(cmd):
        run.send(cmd)
        return reader.answer(cmd.id)

    at = trainer.global_step
    assert isinstance(command(C.SetLearningRate(lr=0.05)), E.CommandApplied)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05)
    assert trainer.global_step == at  # paused: the fit waits at the batch boundary
    assert isinstance(command(C.SetFrozen(frozen=True)), E.CommandApplied)
    assert not module.encoder.weight.requires_grad
    assert isinstance(command(C.SaveCheckpoint()), E.CommandApplied)
    saved = torch.load(run.run_dir / "last.ckpt", weights_only=False)
    assert saved["global_step"] == at and "encoder.weight" in saved["state_dict"]  # the Trainer's own format
    reason = command(C.SwitchOptimizer()).reason
    assert "configure_optimizers" in reason  # the module decides its optimizer

    command(C.Resume())
    reader.wait(lambda e: isinstance(e, E.EpochEnd))  # the validation loss and accuracy, as a test row
    assert isinstance(command(C.Stop(reason="enough")), E.CommandApplied)
    fit.join(120)
    assert not fit.is_alive() and trainer.should_stop
    cfg, events, state = read_run(run.run_dir)
    assert state == "stopped" and cfg.run.name == "lit"
    rows = [e for e in events if isinstance(e, E.StepMetrics)]
    assert rows and all(e.lr == pytest.approx(0.05) and e.frozen for e in rows)
    assert any(isinstance(e, E.Note) and "val_loss=" in e.detail for e in events)  # what the module logged


class NoValidation(Tiny):
    """Logs in training only, as many modules do: no validation loop."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        loss = F.cross_entropy(out, y)
        self.log("my_loss", loss, on_step=False, on_epoch=True)
        self.log("train_acc", (out.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return loss


def test_what_a_module_logs_in_training_reaches_the_run_without_a_validation_loop(tmp_path):
    """Bug: the logged metrics were told only at a validation's end, so a module without a
    validation loop had none of them in events.csv, show or export."""
    torch.manual_seed(0)
    module, callback = NoValidation(), DeeptuiCallback(name="lit", log_every=2, log_dir=tmp_path / "runs")
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", callbacks=[callback], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, loader(32))
    cfg, events, state = read_run(callback.run.run_dir)
    told = [e.detail for e in events if isinstance(e, E.Note) and e.kind == "logged"]
    assert state == "finished" and len(told) == 2, told  # once per epoch
    assert all("my_loss=" in t and "train_acc=" in t for t in told)
