"""engine.data: data sets from generated or fixture files, both loaders, every expected fault."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deeptui.engine.config import Config, DataConfig, RunConfig
from deeptui.engine.data import (
    DataBundle,
    DataError,
    _shape_mask,
    build_data,
    bundle_from_tensors,
    default_data_root,
    make_shapes,
)
from tests.datafiles import write_cifar10, write_malicious_cifar, write_mnist

CPU = torch.device("cpu")


def cfg(seed: int = 0, **data) -> Config:
    data.setdefault("num_workers", 0)
    return Config(run=RunConfig(seed=seed), data=DataConfig(**data))


def batches(source):
    return [(x.clone(), y.clone()) for x, y in source]


@pytest.fixture
def no_download(monkeypatch):
    """torchvision's download raises as it does offline; records that it was asked."""
    import torchvision.datasets as tvd

    calls = []

    def offline(self):
        calls.append(type(self).__name__)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd.CIFAR10, "download", offline)
    monkeypatch.setattr(tvd.MNIST, "download", offline)
    return calls


# --- shapes -------------------------------------------------------------------------------


def test_shapes_deterministic_per_seed():
    x1, y1 = make_shapes(300, 7)
    x2, y2 = make_shapes(300, 7)
    x3, _ = make_shapes(300, 8)
    assert x1.dtype == torch.uint8 and x1.shape == (300, 3, 32, 32)
    assert y1.dtype == torch.int64 and y1.shape == (300,)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert torch.bincount(y1, minlength=10).tolist() == [30] * 10  # balanced


def test_shapes_classes_differ_and_are_visible():
    # the ten masks at the same place and size overlap little: the classes are tellable apart
    grid = (torch.arange(32.0) - 15.5) / 12
    u, v = grid[None, None, :], grid[None, :, None]
    masks = [_shape_mask(k, u, v)[0] for k in range(10)]
    for a in range(10):
        for b in range(a + 1, 10):
            iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert iou < 0.85, (a, b, float(iou))
    # every image shows its shape: a clear share of pixels differs from the corner colour
    x, _ = make_shapes(200, 0)
    corner = x[:, :, :1, :1].float()
    differs = ((x.float() - corner).abs().sum(1) > 60).float().mean((1, 2))
    assert differs.min() > 0.03


def test_shapes_bundle_defaults_and_sizes():
    b = build_data(cfg(train_size=100, test_size=30, batch_size=32), Path("unused"), CPU)
    assert (b.num_classes, b.in_channels, b.image_size, b.train_size, b.test_size) == (10, 3, 32, 100, 30)
    assert len(b.train) == 4 and len(b.test) == 1
    b.close()


# --- file formats ---------------------------------------------------------------------------


def test_cifar10_fixture_loads_exact_pixels(tmp_path):
    folder = write_cifar10(tmp_path, n_train=53, n_test=21)
    b = build_data(cfg(dataset="cifar10", batch_size=10, shuffle=False, test_batch_size=100), tmp_path, CPU)
    assert (b.in_channels, b.image_size, b.train_size, b.test_size) == (3, 32, 53, 21)
    with open(folder / "data_batch_1", "rb") as fh:
        first = pickle.load(fh, encoding="bytes")
    x, y = next(iter(b.train))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    want = torch.from_numpy(first[b"data"][:10]).view(10, 3, 32, 32)
    assert torch.equal((x * 255).round().to(torch.uint8), want)
    assert y.tolist() == first[b"labels"][:10]
    ((xt, yt),) = batches(b.test)
    assert xt.shape == (21, 3, 32, 32)


