"""Data sets (shapes, cifar10, mnist) and the two interchangeable loaders.

Every set is first read into one uint8 tensor (N, C, H, W) plus int64 labels on the CPU.
From there:

* loader = "memory": the whole set lives on the device; each batch is one gather that picks
  the samples, the random crop offsets and the flip at once (airbench's CifarLoader idea),
  then one float conversion with normalisation folded into a multiply-add. No per-sample Python.
* loader = "dataloader": a torch Dataset with torchvision transforms and a DataLoader with
  worker processes, as the lecture teaches; close() shuts the persistent workers down.

Training batches keep the last partial batch (every sample is seen each epoch, like the
DataLoader default), except a final batch of exactly one sample, which is dropped: BatchNorm
cannot train on a batch of one. Both loaders follow the same rule, so len() agrees.

Files are read here, not by torchvision's dataset classes: those check the MD5 sums of the
real files (which test fixtures cannot match). torchvision is used only to download.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import math
import os
import pickle
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import default_data_root  # noqa: F401 - where the data root is decided, used by callers
from .errors import DataError, SetupError

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
MNIST_DIR = os.path.join("MNIST", "raw")
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
SHAPES_CLASSES = (
    "circle",
    "square",
    "triangle",
    "ring",
    "cross",
    "diamond",
    "horizontal bar",
    "vertical bar",
    "x",
    "dot grid",
)
SHAPES_TRAIN, SHAPES_TEST = 10_000, 2_000
# The shapes set is fixed like a downloaded one (run.seed only drives order and augmentation);
# the test images come from a different seed than the training images.
SHAPES_TRAIN_SEED, SHAPES_TEST_SEED = 0, 1


def _mix(*parts) -> int:
    """A 63-bit seed from (seed, epoch, stream, ...) without collisions between neighbours."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# ---------------------------------------------------------------------------------------------
# shapes: generated, no files


def make_shapes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n 32x32 colour images of 10 shape classes, uint8 (n, 3, 32, 32), and int64 labels.

    Random position, size, aspect, colours and noise; the same for the same (n, seed).
    Vectorised: one pass of tensor ops per class, no per-pixel or per-image Python.
    """
    g = torch.Generator().manual_seed(_mix("shapes", seed))
    size = 32
    labels = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]
    r = 6 + 7 * torch.rand(n, generator=g)  # radius in pixels
    sx = r * (0.85 + 0.3 * torch.rand(n, generator=g))  # a little aspect jitter
    sy = r * (0.85 + 0.3 * torch.rand(n, generator=g))
    cx = 0.9 * sx + (size - 1 - 1.8 * sx) * torch.rand(n, generator=g)
    cy = 0.9 * sy + (size - 1 - 1.8 * sy) * torch.rand(n, generator=g)
    fg = torch.rand(n, 3, generator=g)
    bg = torch.rand(n, 3, generator=g)
    # too little contrast: use the background's complement as the shape's colour
    weak = (fg - bg).abs().sum(1) < 0.6
    fg[weak] = 1 - bg[weak]
    noise = 0.03 + 0.09 * torch.rand(n, generator=g)  # uniform noise half-width

    grid = torch.arange(size, dtype=torch.float32)
    u = (grid[None, None, :] - cx[:, None, None]) / sx[:, None, None]  # (n, 1, 32), x in radii
    v = (grid[None, :, None] - cy[:, None, None]) / sy[:, None, None]  # (n, 32, 1), y in radii
    mask = torch.zeros(n, size, size, dtype=torch.bool)
    for k in range(10):
        sel = (labels == k).nonzero().squeeze(1)
        if sel.numel():
            mask[sel] = _shape_mask(k, u[sel], v[sel])

    # compose in int16 (float would cost more than everything else): colour + uniform noise
    fg8 = (fg * 255).round().to(torch.int16)[:, :, None, None]
    bg8 = (bg * 255).round().to(torch.int16)[:, :, None, None]
    img = torch.where(mask[:, None], fg8, bg8)
    amp = (noise * 2 * 255 / 256 * 64).round().to(torch.int16)[:, None, None, None]  # /64 below
    u8 = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    img += ((u8.to(torch.int16) - 128) * amp) >> 6
    return img.clamp_(0, 255).to(torch.uint8), labels


def _shape_mask(k: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Boolean (m, 32, 32) mask of class k; u, v are pixel offsets from the centre in radii."""
    au, av = u.abs(), v.abs()
    inside = torch.maximum(au, av) <= 1
    if k == 0:  # circle
        return u * u + v * v <= 1
    if k == 1:  # square
        return torch.maximum(au, av) <= 0.8
    if k == 2:  # triangle, apex up
        return (v >= -0.9) & (v <= 0.8) & (au <= (v + 0.9) * 0.55)
    if k == 3:  # ring
        d2 = u * u + v * v
        return (d2 <= 1) & (d2 >= 0.55**2)
    if k == 4:  # plus-shaped cross
        return inside & ((au <= 0.28) | (av <= 0.28))
    if k == 5:  # diamond
        return au + av <= 1
    if k == 6:  # horizontal bar
        return (au <= 1) & (av <= 0.3)
    if k == 7:  # vertical bar
        return (av <= 1) & (au <= 0.3)
    if k == 8:  # x
        return inside & (((u - v).abs() <= 0.35) | ((u + v).abs() <= 0.35))
    # dot grid: 2 x 2 dots
    return (au - 0.5) ** 2 + (av - 0.5) ** 2 <= 0.33**2


