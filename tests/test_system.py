"""The machine's figures: system.csv on a CPU run, the NVML path against a fake NVML module (and
NVML missing or failing: said once, the run goes on), the readings in their own thread, the
headless lines every N rows, and `deeptui ls` for a live run."""

from __future__ import annotations

import csv
import io
import math
import sys
import threading
import time
import types

import pytest

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.remote.server import ControlServer
from deeptui.engine.runlog import SYSTEM_HEADER as HEADER
from deeptui.engine.runlog import RunLog
from deeptui.engine.system import SystemMonitor, summary
from deeptui.tui.headless import SYSTEM_EVERY_ROWS, HeadlessPrinter
from tests.conftest import EventReader


def test_a_cpu_run_reads_the_machine_in_its_own_thread_into_system_csv(make_engine):
    eng = make_engine("run.epochs=50")
    emitted_by = []
    real_emit = eng.system.emit

    def emit(kind, **fields):
        emitted_by.append(threading.current_thread().name)
        real_emit(kind, **fields)

    eng.system.emit = emit
    r = EventReader(eng)
    eng.send(C.Pause())  # the readings go on while paused: the machine is busy or not either way
    eng.start()
    reading = r.wait(lambda e: isinstance(e, E.SystemStats), timeout=30)
    assert reading.gpus == () and reading.cpu_pct >= 0 and reading.rss_mb > 50 and reading.note == ""
    assert set(emitted_by) == {"deeptui-system"}  # never the training thread
    assert eng.shutdown(timeout=60)
    assert not [t for t in threading.enumerate() if t.name == "deeptui-system"]  # stopped with the run
    rows = list(csv.reader(open(eng.run_dir / "system.csv")))
    assert rows[0] == HEADER and len(rows) >= 2
    t, device, util, used, total, temp, power, cpu, rss = rows[1]
    assert device == "cpu" and (util, used, total, temp, power) == ("",) * 5
    assert float(cpu) >= 0 and float(rss) > 50 and 0 < float(t) < 60


