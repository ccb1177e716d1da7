"""Training throughput of the Monster preset: the lecture's own loop against deeptui's paths.

On 50,000 generated CIFAR-format images (real pickle files, read by deeptui's reader), batch 64,
SGD lr 1e-2, a fixed number of steps after a warm-up, median of --repeats runs:

  lecture      the lecture's hand-written loop: torchvision-style Dataset (PIL + ToTensor),
               DataLoader(batch 64, shuffle, 4 workers), .to(device), loss.item() every step
  dataloader   deeptui's engine, data.loader = "dataloader" (same DataLoader, no per-step sync)
  memory       deeptui's engine, data.loader = "memory" (uint8 set on the device, batch ops)
  fast         memory + perf.amp = bf16 + perf.channels_last (+ perf.compile with --compile)

Prints samples/s for each and the ratio to the lecture's loop; with --compile, the time the
compiles took (the engine's "compiling" states), apart: it is not in samples/s.

  python benchmarks/train_speed.py --device cuda --steps 300
  python benchmarks/train_speed.py --device cpu --steps 20 --images 2000 --blocks 2   # smoke test
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lecture_loop(root: Path, device, steps: int, warmup: int, blocks: int, workers: int) -> float:
    """Written the way the lecture writes it; returns samples/s over `steps` after `warmup`.
    In PyTorch's default state: the engine runs before it set cudnn.benchmark (perf.cudnn_benchmark),
    which would otherwise carry over into the lecture's loop from the second repeat on."""
    torch.backends.cudnn.benchmark = False
    from PIL import Image
    from torchvision import transforms

    from deeptui.engine.data import _load_cifar10
    from deeptui.engine.models import Monster

    (x, y), _ = _load_cifar10(root, False, 0, 0)
    images = x.permute(0, 2, 3, 1).numpy()  # HWC like torchvision's CIFAR10.data
    labels = y.tolist()

    class CifarLike(torch.utils.data.Dataset):
        def __init__(self):
            self.transform = transforms.ToTensor()

        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return self.transform(Image.fromarray(images[i])), labels[i]

    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(CifarLike(), batch_size=64, shuffle=True, num_workers=workers)
    model = Monster(blocks, 64).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    for p in model.features.parameters():
        p.requires_grad = False  # the lecture's freeze_features(True) for the first half
    done, acc_loss, t0 = 0, 0.0, None
    while done < warmup + steps:
        for input, target in loader:
            if done == warmup:
                sync(device)
                t0 = time.perf_counter()
            input, target = input.to(device), target.to(device)
            output = model(input)
            loss = criterion(output, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            acc_loss += loss.item()
            done += 1
            if done == warmup + steps:
                break
    sync(device)
    elapsed = time.perf_counter() - t0
    del loader
    return steps * 64 / elapsed


def deeptui_run(root: Path, device, steps: int, warmup: int, blocks: int, workers: int, overrides: list[str]):
    """deeptui's engine headless: (samples/s between the readback after the warm-up and the last,
    seconds spent compiling)."""
    from deeptui.engine import events as E
    from deeptui.engine.build import build_engine
    from deeptui.engine.config import load_config

    cfg = load_config(
        ROOT / "presets" / "cifar_monster.toml",
        [
            "model.pretrained=false",
            f"model.blocks={blocks}",
            f"run.max_steps={warmup + steps}",
            f"log.interval={warmup}",
            "data.test_size=1000",
            f'run.device="{device}"',
            f"data.num_workers={workers}",
            "log.checkpoint_every=0",
            *overrides,
        ],
    )
    with tempfile.TemporaryDirectory() as logs:
        eng = build_engine(cfg, data_root=root, log_dir=logs)
        eng.run()
        events = eng.events.read(0)[0]
    marks = [e for e in events if isinstance(e, E.StepMetrics)]
    first = next(e for e in marks if e.step == warmup)
    last = marks[-1]
    states = [e for e in events if isinstance(e, E.StateChanged)]
    compile_s = sum(b.time_s - a.time_s for a, b in zip(states, states[1:]) if a.state == "compiling")
    return (last.samples_seen - first.samples_seen) / (last.time_s - first.time_s), compile_s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--blocks", type=int, default=16)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="add perf.compile to the fast path")
    ap.add_argument(
        "--paths",
        default="lecture,dataloader,memory,fast",
        help="comma-separated subset of lecture,dataloader,memory,fast",
    )
    args = ap.parse_args(argv)
    device = torch.device(args.device)

    from tests.datafiles import write_cifar10

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cifar10(root, n_train=args.images, n_test=1000)
        fast = ["perf.amp='bf16'", "perf.channels_last=true"] + (["perf.compile=true"] if args.compile else [])
        runs = {
            "lecture": lambda: (lecture_loop(root, device, args.steps, args.warmup, args.blocks, args.workers), 0.0),
            "dataloader": lambda: deeptui_run(
                root, device, args.steps, args.warmup, args.blocks, args.workers, ["data.loader='dataloader'"]
            ),
            "memory": lambda: deeptui_run(
                root, device, args.steps, args.warmup, args.blocks, args.workers, ["data.loader='memory'"]
            ),
            "fast": lambda: deeptui_run(
                root, device, args.steps, args.warmup, args.blocks, args.workers, ["data.loader='memory'", *fast]
            ),
        }
        runs = {k: v for k, v in runs.items() if k in args.paths.split(",")}
        results = {k: [] for k in runs}
        for _ in range(args.repeats):  # interleaved, so drifts in machine load hit every path alike
            for name, fn in runs.items():
                results[name].append(fn())
    print(
        f"Monster ({args.blocks} blocks) on {args.images} CIFAR-format images, batch 64, {args.steps} steps "
        f"after {args.warmup} warm-up, device {device}, median of {args.repeats}"
    )
    base = statistics.median([v for v, _ in results.get("lecture", [])] or [float("nan")])
    for name, runs_of in results.items():
        vals = [v for v, _ in runs_of]
        med = statistics.median(vals)
        compiled = statistics.median(c for _, c in runs_of)
        print(
            f"  {name:<11} {med:10.0f} samples/s   x{med / base:5.2f} vs the lecture's loop   "
            f"(runs: {', '.join(f'{v:.0f}' for v in vals)})"
            + (f"   compile {compiled:.1f} s apart" if compiled else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
