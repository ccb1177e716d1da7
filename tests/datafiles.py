"""Small data files in the exact on-disk formats torchvision uses, written by the tests.

write_cifar10: <root>/cifar-10-batches-py/data_batch_1..5 and test_batch, protocol-2 pickles of
dicts with bytes keys like the originals (b"batch_label", b"labels", b"data" uint8 (N, 3072),
b"filenames").
write_mnist: <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (optionally .gz).
write_malicious_cifar: a data_batch_1 whose unpickling would run a shell command.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR_DIR = "cifar-10-batches-py"


def _cifar_batch(path: Path, rng: np.random.Generator, n: int, label: str) -> None:
    labels = [int(v) for v in rng.integers(0, 10, n)]
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    d = {
        b"batch_label": label.encode(),
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    with open(path, "wb") as fh:
        pickle.dump(d, fh, protocol=2)


def write_cifar10(root: Path, n_train: int = 100, n_test: int = 40, seed: int = 0) -> Path:
    """n_train samples spread over the five training batches, n_test in test_batch.
    Returns the cifar-10-batches-py folder."""
    folder = Path(root) / CIFAR_DIR
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per = [n_train // 5 + (i < n_train % 5) for i in range(5)]
    for i, n in enumerate(per, 1):
        _cifar_batch(folder / f"data_batch_{i}", rng, n, f"training batch {i} of 5")
    _cifar_batch(folder / "test_batch", rng, n_test, "testing batch 1 of 1")
    return folder


class _Payload:
    """Unpickling this runs `touch <marker>`: what a planted data file could do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def write_malicious_cifar(root: Path, marker: Path | None = None) -> Path:
    """A complete CIFAR-10 folder whose data_batch_1 would create `marker` (default
    <root>/PWNED) when loaded with plain pickle. Returns the marker path."""
    marker = Path(marker) if marker is not None else Path(root) / "PWNED"
    folder = write_cifar10(root, n_train=50, n_test=10)
    with open(folder / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": _Payload(marker), b"labels": [0]}, fh, protocol=2)
    return marker


def _idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = struct.pack(">i", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}i", *arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)


def write_mnist(root: Path, n_train: int = 100, n_test: int = 40, gz: bool = False, seed: int = 0) -> Path:
    """The four raw idx files (gzipped when gz). Returns the MNIST/raw folder."""
    folder = Path(root) / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz)
        _idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8), gz)
    return folder