class FakeNvml(types.ModuleType):
    """pynvml's calls as deeptui makes them, on two made-up devices; power fails on the second."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def __init__(self, fail_init: bool = False):
        super().__init__("pynvml")
        self.fail_init, self.asked, self.shut = fail_init, [], False

    def nvmlInit(self):
        if self.fail_init:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        self.shut = True

    def nvmlDeviceGetHandleByIndex(self, i):
        self.asked.append(i)
        return i

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=40 + h, memory=10)

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(used=(1 + h) * 2**30, total=80 * 2**30, free=0)

    def nvmlDeviceGetTemperature(self, h, sensor):
        return 60 + h

    def nvmlDeviceGetPowerUsage(self, h):
        if h == 5:
            raise self.NVMLError("Not Supported")
        return 250_000  # milliwatts


def monitor(tmp_path, cuda):
    """A monitor whose events go to a run log in tmp_path (system.csv), stamped at 12.5 s."""
    got, lock, log = [], threading.Lock(), RunLog(tmp_path)

    def emit(kind, **fields):
        with lock:
            got.append(kind(12.5, 1, 0, **fields))
            log.record(got[-1])
            log.flush()

    mon = SystemMonitor(1.0, emit=emit, cuda=cuda)
    return mon, got


def wait_for(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_nvml_path_reads_every_device_used(tmp_path, monkeypatch):
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # CUDA's 0 and 1 are NVML's 3 and 5
    mon, got = monitor(tmp_path, [0, 1])
    mon.start()
    wait_for(lambda: any(isinstance(e, E.SystemStats) for e in got))
    mon.stop()
    assert fake.asked == [3, 5] and fake.shut
    ev = next(e for e in got if isinstance(e, E.SystemStats))
    assert not any(isinstance(e, E.Warning) for e in got)
    (d0, u0, used0, total0, t0, p0), (d1, u1, used1, total1, t1, p1) = ev.gpus
    assert (d0, u0, used0, total0, t0, p0) == ("cuda:0", 43.0, 4096.0, 81920.0, 63.0, 250.0)
    assert (d1, u1, used1, t1) == ("cuda:1", 45.0, 6144.0, 65.0) and math.isnan(p1)  # power not supported
    assert summary(ev).startswith("cuda:0 43% 4.0/80.0 GiB 63°C 250 W · cuda:1 45% 6.0/80.0 GiB 65°C ? · cpu ")
    rows = list(csv.DictReader(open(tmp_path / "system.csv")))
    assert [r["device"] for r in rows[:2]] == ["cuda:0", "cuda:1"]
    assert rows[0]["time_s"] == "12.500" and rows[0]["mem_total_mb"] == "81920" and rows[1]["power_w"] == ""
    assert float(rows[0]["cpu_pct"]) >= 0 and float(rows[1]["rss_mb"]) > 50


@pytest.mark.parametrize("broken", ["missing", "fails"])
def test_nvml_missing_or_failing_is_said_once_and_the_readings_go_on(tmp_path, monkeypatch, broken):
    monkeypatch.setitem(sys.modules, "pynvml", None if broken == "missing" else FakeNvml(fail_init=True))
    mon, got = monitor(tmp_path, [0])
    mon.start()
    wait_for(lambda: sum(isinstance(e, E.SystemStats) for e in got) >= 2, timeout=40)
    mon.stop()
    warnings = [e.message for e in got if isinstance(e, E.Warning)]
    want = "nvidia-ml-py is not installed" if broken == "missing" else "NVML Shared Library Not Found"
    assert len(warnings) == 1 and want in warnings[0] and "the run goes on" in warnings[0]
    stats = [e for e in got if isinstance(e, E.SystemStats)]
    assert all(s.gpus == () and want in s.note and s.rss_mb > 0 for s in stats)
    rows = list(csv.DictReader(open(tmp_path / "system.csv")))
    assert len(rows) >= 2 and {r["device"] for r in rows} == {"cpu"}


def test_headless_prints_the_machine_every_n_rows():
    out = io.StringIO()
    p = HeadlessPrinter(out=out)
    p.handle(E.SystemStats(1.0, 1, 0, cpu_pct=180.0, rss_mb=2048.0))
    for step in range(1, 2 * SYSTEM_EVERY_ROWS + 1):
        fields = dict(lr=0.1, optimizer="sgd", frozen=False, mode="train", samples_per_s=10.0, samples_seen=step)
        p.handle(E.StepMetrics(step, 1, step, loss=1.0, accuracy=0.5, **fields))
    lines = out.getvalue().splitlines()
    machine = [i for i, line in enumerate(lines) if line.startswith("machine: ")]
    assert machine == [SYSTEM_EVERY_ROWS, 2 * SYSTEM_EVERY_ROWS + 1]  # after rows 10 and 20
    assert lines[machine[0]] == "machine: cpu 180% rss 2.00 GiB"


def test_ls_shows_a_live_runs_machine(make_engine, tmp_path, capsys):
    from deeptui.tui.runs import ls_main

    eng = make_engine("run.epochs=50")
    srv = ControlServer(eng).start()
    try:
        r = EventReader(eng)
        eng.send(C.Pause())
        eng.start()
        r.wait(lambda e: isinstance(e, E.SystemStats), timeout=30)
        assert ls_main(["--log-dir", str(eng.run_dir.parent)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[2].split()[:2] == [eng.run_dir.name, "paused"]  # under the header and its folder
        assert lines[3].strip().startswith("machine: cpu ") and "GiB" in lines[3]
    finally:
        eng.shutdown(timeout=60)
        srv.close()
    assert ls_main(["--log-dir", str(eng.run_dir.parent)]) == 0
    assert "machine" not in capsys.readouterr().out  # a run that has ended has no live figures


class UuidNvml(FakeNvml):
    """NVML numbering two GPUs by PCI bus, the second in MIG mode with two instances; a handle's
    utilisation reads 40 + the handle, so each reading says which device it came from."""

    UUIDS = {
        0: "GPU-0a0a0a0a-0000-0000-0000-000000000000",
        1: "GPU-1b1b1b1b-1111-1111-1111-111111111111",
        10: "MIG-2c2c2c2c-2222-2222-2222-222222222222",
        11: "MIG-3d3d3d3d-3333-3333-3333-333333333333",
    }

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetUUID(self, h):
        return self.UUIDS[h]

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        if h == 0:
            raise self.NVMLError("Not Supported")
        return 2

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, j):
        return 10 + j


@pytest.mark.parametrize(
    "visible,cuda_uuids,want",
    [
        ("MIG-3d3d3d3d-3333-3333-3333-333333333333", {}, [11]),  # a MIG instance: not GPU 0, not its parent
        ("GPU-1b1b1b1b", {}, [1]),  # a GPU by (a prefix of) its UUID
        (None, {0: "1b1b1b1b-1111-1111-1111-111111111111", 1: "0a0a0a0a-0000-0000-0000-000000000000"}, [1, 0]),
    ],
    ids=["mig-uuid", "gpu-uuid-prefix", "cuda-order-not-pci-order"],
)
def test_the_strip_reads_the_gpu_the_run_uses(monkeypatch, visible, cuda_uuids, want):
    """Bug: with CUDA_VISIBLE_DEVICES holding a GPU or MIG UUID the strip read NVML's device 0 (another
    card, or the MIG instance's parent), and where CUDA numbers devices fastest first while NVML goes
    by PCI bus, it read the other card."""
    import torch

    from deeptui.engine.system import Nvml

    monkeypatch.setitem(sys.modules, "pynvml", UuidNvml())
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)

    def properties(i):
        if i not in cuda_uuids:
            raise RuntimeError("no CUDA here")
        return types.SimpleNamespace(uuid=cuda_uuids[i])

    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
    readings = Nvml(list(range(len(want)))).read()
    assert [r[1] - 40 for r in readings] == want
    assert [r[0] for r in readings] == [f"cuda:{i}" for i in range(len(want))]


def test_a_link_planted_at_system_csv_stops_the_readings_and_says_so(tmp_path, monkeypatch):
    """Bug: a symbolic link at system.csv (a run directory handed over) raised RunDirError in the
    monitor's thread: a traceback on stderr, and the strip kept the last reading as if current.
    Now nothing is written through the link, a warning names the file, and a last reading says
    that no more will come."""
    outside = tmp_path / "outside.csv"
    outside.write_text("precious\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "system.csv").symlink_to(outside)
    crashes = []
    monkeypatch.setattr(threading, "excepthook", crashes.append)
    mon, got = monitor(run_dir, [])
    mon.start()
    wait_for(lambda: any(isinstance(e, E.SystemStats) and e.note for e in got))
    mon.stop()
    assert crashes == [] and outside.read_text() == "precious\n"
    (warning,) = [e for e in got if isinstance(e, E.Warning)]
    assert "system.csv cannot be written" in warning.message and "no more readings" in warning.message
    last = got[-1]
    assert isinstance(last, E.SystemStats) and math.isnan(last.cpu_pct) and "no more readings" in last.note
