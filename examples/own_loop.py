"""Your own training loop, watched and steered by deeptui: mixup with an activation penalty, a loss
deeptui's engine cannot express (it trains cross-entropy on (x, y) batches; this mixes two images
and their two labels, and penalises the features' size). Nothing to download: the data are
16x16 images of bars (horizontal, vertical, diagonal) drawn as the loop goes.

    deeptui run examples/own_loop.py [--epochs 30 --steps 200]   # the dashboard in front
    python examples/own_loop.py                                    # trains as usual; deeptui attach RUN_DIR

Every key of the dashboard acts on this loop at its next run.step(): p pauses it, + and - scale the
learning rate of every parameter group, L types one, f freezes `features`, o switches between the
two optimizers named below, m puts the model in eval mode for the training steps, s saves a
checkpoint (the model and optimizer state_dicts), q stops it (run.step returns False).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import deeptui

SIZE, CLASSES = 16, 3


def bars(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n noisy images, each one bar: horizontal (0), vertical (1) or diagonal (2), anywhere."""
    y = torch.randint(0, CLASSES, (n,), generator=g)
    at = torch.randint(2, SIZE - 2, (n,), generator=g)
    i = torch.arange(SIZE)
    rows, cols = i.view(1, SIZE, 1), i.view(1, 1, SIZE)
    a = at.view(n, 1, 1)
    bar = torch.where(
        y.view(n, 1, 1) == 0,
        (rows - a).abs() <= 1,
        torch.where(y.view(n, 1, 1) == 1, (cols - a).abs() <= 1, (rows - cols + a - SIZE // 2).abs() <= 1),
    )
    x = bar.float() + 0.9 * torch.randn(n, SIZE, SIZE, generator=g)
    return x.unsqueeze(1), y


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, CLASSES))

    def forward(self, x):
        return self.head(self.features(x))


def mixup_loss(model: Net, x, y, g, alpha: float = 0.4, penalty: float = 1e-3):
    """Cross-entropy of a mix of two images against both labels, weighted as they were mixed, plus
    the mean absolute feature activation; and how many predictions name the label that dominates
    the mix (a count on the device: deeptui reads it back once per interval)."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(x), generator=g)
    features = model.features(lam * x + (1 - lam) * x[perm])
    logits = model.head(features)
    loss = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
    correct = (logits.argmax(1) == (y if lam >= 0.5 else y[perm])).sum()
    return loss + penalty * features.abs().mean(), correct


@torch.no_grad()
def evaluate(model: Net, x, y) -> tuple[float, float]:
    model.eval()
    logits = model(x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps", type=int, default=200, help="steps per epoch")
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    test_x, test_y = bars(1024, g)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    choices = {
        "momentum": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        "adam": lambda params: torch.optim.Adam(params, lr=1e-3),
    }
    with deeptui.watch(
        model,
        optimizer,
        name="own_loop",
        freeze=["features"],
        optimizers=choices,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
    ) as run:
        for epoch in range(1, args.epochs + 1):
            model.train()
            for _ in range(args.steps):
                x, y = bars(args.batch, g)
                loss, correct = mixup_loss(model, x, y, g)
                run.optimizer.zero_grad()  # run.optimizer: the one in force after a switch (o)
                loss.backward()
                run.optimizer.step()
                if not run.step(loss, batch_size=len(x), correct=correct):  # logs, applies commands; False: stop
                    break
            else:
                test_loss, accuracy = evaluate(model, test_x, test_y)
                print(f"epoch {epoch}: test loss {test_loss:.4f}, test error {100 * (1 - accuracy):.2f}%")
                if run.test(test_loss, accuracy=accuracy):
                    continue
            break
    print(f"run {run.final_state}: {run.run_dir}")


if __name__ == "__main__":
    main()
