"""Samples per second: the in-memory loader vs the DataLoader path, on CIFAR-shaped data.

50,000 generated uint8 images (3, 32, 32), crop_padding=4, flip, normalise; each repeat is one
epoch of training batches (391 at batch size 128). Prints the median of the repeats and the
ratio memory / dataloader for num_workers 4 (the cifar preset) and 2.

    .venv/bin/python benchmarks/loader.py [--quick] [--batch-size 128] [--repeats 5] [--device cpu]
                                          [--threads N]

Run it on a quiet machine: with 2 cores, any other busy process makes torch's 2 intra-op threads
wait on each other, and the memory path (many small ops) then slows down by an order of
magnitude while single-threaded DataLoader workers barely notice. --threads 1 avoids that.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from deeptui.engine.config import DataConfig  # noqa: E402
from deeptui.engine.data import bundle_from_tensors  # noqa: E402


def rate(source, device: torch.device, repeats: int, max_batches: int) -> list[float]:
    """samples/s of each repeat (one pass over at most max_batches batches)."""
    out = []
    for epoch in range(repeats):
        source.set_epoch(epoch)
        n = 0
        t = time.perf_counter()
        for i, (_, y) in enumerate(source):
            n += len(y)
            if i + 1 >= max_batches:
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out.append(n / (time.perf_counter() - t))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10,000 images, 3 repeats, 60 batches each")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0: torch's default")
    args = ap.parse_args(argv)
    # 4 workers on a 2-core machine is the point of the comparison, not a mistake
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, repeats, max_batches = (10_000, 3, 60) if args.quick else (50_000, args.repeats, 10**9)

    g = torch.Generator().manual_seed(0)
    train = (
        torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
        torch.randint(0, 10, (n,), generator=g),
    )
    test = (train[0][:1000], train[1][:1000])
    print(
        f"{n} images 3x32x32, batch {args.batch_size}, crop_padding 4, flip, normalize, "
        f"device {device}, torch threads {torch.get_num_threads()}, "
        f"median of {repeats} repeats of {min(max_batches, -(-n // args.batch_size))} batches"
    )

    results = {}
    for label, loader, workers in (
        ("memory", "memory", 0),
        ("dataloader, 4 workers", "dataloader", 4),
        ("dataloader, 2 workers", "dataloader", 2),
    ):
        cfg = DataConfig(
            dataset="cifar10",
            loader=loader,
            batch_size=args.batch_size,
            num_workers=workers,
            crop_padding=4,
            flip=True,
            normalize=True,
        )
        bundle = bundle_from_tensors(train, test, cfg, seed=0, device=device)
        try:
            rates = rate(bundle.train, device, repeats, max_batches)
        finally:
            bundle.close()
        results[label] = statistics.median(rates)
        print(
            f"  {label:24s} {results[label]:12,.0f} samples/s   (repeats: "
            + ", ".join(f"{r:,.0f}" for r in rates)
            + ")"
        )
    mem = results["memory"]
    for w in (4, 2):
        print(f"  ratio memory / dataloader ({w} workers): {mem / results[f'dataloader, {w} workers']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
