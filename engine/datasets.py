"""Data that is not deeptui's own: torchvision's data sets by name (torchvision:NAME), image
folders (imagefolder:PATH) and a data factory's Datasets or DataBundle, as a DataBundle.

torchvision's sets come through their own classes: their download and their file checks are
torchvision's, and files that are missing give the same message as cifar10's and mnist's. A set
that holds its images as one uint8 array (CIFAR-100, FashionMNIST, SVHN, ...) becomes the tensors
that engine.data's loaders take, so every [data] key works on it as on cifar10.

Any other Dataset: `loader = "memory"` reads it once into one tensor on the device (its random
transforms, if any, are drawn once; crop, flip and normalize then apply per epoch as on cifar10);
`loader = "dataloader"` batches it with a DataLoader as it is, per-sample transforms and all.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from . import factory
from .data import DataBundle, DataLoaderSource, build_data, bundle_from_tensors, missing_files
from .errors import DataError, FactoryError


def build(cfg, root: Path, device: torch.device, rank: int = 0, world: int = 1) -> DataBundle:
    """The preset's data: data.factory, torchvision:NAME, imagefolder:PATH, or deeptui's own."""
    d = cfg.data
    if d.factory:
        got = factory.call_data(cfg, device, rank, world)
        return from_factory(got, cfg, device, rank, world)
    kind, _, arg = d.dataset.partition(":")
    if kind == "torchvision":
        train, test = torchvision_set(arg, Path(root), d.download, cfg.source)
        return from_datasets(train, test, cfg, device, rank, world, f"torchvision:{arg}")
    if kind == "imagefolder":
        train, test = image_folder(Path(arg).expanduser(), cfg.source)
        return from_datasets(train, test, cfg, device, rank, world, d.dataset)
    return build_data(cfg, root, device, rank=rank, world=world)


# ---- a factory's result ----------------------------------------------------------------------


def from_factory(got, cfg, device, rank: int, world: int) -> DataBundle:
    """(train, test) Datasets or (images, labels) tensor pairs, or a DataBundle, checked."""
    spec, src = cfg.data.factory, cfg.source
    if isinstance(got, DataBundle):
        return got
    if isinstance(got, (tuple, list)) and len(got) == 2:
        train, test = (_as_dataset(part) for part in got)
        if train is not None and test is not None:
            return from_datasets(train, test, cfg, device, rank, world, f"data.factory {spec}")
    raise FactoryError(
        f"{src}: data.factory = {spec!r} returned {_describe(got)}",
        fix="return (train, test) Datasets, (images, labels) tensor pairs, or a deeptui.engine.data.DataBundle",
    )


def _as_dataset(part):
    if isinstance(part, (tuple, list)) and len(part) == 2 and all(isinstance(t, torch.Tensor) for t in part):
        return TensorDataset(*part)
    return part if hasattr(part, "__getitem__") and hasattr(part, "__len__") else None


def _describe(obj) -> str:
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of {len(obj)} ({', '.join(type(o).__name__ for o in obj[:3])})"
    return f"a {type(obj).__name__}"


# ---- torchvision's sets and image folders ------------------------------------------------------


def torchvision_set(name: str, root: Path, download: bool, src: str) -> tuple[Dataset, Dataset]:
    """torchvision.datasets.NAME's train and test splits, through torchvision's own classes."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        names = [n for n in dir(tvd) if isinstance(getattr(tvd, n), type) and not n.startswith("_")]
        hint = difflib.get_close_matches(name, names, n=1)
        raise DataError(
            f"{src}: data.dataset = 'torchvision:{name}': torchvision.datasets has no data set {name}; fix: "
            + (f"did you mean 'torchvision:{hint[0]}'?" if hint else "name one of torchvision.datasets' classes")
        )
    params = inspect.signature(cls).parameters
    if "train" in params:
        splits = ({"train": True}, {"train": False})
    elif "split" in params:
        splits = ({"split": "train"}, {"split": "test"})
    else:
        raise DataError(
            f"{src}: data.dataset = 'torchvision:{name}': {name} has neither a train nor a split argument; "
            "fix: build it in a data.factory"
        )
    if issubclass(cls, tvd.MNIST):  # FashionMNIST, KMNIST, EMNIST, QMNIST: <root>/<name>/raw
        folder = root / name / "raw"
    else:
        folder = root / getattr(cls, "base_folder", "")
    how = f"put torchvision's {name} files in {folder} (see torchvision.datasets.{name})"
    out = []
    for split in splits:
        try:
            out.append(cls(str(root), download=False, **split))
            continue
        except RuntimeError:  # torchvision's "Dataset not found or corrupted": its own file checks
            if not download:
                raise missing_files(folder, name, "not found, or failing torchvision's checks", how) from None
        except Exception as e:  # the files are there but torchvision cannot read them
            raise DataError(
                f"{folder}: torchvision's {name} cannot read its files ({factory.first_line(e)}); "
                "fix: delete them and download again"
            ) from None
        try:
            root.mkdir(parents=True, exist_ok=True)
            out.append(cls(str(root), download=True, **split))
        except Exception as e:  # offline, proxy, disk full, a checksum that does not match
            raise missing_files(folder, name, "or damaged", how, failure=e) from None
    return out[0], out[1]