def test_cifar10_train_size_reads_first_samples(tmp_path):
    write_cifar10(tmp_path, n_train=50, n_test=20)
    b = build_data(cfg(dataset="cifar10", train_size=15, test_size=5, batch_size=100), tmp_path, CPU)
    assert (b.train_size, b.test_size) == (15, 5)
    with pytest.raises(DataError, match=r"data.train_size = 51 .*at most 50"):
        build_data(cfg(dataset="cifar10", train_size=51), tmp_path, CPU)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_fixture_loads(tmp_path, gz):
    folder = write_mnist(tmp_path, n_train=40, n_test=12, gz=gz)
    b = build_data(cfg(dataset="mnist", batch_size=40, shuffle=False), tmp_path, CPU)
    assert (b.in_channels, b.image_size, b.train_size, b.test_size) == (1, 28, 40, 12)
    x, y = next(iter(b.train))
    raw = (folder / "train-images-idx3-ubyte").read_bytes() if not gz else None
    if raw is not None:
        want = torch.frombuffer(bytearray(raw[16:]), dtype=torch.uint8).view(40, 1, 28, 28)
        assert torch.equal((x * 255).round().to(torch.uint8), want)
    assert x.shape == (40, 1, 28, 28) and y.min() >= 0 and y.max() <= 9


# --- the two loaders ------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["shapes", "cifar10", "mnist"])
def test_memory_and_dataloader_agree(tmp_path, dataset):
    write_cifar10(tmp_path, n_train=70, n_test=30)
    write_mnist(tmp_path, n_train=70, n_test=30)
    common = dict(dataset=dataset, batch_size=16, test_batch_size=25, normalize=True, train_size=70, test_size=30)
    # without augmentation or shuffling the two paths give the same numbers
    plain = [build_data(cfg(loader=ld, shuffle=False, **common), tmp_path, CPU) for ld in ("memory", "dataloader")]
    for part in ("train", "test"):
        (mem, dl) = (batches(getattr(b, part)) for b in plain)
        assert len(mem) == len(dl) == len(getattr(plain[0], part))
        for (xm, ym), (xd, yd) in zip(mem, dl):
            assert xm.shape == xd.shape and xm.dtype == xd.dtype == torch.float32
            assert torch.equal(ym, yd) and ym.dtype == torch.int64
            torch.testing.assert_close(xm, xd, atol=1e-5, rtol=1e-5)
    # with augmentation: same shapes, dtypes and value range. Undoing the normalisation with the
    # training set's statistics must give pixel values k/255 in [0, 1] on both paths.
    raw = torch.cat(
        [x for x, _ in batches(build_data(cfg(shuffle=False, **{**common, "normalize": False}), tmp_path, CPU).train)]
    )
    mean = raw.mean((0, 2, 3)).view(1, -1, 1, 1)
    std = raw.std((0, 2, 3), correction=0).view(1, -1, 1, 1)
    aug = [
        build_data(cfg(loader=ld, crop_padding=4, flip=True, **common), tmp_path, CPU)
        for ld in ("memory", "dataloader")
    ]
    shapes = []
    for b in aug:
        bs = batches(b.train)
        shapes.append([(tuple(x.shape), x.dtype, y.dtype) for x, y in bs])
        for x, _ in bs:
            pix = (x * std + mean) * 255
            assert pix.min() > -1e-2 and pix.max() < 255 + 1e-2
            assert (pix - pix.round()).abs().max() < 1e-2
    assert shapes[0] == shapes[1]
    for b in plain + aug:
        b.close()


def _crops(img: torch.Tensor, p: int) -> list[torch.Tensor]:
    padded = F.pad(img, (p,) * 4)
    h, w = img.shape[-2:]
    out = []
    for dy in range(2 * p + 1):
        for dx in range(2 * p + 1):
            c = padded[:, dy : dy + h, dx : dx + w]
            out += [c, c.flip(-1)]
    return out


def test_memory_augmentation_crops_and_flips_but_keeps_labels():
    x, y = make_shapes(64, 3)
    d = DataConfig(loader="memory", batch_size=16, shuffle=False, crop_padding=2, flip=True)
    b = bundle_from_tensors((x, y), (x, y), d, seed=1, device=CPU)
    got = batches(b.train)
    xa = torch.cat([xb for xb, _ in got])
    assert torch.equal(torch.cat([yb for _, yb in got]), y)  # labels stay with their images
    xa8 = (xa * 255).round().to(torch.uint8)
    assert (xa8 != x).flatten(1).any(1).float().mean() > 0.5  # most images changed
    for i in range(0, 64, 7):  # each is a crop (+ flip) of its own image
        assert any(torch.equal(xa8[i], c) for c in _crops(x[i], 2)), i


