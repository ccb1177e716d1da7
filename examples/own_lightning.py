"""A Lightning fit, watched and steered by deeptui: DeeptuiCallback in the Trainer's callbacks
(pip install 'deeptui[lightning]'). The same bars and network as examples/own_loop.py, as a
LightningModule with a plain cross-entropy; the callback logs every batch's loss, the validation
loss and accuracy the module logs, and applies pause, lr, freeze, mode, save (Trainer.save_checkpoint:
last.ckpt in the run directory) and stop at batch boundaries.

    deeptui run examples/own_lightning.py [--epochs 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from deeptui.integrations.lightning import DeeptuiCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from own_loop import Net, bars  # noqa: E402 - the example beside this one


class Bars(pl.LightningModule):
    def __init__(self, lr: float = 0.05):
        super().__init__()
        self.net, self.lr = Net(), lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    args = p.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train, test = TensorDataset(*bars(12800, g)), TensorDataset(*bars(1024, g))
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="auto",
        callbacks=[DeeptuiCallback(name="own_lightning", freeze=["net.features"])],
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    trainer.fit(Bars(), DataLoader(train, batch_size=64, shuffle=True), DataLoader(test, batch_size=256))


if __name__ == "__main__":
    main()
