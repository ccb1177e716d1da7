"""Data-parallel scaling: samples/s of the same preset with 1, 2, ... processes (--nproc).

  python benchmarks/scaling.py --nproc 1 2 --steps 60              # CPU (gloo)
  python benchmarks/scaling.py --nproc 1 2 4 8 --device cuda       # one process per GPU (nccl)

Reads samples/s from each run's metrics.csv (global samples over the rows after the first,
so start-up and the first interval's warm-up are left out); prints the speed-up against 1.

Every run gets the same threads per process (OMP_NUM_THREADS, --threads, default 1), and the
table says so: giving the 1-process baseline all the cores while each rank of N gets 1/N of them
measured the baseline's thread contention, not data parallelism (on 2 shared cores it credited
--nproc 2 with 5-8x; with equal threads it is about 0.9x there).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(nproc: int, args) -> float:
    with tempfile.TemporaryDirectory() as logs:
        cmd = [
            sys.executable,
            "-m",
            "deeptui",
            args.preset,
            "--headless",
            "--log-dir",
            logs,
            "--device",
            args.device,
            "--max-steps",
            str(args.steps),
            "--set",
            f"log.interval={args.interval}",
            "--set",
            "log.checkpoint_every=0",
            "--set",
            f"data.batch_size={args.batch}",
        ]
        if nproc > 1:
            cmd += ["--nproc", str(nproc)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}  # the same for every run
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
        (run_dir,) = Path(logs).iterdir()
        rows = [r for r in csv.DictReader(open(run_dir / "metrics.csv")) if r["split"] == "train"]
        return statistics.median(float(r["samples_per_s"]) for r in rows[1:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=str(ROOT / "presets" / "quickstart.toml"))
    ap.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128, help="global batch (divided over the processes)")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every process, in every run")
    args = ap.parse_args()
    print(f"equal thread counts: every process of every run has {args.threads} thread(s) (--threads)")
    base = None
    for n in args.nproc:
        sps = run(n, args)
        base = base or sps
        print(f"nproc {n} x {args.threads} thread(s): {sps:10.0f} samples/s   speed-up x{sps / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