def test_epochs_reshuffle_deterministically():
    x, y = make_shapes(100, 0)
    d = DataConfig(loader="memory", batch_size=25, crop_padding=4, flip=True)
    a = bundle_from_tensors((x, y), (x, y), d, seed=5, device=CPU)
    b = bundle_from_tensors((x, y), (x, y), d, seed=5, device=CPU)
    c = bundle_from_tensors((x, y), (x, y), d, seed=6, device=CPU)
    a.train.set_epoch(3), b.train.set_epoch(3), c.train.set_epoch(3)
    ea, eb, ec = batches(a.train), batches(b.train), batches(c.train)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(ea, eb))
    assert not torch.equal(ea[0][1], ec[0][1])
    a.train.set_epoch(4)
    assert not torch.equal(batches(a.train)[0][1], ea[0][1])
    # the DataLoader path shuffles deterministically too
    d2 = DataConfig(loader="dataloader", batch_size=25, num_workers=0)
    o1 = [yb for _, yb in bundle_from_tensors((x, y), (x, y), d2, seed=5, device=CPU).train]
    o2 = [yb for _, yb in bundle_from_tensors((x, y), (x, y), d2, seed=5, device=CPU).train]
    assert all(torch.equal(p, q) for p, q in zip(o1, o2))


@pytest.mark.parametrize("loader", ["memory", "dataloader"])
@pytest.mark.parametrize("n, want", [(33, 2), (34, 3), (32, 2), (17, 1)])
def test_lone_last_sample_is_dropped(loader, n, want):
    # 33 = 2 * 16 + 1: a training batch of one would break BatchNorm, so it is dropped
    x, y = make_shapes(n, 0)
    d = DataConfig(loader=loader, batch_size=16, num_workers=0)
    b = bundle_from_tensors((x, y), (x, y), d, seed=0, device=CPU)
    sizes = [len(yb) for _, yb in b.train]
    assert len(b.train) == len(sizes) == want
    assert 1 not in sizes
    assert sum(len(yb) for _, yb in b.test) == n  # evaluation sees every sample