def image_folder(path: Path, src: str) -> tuple[Dataset, Dataset]:
    """PATH/train/<class>/* and PATH/test/<class>/* (or PATH/val/) through torchvision's ImageFolder."""
    from torchvision.datasets import ImageFolder

    layout = f"fix: put images in {path}/train/<class>/ and {path}/test/<class>/ (or val/)"
    test_dir = next((path / n for n in ("test", "val") if (path / n).is_dir()), None)
    if not (path / "train").is_dir() or test_dir is None:
        raise DataError(f"{src}: data.dataset = 'imagefolder:{path}': no train/ and test/ folders there; {layout}")
    sets = []
    for folder in (path / "train", test_dir):
        try:
            sets.append(ImageFolder(str(folder)))
        except (FileNotFoundError, RuntimeError) as e:
            raise DataError(f"{folder}: {factory.first_line(e)}; {layout}") from None
    if sets[0].classes != sets[1].classes:
        raise DataError(
            f"{path}: train/ has classes {sets[0].classes[:5]} but {test_dir.name}/ has {sets[1].classes[:5]}; "
            "fix: the same class folders in both"
        )
    return sets[0], sets[1]


# ---- Datasets as a DataBundle ------------------------------------------------------------------


def num_classes(ds) -> int:
    """From the Dataset's `classes` or `targets` (torchvision's sets and ImageFolder have them); 0: unknown."""
    classes = getattr(ds, "classes", None)
    if classes is not None and len(classes):
        return len(classes)
    targets = getattr(ds, "targets", getattr(ds, "labels", None))
    if targets is not None and len(targets):
        return int(torch.as_tensor(np.asarray(targets)).max()) + 1
    return 0


def as_arrays(ds) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The images and labels a Dataset holds whole, when it holds them as a uint8 array and
    transforms nothing (torchvision's CIFAR, MNIST, SVHN, STL10 families; a TensorDataset)."""
    if isinstance(ds, TensorDataset) and len(ds.tensors) == 2:
        return ds.tensors[0], ds.tensors[1].long()
    if getattr(ds, "transform", None) is not None or getattr(ds, "target_transform", None) is not None:
        return None
    data, labels = getattr(ds, "data", None), getattr(ds, "targets", getattr(ds, "labels", None))
    if data is None or labels is None:
        return None
    x = torch.as_tensor(np.asarray(data))
    if x.dtype != torch.uint8 or x.dim() not in (3, 4):
        return None
    if x.dim() == 3:  # (N, H, W): one channel
        x = x[:, None]
    elif x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):  # (N, H, W, C), as CIFAR keeps it
        x = x.permute(0, 3, 1, 2)
    return x.contiguous(), torch.as_tensor(np.asarray(labels)).long()


def _first(ds, n: int, where: str, key: str):
    if n > len(ds):
        raise DataError(
            f"{where}: data.{key} = {n} but the set has only {len(ds)} samples; "
            f"fix: set data.{key} to at most {len(ds)}, or 0 for all"
        )
    return ds if not n else Subset(ds, range(n))


def from_datasets(train, test, cfg, device, rank: int, world: int, where: str) -> DataBundle:
    d = cfg.data
    classes = max(num_classes(train), num_classes(test))
    arrays = as_arrays(train), as_arrays(test)
    if all(a is not None for a in arrays) or d.loader == "memory":
        (xtr, ytr), (xte, yte) = [
            _first_arrays(a, n, where, key) if a is not None else read_all(_first(ds, n, where, key), where)
            for a, ds, n, key in zip(arrays, (train, test), (d.train_size, d.test_size), ("train_size", "test_size"))
        ]
        for x in (xtr, xte):
            if x.dim() != 4:
                raise DataError(
                    f"{where}: data.loader = 'memory' takes images (C, H, W), the samples are {tuple(x.shape[1:])}",
                    fix="set data.loader = 'dataloader'",
                )
        if ytr.numel() and ytr.min() < 0:
            raise DataError(f"{where}: labels must be class numbers >= 0", fix="correct the Dataset's labels")
        seen = int(max(ytr.max() if ytr.numel() else 0, yte.max() if yte.numel() else 0)) + 1
        return bundle_from_tensors(
            (xtr, ytr), (xte, yte), d, cfg.run.seed, device, num_classes=max(classes, seen), rank=rank, world=world
        )
    if d.normalize:
        raise DataError(
            f"{cfg.source}: data.normalize = true with data.loader = 'dataloader' on {where}: the set's statistics "
            "need it in memory",
            fix="normalize in the Dataset's transform, or use data.loader = 'memory'",
        )
    train, test = _first(train, d.train_size, where, "train_size"), _first(test, d.test_size, where, "test_size")
    shape = tuple(_sample(item(train, 0, where), where)[0].shape)
    common = dict(cfg=d, size=shape, seed=cfg.run.seed, where=where)
    tr = DatasetSource(train, d.batch_size, device, train=True, shuffle=d.shuffle, rank=rank, world=world, **common)
    te = DatasetSource(test, d.test_batch_size, device, train=False, **common)
    image = len(shape) == 3
    return DataBundle(
        train=tr,
        test=te,
        num_classes=classes,
        in_channels=shape[0] if image else 1,
        image_size=shape[-1] if image else 0,
        train_size=len(train),
        test_size=len(test),
        sample_shape=shape,
    )


