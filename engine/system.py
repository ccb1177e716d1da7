"""The machine's figures, as nvitop shows them: per CUDA device the utilisation, memory used/total,
temperature and power (NVIDIA's NVML, through nvidia-ml-py's pynvml), and the process's CPU % and
resident memory (psutil); read in a thread of their own at most once a second, never on the
training thread; told as SystemStats events (the run log writes them to system.csv).

When NVML is missing or fails, one Warning says so and the readings go on with the CPU's figures.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable

from . import events as E
from .errors import SetupError

NAN = math.nan
MIB = 2**20


class NvmlUnavailable(Exception):
    """NVML cannot be used: the binding is not installed, the driver library is missing, or it failed."""


class Nvml:
    """NVML handles of the CUDA devices a run uses. read() gives one tuple per device
    (device, util %, used MiB, total MiB, temperature C, power W); a call that fails gives NaN."""

    def __init__(self, indices: list[int]):
        try:
            import pynvml
        except ImportError:
            raise NvmlUnavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)") from None
        self.nv = pynvml
        try:
            pynvml.nvmlInit()
            self.handles = [(f"cuda:{i}", nvml_handle(pynvml, i)) for i in indices]
        except Exception as e:  # pynvml.NVMLError and its kinds: no driver library, no permission, ...
            raise NvmlUnavailable(f"NVML failed: {str(e) or type(e).__name__}") from None

    def read(self) -> list[tuple]:
        nv, out = self.nv, []
        for name, h in self.handles:
            util = _try(lambda h=h: nv.nvmlDeviceGetUtilizationRates(h).gpu)
            mem = _try(lambda h=h: nv.nvmlDeviceGetMemoryInfo(h), None)
            temp = _try(lambda h=h: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
            power = _try(lambda h=h: nv.nvmlDeviceGetPowerUsage(h) / 1000)  # milliwatts
            used, total = (mem.used / MIB, mem.total / MIB) if mem is not None else (NAN, NAN)
            out.append((name, float(util), float(used), float(total), float(temp), float(power)))
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.nv.nvmlShutdown()


def _try(read: Callable, default=NAN):
    try:
        return read()
    except Exception:  # e.g. NVML_ERROR_NOT_SUPPORTED for power on some boards
        return default


def visible_entry(i: int) -> str:
    """CUDA_VISIBLE_DEVICES's entry for CUDA's device i ("" when it is not set): an index, or a GPU
    or MIG instance named by (a unique prefix of) its UUID."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[i] if i < len(visible) else ""


def physical_index(i: int) -> int:
    """CUDA's device i as NVML numbers it: CUDA_VISIBLE_DEVICES renumbers what CUDA sees, NVML does not."""
    entry = visible_entry(i)
    return int(entry) if entry.isdigit() else i


def cuda_uuid(i: int) -> str | None:
    """The UUID CUDA gives its device i, without a GPU-/MIG- prefix; None when it cannot be had."""
    try:
        import torch

        uuid = str(torch.cuda.get_device_properties(i).uuid)
    except Exception:  # no CUDA, or an older torch without the field
        return None
    return uuid.removeprefix("GPU-").removeprefix("MIG-") or None


def nvml_devices(nv):
    """(handle, UUID) of every GPU NVML sees, and of every MIG instance of a GPU in MIG mode."""
    for k in range(nv.nvmlDeviceGetCount()):
        gpu = nv.nvmlDeviceGetHandleByIndex(k)
        yield gpu, _text(nv.nvmlDeviceGetUUID(gpu))
        for j in range(_try(lambda gpu=gpu: nv.nvmlDeviceGetMaxMigDeviceCount(gpu), 0)):
            mig = _try(lambda gpu=gpu, j=j: nv.nvmlDeviceGetMigDeviceHandleByIndex(gpu, j), None)
            if mig is not None:  # an empty slot raises NOT_FOUND
                yield mig, _text(nv.nvmlDeviceGetUUID(mig))