def test_normalize_uses_training_statistics():
    x, y = make_shapes(500, 2)
    d = DataConfig(loader="memory", batch_size=500, test_batch_size=500, normalize=True, shuffle=False)
    b = bundle_from_tensors((x, y), (x, y), d, seed=0, device=CPU)
    ((xt, _),) = batches(b.test)
    torch.testing.assert_close(xt.mean((0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(xt.std((0, 2, 3)), torch.ones(3), atol=1e-3, rtol=0)


def test_close_stops_worker_processes():
    x, y = make_shapes(200, 0)
    d = DataConfig(loader="dataloader", batch_size=20, test_batch_size=50, num_workers=2, crop_padding=4, flip=True)
    b = bundle_from_tensors((x, y), (x, y), d, seed=0, device=CPU)
    next(iter(b.train))  # a partial epoch leaves workers busy
    assert sum(len(yb) for _, yb in b.test) == 200
    assert len(multiprocessing.active_children()) >= 2
    b.close()
    b.close()  # idempotent
    assert multiprocessing.active_children() == []


def test_default_data_root(monkeypatch):
    monkeypatch.delenv("PYTORCH_DATA_DIR", raising=False)
    assert default_data_root(None) == Path("data")
    monkeypatch.setenv("PYTORCH_DATA_DIR", "/srv/datasets")
    assert default_data_root(None) == Path("/srv/datasets")
    assert default_data_root("here") == Path("here")


# --- faults: one clear DataError each, nothing run, nothing downloaded ----------------------


def test_cifar_missing_offline_says_where_to_put_files(tmp_path, no_download):
    with pytest.raises(DataError) as e:
        build_data(cfg(dataset="cifar10"), tmp_path, CPU)
    msg = str(e.value)
    assert no_download == ["CIFAR10"]
    assert str(tmp_path / "cifar-10-batches-py") in msg and "download failed" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in msg and "run once with network" in msg
    assert "\n" not in msg


def test_mnist_missing_offline_says_where_to_put_files(tmp_path, no_download):
    with pytest.raises(DataError) as e:
        build_data(cfg(dataset="mnist"), tmp_path, CPU)
    msg = str(e.value)
    assert no_download == ["MNIST"]
    assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg
    assert "\n" not in msg


def test_missing_with_download_off_names_the_setting(tmp_path, no_download):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError, match=r"test_batch.*data\.download = false.*set data\.download = true"):
        build_data(cfg(dataset="cifar10", download=False), tmp_path, CPU)
    assert no_download == []


def test_truncated_cifar_batch(tmp_path):
    folder = write_cifar10(tmp_path, n_train=50, n_test=10)
    f = folder / "data_batch_1"
    f.write_bytes(f.read_bytes()[:500])
    with pytest.raises(DataError, match=r"data_batch_1: corrupt or truncated .*delete it and download again"):
        build_data(cfg(dataset="cifar10"), tmp_path, CPU)


def test_cifar_batch_with_wrong_content(tmp_path):
    folder = write_cifar10(tmp_path, n_train=50, n_test=10)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, fh, protocol=2)
    with pytest.raises(DataError, match=r"test_batch: 'data' should be uint8 \(N, 3072\)"):
        build_data(cfg(dataset="cifar10"), tmp_path, CPU)


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = write_malicious_cifar(tmp_path)
    with pytest.raises(DataError) as e:
        build_data(cfg(dataset="cifar10"), tmp_path, CPU)
    assert not marker.exists()
    msg = str(e.value)
    assert "data_batch_1" in msg and "refused" in msg and "system" in msg


@pytest.mark.parametrize("damage", ["truncate", "magic", "gz"])
def test_damaged_mnist_files(tmp_path, damage):
    folder = write_mnist(tmp_path, n_train=20, n_test=5, gz=(damage == "gz"))
    if damage == "gz":
        f = folder / "train-images-idx3-ubyte.gz"
        f.write_bytes(f.read_bytes()[:40])
        pattern = r"train-images-idx3-ubyte\.gz: cannot read"
    else:
        f = folder / "train-labels-idx1-ubyte"
        raw = bytearray(f.read_bytes())
        if damage == "truncate":
            raw = raw[:-3]
            pattern = r"train-labels-idx1-ubyte: truncated"
        else:
            raw[3] = 0x03
            pattern = r"train-labels-idx1-ubyte: not an MNIST idx1 file"
        f.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=pattern + r".*delete it and download again"):
        build_data(cfg(dataset="mnist"), tmp_path, CPU)


def test_mnist_count_mismatch(tmp_path):
    write_mnist(tmp_path, n_train=20, n_test=5)
    other = tmp_path / "other"
    write_mnist(other, n_train=21, n_test=5)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").write_bytes((other / "MNIST" / "raw" / "train-labels-idx1-ubyte").read_bytes())
    with pytest.raises(DataError, match="20 images but train-labels-idx1-ubyte has 21 labels"):
        build_data(cfg(dataset="mnist"), tmp_path, CPU)


def test_bundle_type():
    b = build_data(cfg(train_size=20, test_size=10), Path("x"), CPU)
    assert isinstance(b, DataBundle)


def test_missing_files_are_downloaded_when_allowed(tmp_path, monkeypatch):
    # stands in for torchvision's class: a successful download leaves the files in place
    import torchvision.datasets as tvd

    calls = []

    def fake_cifar(root, train=True, download=False):
        calls.append((root, train, download))
        write_cifar10(Path(root), n_train=30, n_test=10)

    monkeypatch.setattr(tvd, "CIFAR10", fake_cifar)
    b = build_data(cfg(dataset="cifar10"), tmp_path / "new", CPU)
    assert calls == [(str(tmp_path / "new"), True, True)]
    assert (b.train_size, b.test_size) == (30, 10)
