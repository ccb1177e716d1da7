"""benchmarks/overhead.py: its arithmetic (rates across frozen windows, the median's interval) and
one short end-to-end run, so the benchmark the speed claims rest on keeps working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import layers as layers_benchmark  # noqa: E402
import overhead  # noqa: E402


def test_window_rate_counts_only_the_time_the_process_ran():
    windows = [(0.0, 1.0), (3.0, 4.0)]  # frozen from 1.0 to 3.0
    rows = [(1, 10, 0.5), (1, 20, 0.9), (1, 30, 3.2), (1, 40, 3.9)]
    # from the last row before window 1 (step 20 at 0.9) to its last row (step 40 at 3.9):
    # 20 steps in 0.1 s + 0.9 s of running time
    assert overhead.window_rate(rows, windows, 1) == pytest.approx(20.0)
    assert overhead.window_rate(rows, windows, 0) is None  # nothing logged before the first window


def test_window_rate_leaves_out_spans_with_an_epoch_end():
    windows = [(0.0, 1.0), (3.0, 4.0)]
    rows = [(1, 10, 0.5), (1, 20, 0.9), (2, 30, 3.2), (2, 40, 3.9)]
    assert overhead.window_rate(rows, windows, 1) is None


def test_layers_benchmark_total_rate_counts_running_time_after_the_warm_up():
    windows = [(0.0, 1.0), (3.0, 4.0), (6.0, 7.0)]  # the first is the warm-up round
    rows = [(1, 5, 0.5), (1, 10, 3.1), (1, 20, 3.9), (1, 30, 6.5)]
    # step 10 at 3.1 to step 30 at 6.5: 20 steps in 0.9 s + 0.5 s of running time
    assert layers_benchmark.total_rate(rows, windows) == pytest.approx(20 / 1.4)


def test_median_confidence_interval_from_order_statistics():
    assert overhead.median_ci(list(range(1, 11))) == (2, 9)  # n=10: 2nd and 9th
    assert overhead.median_ci(list(range(30, 0, -1))) == (10, 21)  # n=30: 10th and 21st
    assert overhead.median_ci([3.0, 1.0]) == (1.0, 3.0)  # too few for 95%: the range


@pytest.mark.e2e
def test_overhead_benchmark_runs_end_to_end():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "overhead.py"),
            "--rounds",
            "2",
            "--seconds",
            "1.0",  # a smoke test of the benchmark: the figures come from make bench
            "--set",
            # a logged row in every window, also on a loaded machine (two make test side by side
            # once left 1-second windows with 5-step rows empty)
            "log.interval=2",
            "--set",
            "model.blocks=1",
            "--set",
            "model.channels=8",
            "--set",
            "data.train_size=64000",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for line in ("headless / plain", "dashboard / plain", "dashboard / headless"):
        assert line in out.stdout
    assert "steps/s median" in out.stdout