def nvml_handle(nv, i: int):
    """NVML's handle of CUDA's device i. NVML numbers GPUs by PCI bus, CUDA fastest first unless
    CUDA_DEVICE_ORDER=PCI_BUS_ID, and CUDA_VISIBLE_DEVICES may name a GPU or a MIG instance by
    UUID: the device is found by the UUID that names it (its CUDA_VISIBLE_DEVICES entry, else
    CUDA's own), and by its index only when no UUID can be matched."""
    entry, uuid = visible_entry(i), cuda_uuid(i)
    wanted = [entry] if entry.startswith(("GPU-", "MIG-")) else []
    wanted += [f"MIG-{uuid}", f"GPU-{uuid}"] if uuid else []
    if wanted:
        devices = _try(lambda: list(nvml_devices(nv)), [])
        for want in wanted:
            found = next((h for h, name in devices if name.startswith(want)), None)
            if found is not None:
                return found
    return nv.nvmlDeviceGetHandleByIndex(physical_index(i))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Process:
    """This process's CPU % (of one core; 2 busy cores read 200%) and resident memory, via psutil."""

    def __init__(self):
        try:
            import psutil
        except ImportError:
            self.proc = None
            return
        self.proc = psutil.Process()
        self.proc.cpu_percent(None)  # the first call starts the count

    def read(self) -> tuple[float, float]:
        if self.proc is None:
            return NAN, NAN
        return float(self.proc.cpu_percent(None)), self.proc.memory_info().rss / MIB


class SystemMonitor:
    """Reads the figures every `seconds` (>= 1) in its own thread, from start() until stop(),
    emitting a SystemStats event per reading."""

    def __init__(self, seconds: float, emit: Callable[..., object], cuda: list[int] = ()):
        self.seconds, self.emit, self.cuda = max(1.0, seconds), emit, list(cuda)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.readings = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="deeptui-system", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (it finishes the reading under way)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        proc, nvml, note = Process(), None, ""
        if proc.proc is None:
            note = "no CPU figures: psutil is not installed"
        if self.cuda:
            try:
                nvml = Nvml(self.cuda)
            except NvmlUnavailable as e:
                note = f"no GPU figures: {e}"
        try:
            if note:
                self.emit(E.Warning, message=f"machine strip: {note}; the run goes on")
            while not self._stop.wait(self.seconds):
                cpu, rss = proc.read()
                gpus = nvml.read() if nvml is not None else []
                self.readings += 1
                self.emit(E.SystemStats, cpu_pct=cpu, rss_mb=rss, gpus=tuple(gpus), note=note)
        except (OSError, SetupError) as e:  # the run directory went away, filled up, or has a link
            # planted at system.csv: the run goes on without readings, and the strip says so
            # rather than showing the last one as if it were current
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            with contextlib.suppress(OSError, SetupError):
                self.emit(E.Warning, message=f"machine strip: system.csv cannot be written ({why}); no more readings")
            with contextlib.suppress(OSError, SetupError):
                nan = float("nan")
                self.emit(E.SystemStats, cpu_pct=nan, rss_mb=nan, gpus=(), note="no more readings (see the events)")
        finally:
            if nvml is not None:
                nvml.close()


class NoMonitor:
    """A rank other than 0, or log.system_seconds = 0: no readings."""

    readings = 0

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 5.0) -> None:
        pass


def monitor_for(run) -> SystemMonitor | NoMonitor:
    """The run's monitor: rank 0 reads this machine's devices (in a data-parallel run on CUDA,
    the GPUs of every local rank) and its own process."""
    seconds = run.cfg.log.system_seconds
    if not run.is_main or seconds <= 0:
        return NoMonitor()
    cuda: list[int] = []
    if run.device.type == "cuda":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if run.dist is not None else 1
        cuda = list(range(local)) if local > 1 else [run.device.index or 0]
    return SystemMonitor(seconds, run.report.emit, cuda)


# ---- one line of text for a reading: the headless lines, `deeptui ls`, the dashboard's strip


def _num(v: float, fmt: str, unit: str = "") -> str:
    return "?" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:{fmt}}{unit}"


def gpu_text(gpu: tuple) -> str:
    """'cuda:0 87% 12.3/80.0 GiB 71°C 250 W' (nvidia-smi's memory: the device's, not the allocator's)."""
    name, util, used, total, temp, power = gpu
    mem = f"{_num(used / 1024, '.1f')}/{_num(total / 1024, '.1f')} GiB"
    return f"{name} {_num(util, '.0f', '%')} {mem} {_num(temp, '.0f', '°C')} {_num(power, '.0f', ' W')}"


def cpu_text(cpu_pct: float, rss_mb: float) -> str:
    return f"cpu {_num(cpu_pct, '.0f', '%')} rss {_num(rss_mb / 1024, '.2f', ' GiB')}"


def summary(ev: E.SystemStats) -> str:
    """The whole reading as one plain line."""
    parts = [gpu_text(g) for g in ev.gpus] + [cpu_text(ev.cpu_pct, ev.rss_mb)]
    return " · ".join(parts) + (f" ({ev.note})" if ev.note else "")