# ---------------------------------------------------------------------------------------------
# cifar10: torchvision's python pickles, read with a restricted unpickler


def _latin1_encode(text, encoding="latin1"):
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not part of the format")
    return codecs.encode(text, "latin1")


_CIFAR_GLOBALS = {
    ("_codecs", "encode"): _latin1_encode,
    # how numpy arrays pickle: the real files were written by numpy 1 (numpy.core), ours by numpy 2
    ("numpy.core.multiarray", "_reconstruct"): np.array(0).__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): np.array(0).__reduce__()[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only plain data and numpy arrays; any other global (os.system, eval...) is refused
    before it can be called."""

    def find_class(self, module, name):
        try:
            return _CIFAR_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    fix = f"fix: delete it and download again ({CIFAR_URL})"
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror or e}); {fix}") from None
    try:
        # latin1 as torchvision does: the original files are Python 2 pickles
        d = _RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("refused global"):
            raise DataError(
                f"{path}: not a CIFAR-10 batch: the pickle asks for code ({e}) and was not loaded; {fix}"
            ) from None
        raise DataError(f"{path}: corrupt or truncated CIFAR-10 batch ({e}); {fix}") from None
    except Exception as e:  # EOFError, ValueError, ... from a damaged stream
        raise DataError(f"{path}: corrupt or truncated CIFAR-10 batch ({type(e).__name__}: {e}); {fix}") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: not a CIFAR-10 batch (a {type(d).__name__}, expected a dict); {fix}")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' should be uint8 (N, 3072), got {got}; {fix}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        labels = None
    if labels is None or labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"{path}: 'labels' should be {data.shape[0]} integers in 0..9; {fix}")
    return data, labels


def _load_cifar10(root: Path, download: bool, n_train: int, n_test: int):
    folder = root / CIFAR_DIR
    names = CIFAR_TRAIN + (CIFAR_TEST,)
    if any(not (folder / f).is_file() for f in names):
        _download(
            root,
            folder,
            names,
            download,
            "CIFAR-10",
            "cifar10",
            f"download cifar-10-python.tar.gz from {CIFAR_URL} and unpack it in {root}",
        )

    def read(files, limit, key):
        xs, ys, have = [], [], 0
        for f in files:  # stop early when the first batches already hold `limit` samples
            x, y = _read_cifar_batch(folder / f)
            xs.append(x), ys.append(y)
            have += len(y)
            if limit and have >= limit:
                break
        x = torch.from_numpy(np.concatenate(xs)).view(-1, 3, 32, 32)
        return _first(x, torch.from_numpy(np.concatenate(ys)), limit, folder, "CIFAR-10", key)

    return read(CIFAR_TRAIN, n_train, "train_size"), read((CIFAR_TEST,), n_test, "test_size")


# ---------------------------------------------------------------------------------------------
# mnist: raw idx files, optionally gzipped


def _read_idx(path: Path, ndim: int) -> torch.Tensor:
    fix = f"fix: delete it and download again ({MNIST_URL})"
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as e:  # BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read the file ({e}); {fix}") from None
    want_magic = 0x0800 | ndim  # unsigned byte data, ndim dimensions
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated idx file ({len(raw)} bytes); {fix}")
    magic, *dims = struct.unpack(f">{1 + ndim}i", raw[: 4 + 4 * ndim])
    if magic != want_magic:
        raise DataError(f"{path}: not an MNIST idx{ndim} file (magic {magic:#x}, expected {want_magic:#x}); {fix}")
    if any(d < 0 for d in dims):  # two negatives multiply to a size that may look right
        raise DataError(f"{path}: corrupt idx header (dimensions {tuple(dims)}); {fix}")
    need = 4 + 4 * ndim + math.prod(dims)  # Python's integers: no overflow to a plausible size
    if len(raw) != need:
        raise DataError(f"{path}: truncated or corrupt idx file ({len(raw)} bytes, the header promises {need}); {fix}")
    arr = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    return torch.from_numpy(arr.copy())


def _mnist_file(folder: Path, name: str) -> Path | None:
    for p in (folder / name, folder / (name + ".gz")):
        if p.is_file():
            return p
    return None


def _load_mnist(root: Path, download: bool, n_train: int, n_test: int):
    folder = root / MNIST_DIR
    names = MNIST_FILES["train"] + MNIST_FILES["test"]
    if any(_mnist_file(folder, f) is None for f in names):
        _download(
            root,
            folder,
            names,
            download,
            "MNIST",
            "mnist",
            f"download the four files (.gz is fine) from {MNIST_URL} into {folder}",
        )
    out = []
    for split, limit in (("train", n_train), ("test", n_test)):
        img_name, lab_name = MNIST_FILES[split]
        x = _read_idx(_mnist_file(folder, img_name), 3)
        y = _read_idx(_mnist_file(folder, lab_name), 1).long()
        if len(x) != len(y):
            raise DataError(
                f"{folder}: {img_name} has {len(x)} images but {lab_name} has {len(y)} labels",
                fix="delete both and download again",
            )
        if y.numel() and y.max() > 9:
            raise DataError(f"{folder / lab_name}: labels outside 0..9", fix="delete it and download again")
        out.append(_first(x[:, None], y, limit, folder, "MNIST", f"{split}_size"))
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# shared by the file-based sets


def _download(root: Path, folder: Path, names, allowed: bool, title: str, key: str, how: str) -> None:
    """Missing files: let torchvision fetch them if allowed, else (or if that fails) a DataError."""
    missing = ", ".join(n for n in names if not any((folder / m).is_file() for m in (n, n + ".gz")))
    if not allowed:
        raise missing_files(folder, title, missing, how)
    try:
        import torchvision.datasets as tvd

        cls = tvd.CIFAR10 if key == "cifar10" else tvd.MNIST
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), train=True, download=True)  # fetches and unpacks the test split too
    except Exception as e:  # offline, proxy, disk full, ...: the message must say where files go
        raise missing_files(folder, title, missing, how, failure=e) from None
    still = [n for n in names if not any((folder / m).is_file() for m in (n, n + ".gz"))]
    if still:
        raise DataError(f"{folder}: {title} files still missing after the download ({', '.join(still)})", fix=f"{how}")


def missing_files(folder: Path, title: str, missing: str, how: str, failure: Exception | None = None) -> DataError:
    """The one message for a data set whose files are not there: with data.download = false, or
    after a download that failed (offline, proxy, disk full): where the files go, and how."""
    if failure is None:
        return DataError(
            f"{folder}: {title} files missing ({missing}) and data.download = false",
            fix=f"{how}, or set data.download = true",
        )
    reason = " ".join(str(failure).split())[:160] or type(failure).__name__
    return DataError(
        f"{folder}: {title} files missing ({missing}) and the download failed ({reason})",
        fix=f"{how}, or run once with network (--data-dir or $PYTORCH_DATA_DIR picks another folder)",
    )


def _first(x: torch.Tensor, y: torch.Tensor, limit: int, where: Path, title: str, key: str):
    if limit > len(x):
        raise DataError(
            f"{where}: data.{key} = {limit} but {title} has only {len(x)} samples there; "
            f"fix: set data.{key} to at most {len(x)}, or 0 for all"
        )
    return (x[:limit], y[:limit]) if limit else (x, y)


def _mean_std(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std in [0, 1] units, from a 256-bin histogram per channel
    (float images: computed directly, in their own units)."""
    if x.dtype != torch.uint8:
        xf = x.transpose(0, 1).reshape(x.shape[1], -1).double()
        return tuple(xf.mean(1).tolist()), tuple(xf.std(1, unbiased=False).clamp_min(1e-6).tolist())
    vals = torch.arange(256, dtype=torch.float64) / 255
    mean, std = [], []
    for c in range(x.shape[1]):
        h = torch.bincount(x[:, c].reshape(-1), minlength=256).double()
        h /= h.sum()
        m = float((h * vals).sum())
        var = float((h * vals * vals).sum()) - m * m
        mean.append(m)
        std.append(max(var, 1e-12) ** 0.5)
    return tuple(mean), tuple(std)


# ---------------------------------------------------------------------------------------------
# loaders


class BatchSource:
    """What the engine iterates: (x, y) on the device, x float32 (N, C, H, W), y int64 (N,).

    Each iteration is one epoch and advances the epoch counter by one; set_epoch(e) makes the
    next iteration epoch e, so a resumed run can replay the same order."""

    def __len__(self) -> int:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """The next iteration shuffles and augments as epoch `epoch` (deterministic from the seed)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _num_batches(n: int, batch_size: int, train: bool) -> tuple[int, bool]:
    """(batches per epoch, drop_last) under the module's rule: drop only a lone last sample."""
    drop = train and n > batch_size and n % batch_size == 1
    return (n // batch_size if drop else -(-n // batch_size)), drop


class MemoryLoader(BatchSource):
    """The whole set as one uint8 tensor on the device; batches are cut with tensor ops."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        device: torch.device,
        *,
        train: bool,
        shuffle: bool = False,
        crop_padding: int = 0,
        flip: bool = False,
        mean=None,
        std=None,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ):
        self.n, self.c, self.h, self.w = x.shape
        self.batch_size, self.device, self.seed = batch_size, device, seed
        # Data-parallel: every rank draws the same epoch permutation and augmentation, cuts the
        # same global batches, and keeps its own 1/world slice of each; so the ranks together
        # see exactly the batches of a 1-process run. An incomplete last batch is dropped.
        self.rank, self.world = rank, world
        self.train = train
        self.shuffle = shuffle and train
        self.pad = crop_padding if train else 0
        self.flip = flip and train
        self.epoch = 0
        self._len, self._drop = _num_batches(self.n, batch_size, train)
        if world > 1 and train:
            self._len, self._drop = self.n // batch_size, True
        # pad once, so a crop is a plain gather from the padded set
        xd = x.to(device)
        self.x = F.pad(xd, (self.pad,) * 4) if self.pad else xd
        self.y = y.to(device=device, dtype=torch.int64)
        # ToTensor's /255 (for uint8 images) and Normalize folded into one multiply-add per channel
        mean = torch.tensor(mean if mean is not None else (0.0,) * self.c)
        std = torch.tensor(std if std is not None else (1.0,) * self.c)
        unit = 255 if x.dtype == torch.uint8 else 1
        self.scale = (1 / (unit * std)).view(1, -1, 1, 1).to(device, torch.float32)
        self.shift = (-mean / std).view(1, -1, 1, 1).to(device, torch.float32)
        hp, wp = self.h + 2 * self.pad, self.w + 2 * self.pad
        # flat offsets of one crop's pixels, relative to its top-left corner in the padded set
        ch = torch.arange(self.c, device=device).view(-1, 1, 1) * (hp * wp)
        self._rows = torch.arange(self.h, device=device).view(1, -1, 1) * wp
        self._cols = torch.arange(self.w, device=device)
        self._base = ch + self._rows  # (C, H, 1)
        self._sample_stride = self.c * hp * wp

    def __len__(self) -> int:
        return self._len

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        g = torch.Generator().manual_seed(_mix(self.seed, epoch, "memory"))
        # all of the epoch's random numbers at once, on the CPU (same on every device)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        aug = self.pad or self.flip
        if aug:
            dy = torch.randint(0, 2 * self.pad + 1, (self.n,), generator=g)
            dx = torch.randint(0, 2 * self.pad + 1, (self.n,), generator=g)
            flips = torch.rand(self.n, generator=g) < 0.5 if self.flip else torch.zeros(self.n, dtype=torch.bool)
            start = order * self._sample_stride + dy * (self.w + 2 * self.pad) + dx
            start, flips = start.to(self.device), flips.to(self.device)
        order = order.to(self.device)
        n_used = self._len * self.batch_size if self._drop else self.n
        cols_flipped = self._cols.flip(0)
        share = self.batch_size // self.world
        for i in range(0, n_used, self.batch_size):
            j = min(i + self.batch_size, self.n)
            if self.world > 1 and self.train:
                i, j = i + self.rank * share, i + (self.rank + 1) * share
            if aug:
                # one gather: sample + crop offset + (flipped) column, for every output pixel
                cols = torch.where(flips[i:j, None], cols_flipped, self._cols)  # (B, W)
                idx = start[i:j, None, None, None] + self._base + cols[:, None, None, :]
                xb = torch.take(self.x, idx)  # much faster than self.x.view(-1)[idx] on CPU
            elif self.shuffle:
                xb = self.x.index_select(0, order[i:j])  # likewise faster than self.x[order[i:j]]
            else:
                xb = self.x[i:j]
            xb = xb.to(torch.float32).mul_(self.scale).add_(self.shift)
            yield xb, self.y.index_select(0, order[i:j])


class _ArrayDataset(torch.utils.data.Dataset):
    """Samples of a uint8 (N, C, H, W) tensor as HWC arrays through torchvision transforms,
    like torchvision's own CIFAR10/MNIST datasets (which hand ToTensor an image)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        # a torch tensor (not numpy) so that worker processes share it instead of copying it
        self.x = x.permute(0, 2, 3, 1).contiguous()
        self.y = y.to(torch.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(self.x[i].numpy()), int(self.y[i])


class DataLoaderSource(BatchSource):
    """torch.utils.data.DataLoader with workers; batches moved to the device."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        device: torch.device,
        *,
        train: bool,
        shuffle: bool = False,
        crop_padding: int = 0,
        flip: bool = False,
        mean=None,
        std=None,
        seed: int = 0,
        num_workers: int = 0,
        rank: int = 0,
        world: int = 1,
    ):
        from torchvision import transforms as T

        steps = [T.ToTensor()]
        if train and crop_padding:
            steps.append(T.RandomCrop(x.shape[-1], padding=crop_padding))
        if train and flip:
            steps.append(T.RandomHorizontalFlip())
        if mean is not None:
            steps.append(T.Normalize(mean, std))
        self._setup(
            _ArrayDataset(x, y, T.Compose(steps)), batch_size, device, train, shuffle, seed, num_workers, rank, world
        )

    def _setup(self, dataset, batch_size, device, train, shuffle, seed, num_workers, rank, world) -> None:
        """The DataLoader over `dataset` (engine.datasets hands its own Datasets in here)."""
        self.device, self.seed, self.epoch = device, seed, 0
        self._len, drop = _num_batches(len(dataset), batch_size, train)
        self._gen = torch.Generator()
        self.sampler = None
        if world > 1 and train:
            # DistributedSampler: each rank its own shard of each epoch's order (set_epoch below)
            self.sampler = torch.utils.data.DistributedSampler(
                dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=True
            )
            batch_size = batch_size // world
            self._len, drop = len(self.sampler) // batch_size, True
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            shuffle=(shuffle and train) if self.sampler is None else False,
            num_workers=num_workers,
            drop_last=drop,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            generator=self._gen,
        )

    def __len__(self) -> int:
        return self._len

    def __iter__(self):
        if self.loader is None:
            raise RuntimeError("this DataBundle was closed")
        epoch, self.epoch = self.epoch, self.epoch + 1
        self._gen.manual_seed(_mix(self.seed, epoch, "dataloader"))
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        try:
            for xb, yb in self.loader:
                yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
        except SetupError as e:
            raise from_worker(e) from None

    def close(self) -> None:
        loader, self.loader = self.loader, None
        it = getattr(loader, "_iterator", None) if loader is not None else None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()  # joins the persistent worker processes now, not at GC time
        if loader is not None:
            loader._iterator = None


def from_worker(e: SetupError) -> SetupError:
    """A SetupError (a sample that cannot be read) as the worker process raised it. torch re-raises
    it in this process as type(e)(text), the text being "Caught DataError in DataLoader worker
    process 0." and the worker's traceback: its first line names no file, its last line is
    "module.DataError: " and the original's str(), which holds the message and the fix."""
    if not e.message.startswith("Caught ") or e.fix:
        return e
    line = e.message.rstrip().splitlines()[-1].split(": ", 1)[-1]
    message, _, fix = line.rpartition("; fix: ") if "; fix: " in line else (line, "", "")
    return type(e)(message, fix)


@dataclass
class DataBundle:
    train: BatchSource
    test: BatchSource
    num_classes: int
    in_channels: int
    image_size: int
    train_size: int
    test_size: int
    sample_shape: tuple = ()  # one sample's shape, e.g. (3, 32, 32); empty: (in_channels, image_size, image_size)

    def close(self) -> None:
        """Shut down DataLoader workers; safe to call more than once."""
        self.train.close()
        self.test.close()


def bundle_from_tensors(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    data_cfg,
    seed: int,
    device: torch.device,
    num_classes: int = 10,
    rank: int = 0,
    world: int = 1,
) -> DataBundle:
    """A DataBundle over uint8 (N, C, H, W) images and int64 labels, using data_cfg's loader,
    batch sizes, normalisation and augmentation (benchmarks and tests build sets this way)."""
    d = data_cfg
    (xtr, ytr), (xte, yte) = train, test
    if len(ytr) == 0:
        raise DataError("the training set is empty", fix="data.train_size > 0, or check the data files")
    mean, std = _mean_std(xtr) if d.normalize else (None, None)
    common = dict(mean=mean, std=std, seed=seed)
    if d.loader == "memory":
        tr = MemoryLoader(
            xtr,
            ytr,
            d.batch_size,
            device,
            train=True,
            shuffle=d.shuffle,
            crop_padding=d.crop_padding,
            flip=d.flip,
            rank=rank,
            world=world,
            **common,
        )
        te = MemoryLoader(xte, yte, d.test_batch_size, device, train=False, **common)
    else:
        tr = DataLoaderSource(
            xtr,
            ytr,
            d.batch_size,
            device,
            train=True,
            shuffle=d.shuffle,
            crop_padding=d.crop_padding,
            flip=d.flip,
            num_workers=d.num_workers,
            rank=rank,
            world=world,
            **common,
        )
        te = DataLoaderSource(xte, yte, d.test_batch_size, device, train=False, num_workers=d.num_workers, **common)
    return DataBundle(
        train=tr,
        test=te,
        num_classes=num_classes,
        in_channels=xtr.shape[1],
        image_size=xtr.shape[-1],
        train_size=len(ytr),
        test_size=len(yte),
        sample_shape=tuple(xtr.shape[1:]),
    )


def build_data(cfg, data_root: Path, device: torch.device, rank: int = 0, world: int = 1) -> DataBundle:
    """The preset's data set and loaders. Raises DataError for missing or damaged files."""
    d = cfg.data
    root = Path(data_root)
    if d.dataset == "shapes":
        train = make_shapes(d.train_size or SHAPES_TRAIN, SHAPES_TRAIN_SEED)
        test = make_shapes(d.test_size or SHAPES_TEST, SHAPES_TEST_SEED)
    elif d.dataset == "cifar10":
        train, test = _load_cifar10(root, d.download, d.train_size, d.test_size)
    elif d.dataset == "mnist":
        train, test = _load_mnist(root, d.download, d.train_size, d.test_size)
    else:  # config validation makes this unreachable
        raise DataError(f"{cfg.source}: unknown data.dataset {d.dataset!r}", fix="shapes, cifar10 or mnist")
    return bundle_from_tensors(train, test, d, cfg.run.seed, torch.device(device), rank=rank, world=world)