def _first_arrays(arrays, n: int, where: str, key: str):
    x, y = arrays
    if n > len(y):
        raise DataError(
            f"{where}: data.{key} = {n} but the set has only {len(y)} samples; "
            f"fix: set data.{key} to at most {len(y)}, or 0 for all"
        )
    return (x[:n], y[:n]) if n else (x, y)


def _sample(item, where: str) -> tuple[torch.Tensor, int]:
    """One (x, label) of a Dataset as a tensor and an int: PIL images as uint8 (C, H, W)."""
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise DataError(f"{where}: a sample is {_describe(item)}, not (input, label)", fix="return (x, y) pairs")
    x, y = item
    if hasattr(x, "getbands"):  # a PIL image
        from torchvision.transforms.functional import pil_to_tensor

        x = pil_to_tensor(x)
    elif isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{where}: a sample's input is a {type(x).__name__}", fix="return tensors or PIL images")
    if x.dim() == 2:
        x = x[None]  # (H, W): one channel
    try:
        return x, int(y)
    except (TypeError, ValueError):
        raise DataError(f"{where}: a sample's label is {y!r}", fix="labels are class numbers (int)") from None


def item(ds, i: int, where: str):
    """ds[i]; what it raises (a corrupt image file, a Dataset's own error) as a one-line DataError
    naming the sample, and its file when the Dataset keeps one (ImageFolder's `samples`)."""
    try:
        return ds[i]
    except DataError:
        raise
    except Exception as e:
        base, j = ds, i
        while isinstance(base, Subset):
            base, j = base.dataset, base.indices[j]
        samples = getattr(base, "samples", None)
        name = f" ({samples[j][0]})" if isinstance(samples, list) and 0 <= j < len(samples) else ""
        raise DataError(
            f"{where}: sample {i}{name} cannot be read ({factory.first_line(e)})", fix="repair or remove it"
        ) from None


class _Checked(Dataset):
    """A Dataset whose samples that cannot be read are one-line DataErrors (item)."""

    def __init__(self, ds, where: str):
        self.ds, self.where = ds, where

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        return item(self.ds, i, self.where)


def read_all(ds, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every sample of a Dataset, once, stacked: (N, ...) inputs and int64 labels."""

    def collate(items):
        xs, ys = zip(*(_sample(item, where) for item in items))
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) > 1:
            a, b = sorted(shapes)[:2]
            raise DataError(
                f"{where}: samples differ in shape ({a} and {b})", fix="give them one size (e.g. transforms.Resize)"
            )
        return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)

    parts = list(DataLoader(_Checked(ds, where), batch_size=512, collate_fn=collate))
    if not parts:
        raise DataError(f"{where}: the set is empty", fix="give it samples")
    shapes = {tuple(x.shape[1:]) for x, _ in parts}
    if len(shapes) > 1:
        a, b = sorted(shapes)[:2]
        raise DataError(f"{where}: samples differ in shape ({a} and {b})", fix="give them one size")
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


class _Samples(Dataset):
    """A Dataset's samples as tensors (PIL images through ToTensor), with the preset's crop and flip."""

    def __init__(self, ds, transform, where: str = "the data"):
        self.ds, self.transform, self.where = ds, transform, where

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        x, y = item(self.ds, i, self.where)
        if hasattr(x, "getbands"):
            from torchvision.transforms.functional import to_tensor

            x = to_tensor(x)
        elif isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if x.dim() == 2:
            x = x[None]
        return self.transform(x), int(y)


class DatasetSource(DataLoaderSource):
    """A DataLoader over a Dataset as it is (workers, pin_memory, DistributedSampler, the same
    seeding as engine.data's DataLoader path); crop and flip from the preset when set."""

    def __init__(
        self, ds, batch_size, device, *, train: bool, cfg, size, seed=0, shuffle=False, rank=0, world=1, where=""
    ):
        from torchvision import transforms as T

        steps = []
        if train and cfg.crop_padding:
            steps.append(T.RandomCrop(size[-2:], padding=cfg.crop_padding))
        if train and cfg.flip:
            steps.append(T.RandomHorizontalFlip())
        self._setup(
            _Samples(ds, T.Compose(steps), where),
            batch_size,
            device,
            train,
            shuffle,
            seed,
            cfg.num_workers,
            rank,
            world,
        )
