"""deeptui.integrations.lightning: DeeptuiCallback puts a Lightning Trainer's fit under deeptui
(pip install 'deeptui[lightning]'). It logs the training loss of every batch (kept on the device,
read back once per interval), the validation loss and accuracy, and what the module logged; at
each batch boundary it applies deeptui's commands: pause, lr, freeze, train/eval mode, save
(through the Trainer's own checkpointing: last.ckpt in the run directory) and stop."""

from __future__ import annotations

import math
from pathlib import Path

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - the optional extra is not installed
    raise ImportError("deeptui.integrations.lightning needs Lightning; fix: pip install 'deeptui[lightning]'") from None

import deeptui
from deeptui.engine import events as E


class DeeptuiCallback(pl.Callback):
    """`Trainer(callbacks=[DeeptuiCallback(name="mine", freeze=["encoder"])])`: the fit is a
    deeptui run (deeptui run script.py shows its dashboard; deeptui attach, send and show reach
    it). `val_loss` and `val_accuracy` name the metrics the module logs in validation. One
    process only: a data-parallel fit is not steered (each rank would need the same commands)."""

    def __init__(
        self,
        name: str = "lightning",
        freeze=(),
        log_every: int = 50,
        val_loss: str = "val_loss",
        val_accuracy: str = "val_acc",
        log_dir=None,
        on_nan: str = "auto",
    ):
        super().__init__()
        self.settings = dict(name=name, freeze=freeze, log_every=log_every, log_dir=log_dir, on_nan=on_nan)
        self.val_loss, self.val_accuracy = val_loss, val_accuracy
        self.run = None  # the deeptui run (engine.watch.WatchedRun), from the fit's start
        self._noted: dict[str, float] = {}  # the logged scalars told last

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            print("deeptui: DeeptuiCallback watches one-process fits only; this one is not watched")
            return
        batches = trainer.num_training_batches
        self.run = deeptui.watch(
            pl_module,
            trainer.optimizers[0],
            epochs=trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 0,
            steps_per_epoch=int(batches) if isinstance(batches, int) or math.isfinite(batches) else 0,
            **self.settings,
        )
        self.run.checkpointer = TrainerCheckpoints(trainer)
        self.run.trainer.no_choices = "a Lightning fit's optimizer is its LightningModule's configure_optimizers()"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.run is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:  # the module skipped this batch
            return
        if not self.run.step(loss, batch_size=batch_size(batch)):
            trainer.should_stop = True

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.run is None or trainer.sanity_checking or not self.run.alive:
            return
        metrics = trainer.callback_metrics
        self._note_logged(trainer)
        if self.val_loss in metrics and not self.run.test(metrics[self.val_loss], metrics.get(self.val_accuracy)):
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """What the module logged in training (a module with no validation loop too)."""
        if self.run is not None and self.run.alive:
            self._note_logged(trainer)

    def _note_logged(self, trainer) -> None:
        """The Trainer's logged scalars as a `logged` line of events.csv, unless they are the ones
        told last (a validation at the epoch's end, then the epoch's end itself)."""
        logged = {k: float(v) for k, v in trainer.logged_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
        if logged and logged != self._noted:
            self._noted = logged
            self.run.report.note("logged", "logged: " + " ".join(f"{k}={v:.4g}" for k, v in sorted(logged.items())))

    def on_train_end(self, trainer, pl_module) -> None:
        if self.run is not None:
            self.run.close()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.run is not None:
            self.run.close(exception)


class TrainerCheckpoints:
    """A watched Lightning run's save (s, deeptui send RUN save, the end of the run), through
    Trainer.save_checkpoint: last.ckpt, or nonfinite.ckpt for a model that is not finite (never
    over a finite one). deeptui's rewind reads its own .pt files, so these are not rewound to."""

    def __init__(self, trainer: pl.Trainer):
        self.trainer = trainer

    def save(self, run, epoch: int | None = None, best: bool = False) -> list[Path]:
        finite = run.trainer.finite()
        if best:  # best models are ModelCheckpoint's business in a Lightning fit
            return []
        path = run.run_dir / ("last.ckpt" if finite else "nonfinite.ckpt")
        self.trainer.save_checkpoint(path)
        run.report.emit(E.CheckpointSaved, path=str(path), kind="lightning" if finite else "nonfinite")
        if not finite:
            run.report.emit(E.Warning, message=f"the model is not finite: saved as {path.name}, not over last.ckpt")
        return [path]


def batch_size(batch) -> int:
    """The samples in a batch: a tensor's first dimension, or its first tensor's (a tuple, a dict)."""
    first = batch
    while isinstance(first, (list, tuple, dict)) and len(first):
        first = next(iter(first.values())) if isinstance(first, dict) else first[0]
    shape = getattr(first, "shape", None)
    return int(shape[0]) if shape else 1
