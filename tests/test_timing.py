"""Batch vs loop timing: small sizes and few repeats, so the file runs in a few seconds."""

import re

import pytest
import torch

from deeptui.engine import timing
from deeptui.engine.timing import TimingReport, check_same, measure, sweep
from deeptui.tui import bench
from deeptui.tui.bench import bench_main

SMALL = (256, 150, 100)  # rows of x, rows of w, inner dimension
LINE = re.compile(r"^(CPU|GPU) batch vs\. loop speed ratio \d+\.\d$")


def test_line_has_the_lectures_form():
    r = measure("cpu", repeats=3, sizes=SMALL)
    assert LINE.match(r.line()), r.line()
    assert r.device == "cpu" and r.line().startswith("CPU ")
    assert "ms" in r.details() and "GFLOP/s" in r.details()
    assert r.ratio == pytest.approx(r.loop_s / r.batch_s)
    assert r.batch_gflops == pytest.approx(2 * 256 * 150 * 100 / r.batch_s / 1e9)


def test_line_labels_cuda_as_gpu_and_rounds_to_one_decimal():
    r = TimingReport(device="cuda:0", batch_s=1e-3, loop_s=76.04e-3, ratio=76.04, batch_gflops=1.0, loop_gflops=1.0)
    assert r.line() == "GPU batch vs. loop speed ratio 76.0"
    assert r.event_fields()["loop_ms"] == pytest.approx(76.04)


def test_batched_and_looped_products_agree():
    assert check_same("cpu", sizes=SMALL)


def test_check_same_can_fail(monkeypatch):
    monkeypatch.setattr(timing, "_loop", lambda x, w, y: y.zero_())
    assert not check_same("cpu", sizes=SMALL)


@pytest.fixture
def one_thread():
    # On a busy 2-core machine a 2-thread GEMM waits a whole scheduler slice (~16 ms) for its
    # descheduled second thread, so small products time as noise; one thread measures the
    # batch-vs-loop effect itself.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_batch_beats_loop_on_cpu(one_thread):
    r = measure("cpu", repeats=7, sizes=SMALL)
    assert r.ratio > 1.0, r.details()


def test_should_stop_aborts_between_runs():
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(timing.TimingAborted):
        measure("cpu", repeats=50, sizes=SMALL, should_stop=stop)
    assert len(calls) == 3


def test_sweep_batch_sizes_are_powers_of_two_then_n():
    assert timing.default_batch_sizes(2500) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 2500]
    rows = sweep("cpu", batch_sizes=[8, 1, 32, 4], repeats=1, sizes=(32, 50, 40))
    sizes = [b for b, _, _ in rows]
    assert sizes == [1, 4, 8, 32]
    assert all(a < b for a, b in zip(sizes, sizes[1:]))
    assert all(tb > 0 and tl > 0 for _, tb, tl in rows)


def test_sweep_plot_is_plain_text():
    rows = [(1, 2e-6, 2e-6), (4, 1e-6, 2e-6), (16, 0.5e-6, 2e-6)]
    text = bench.sweep_plot(rows, width=50, height=10)
    assert "batch size" in text and "\x1b[" not in text


def test_bench_main_cpu(capsys):
    args = ["--device", "cpu", "--repeats", "2", "--sweep", "--sweep-repeats", "1"]
    assert bench_main(args, sizes=(40, 50, 30)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert LINE.match(lines[0]), lines
    assert lines[1].startswith("CPU (cpu): batch ")
    assert lines[2].split() == ["batch", "batch", "us/sample", "loop", "us/sample", "ratio"]
    assert [int(l.split()[0]) for l in lines[3:10]] == [1, 2, 4, 8, 16, 32, 40]


def test_bench_main_cuda_absent_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench_main(["--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("deeptui bench: CUDA is not available on this machine; fix: use --device cpu")


def test_bench_main_bad_arguments_exit_2(capsys):
    assert bench_main(["--repeats", "0"]) == 2
    assert "--repeats" in capsys.readouterr().err
    assert bench_main(["--device", "tpu"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err
