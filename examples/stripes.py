"""Your own model and data in deeptui: a small script module, as a project of yours would have.

`presets/own_model.toml` trains it:

    [model]
    factory = "examples.stripes:make_model"   # called with the table's other keys: width, num_classes
    freeze = ["stem", "block1"]               # what the f key and the freeze schedule act on
    width = 16
    num_classes = 4

    [data]
    factory = "examples.stripes:make_data"    # called with the keys deeptui does not know: n_train, ...
    n_train = 2000

deeptui imports `examples.stripes` from the current directory (run it from the repository's top
folder) or from PYTHONPATH, like `python -m` would. Nothing here knows deeptui: the model is a plain
nn.Module, the data two plain Datasets; every key of the dashboard works on them.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import Dataset

ORIENTATIONS = ("horizontal", "vertical", "diagonal", "anti-diagonal")


class StripesNet(nn.Module):
    """A stem, two convolution blocks and a linear head; 16x16 grey images in, class scores out."""

    def __init__(self, width: int = 16, num_classes: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.head(self.block2(self.block1(self.stem(x))).flatten(1))


def make_model(width: int = 16, num_classes: int = 4) -> nn.Module:
    return StripesNet(width, num_classes)


class Stripes(Dataset):
    """Grey 16x16 images of stripes in one of four orientations, at a random frequency and phase,
    with noise; sample i is the same every time (its own generator)."""

    classes = ORIENTATIONS

    def __init__(self, n: int, seed: int, noise: float = 0.3, size: int = 16):
        self.n, self.seed, self.noise, self.size = n, seed, noise, size
        grid = torch.arange(size, dtype=torch.float32)
        self.u, self.v = grid[None, :].expand(size, size), grid[:, None].expand(size, size)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        label = int(torch.randint(0, len(ORIENTATIONS), (), generator=g))
        freq = 0.5 + 0.7 * float(torch.rand((), generator=g))
        phase = 2 * math.pi * float(torch.rand((), generator=g))
        t = (self.v, self.u, self.u + self.v, self.u - self.v)[label]
        img = 0.5 + 0.5 * torch.sin(freq * t + phase)
        img = img + self.noise * torch.randn(self.size, self.size, generator=g)
        return img.clamp(0, 1)[None], label


def make_data(n_train: int = 2000, n_test: int = 500, noise: float = 0.3) -> tuple[Dataset, Dataset]:
    return Stripes(n_train, seed=1, noise=noise), Stripes(n_test, seed=2, noise=noise)
