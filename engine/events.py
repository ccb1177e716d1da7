"""What the engine tells: plain frozen dataclasses, appended to an EventBuffer that readers poll.

Plain fields only (numbers, strings, tuples), so events can travel as JSON lines later.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    time_s: float  # seconds since the run started
    epoch: int
    step: int  # training steps done so far (global)


@dataclass(frozen=True)
class RunStarted(Event):
    preset: str
    run_dir: str
    device: str  # e.g. "cpu" or "cuda:0 NVIDIA H100"
    model: str
    parameters: int
    epochs: int
    steps_per_epoch: int
    max_steps: int
    has_features: bool
    optimizer_choices: tuple
    resumed: bool = False
    freeze_modules: tuple = ()  # model.freeze's modules; empty: the features


@dataclass(frozen=True)
class StateChanged(Event):
    """The run's state as applied: running, paused, timing, finished, failed, stopped."""

    state: str
    optimizer: str
    optimizer_params: str  # e.g. "lr=0.01 momentum=0.9"
    lr: float
    frozen: bool
    mode: str
    reason: str = ""


@dataclass(frozen=True)
class StepMetrics(Event):
    """Training loss and accuracy averaged over one logging interval."""

    loss: float
    accuracy: float
    lr: float
    optimizer: str
    frozen: bool
    mode: str
    samples_per_s: float
    samples_seen: int
    gpu_memory_mb: float = 0.0  # CUDA: allocated by tensors now
    gpu_reserved_mb: float = 0.0  # CUDA: held by the caching allocator now
    gpu_peak_mb: float = 0.0  # CUDA: the most allocated during this interval


@dataclass(frozen=True)
class EpochEnd(Event):
    test_loss: float
    test_accuracy: float
    test_error_pct: float


@dataclass(frozen=True)
class CommandApplied(Event):
    command_id: int
    command: str
    detail: str


@dataclass(frozen=True)
class CommandRejected(Event):
    command_id: int
    command: str
    reason: str


@dataclass(frozen=True)
class ScheduleAction(Event):
    action: str
    detail: str


@dataclass(frozen=True)
class TimingResult(Event):
    device: str
    batch_ms: float
    loop_ms: float
    ratio: float
    batch_gflops: float
    loop_gflops: float


@dataclass(frozen=True)
class Warning(Event):  # noqa: A001 - an event, not the builtin
    message: str


@dataclass(frozen=True)
class CheckpointSaved(Event):
    path: str


@dataclass(frozen=True)
class RunError(Event):
    message: str
    fix: str = ""


@dataclass(frozen=True)
class SystemStats(Event):
    """One reading of the machine (engine.system), at most once a second."""

    cpu_pct: float  # this process, % of one core
    rss_mb: float  # this process's resident memory
    gpus: tuple = ()  # per CUDA device: (device, util %, used MiB, total MiB, temperature C, power W)
    note: str = ""  # why some figures are missing (e.g. NVML unavailable)


@dataclass(frozen=True)
class Finished(Event):
    """Always the last event: state is finished, stopped or failed."""

    state: str
    run_dir: str
    reason: str = ""


class EventBuffer:
    """A bounded, thread-safe log of events; each reader keeps its own cursor.

    The engine only appends (cheap, never blocks on a reader); readers call `read(cursor)` a few
    times a second. If a reader falls more than `maxlen` events behind, the oldest are skipped
    and reported in `dropped`.
    """

    def __init__(self, maxlen: int = 100_000):
        self._items: collections.deque = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._total = 0  # events ever appended; the cursor of the next one
        self.dropped = 0
        self._new = threading.Condition(self._lock)

    def append(self, event: Event) -> None:
        with self._lock:
            self._items.append(event)
            self._total += 1
            self._new.notify_all()

    def read(self, cursor: int) -> tuple[list[Event], int]:
        """Events from `cursor` on, and the cursor to pass next time."""
        with self._lock:
            first = self._total - len(self._items)
            if cursor < first:
                self.dropped += first - cursor
                cursor = first
            return list(self._items)[cursor - first :], self._total

    def wait(self, cursor: int, timeout: float) -> None:
        """Block until an event past `cursor` exists or `timeout` passes (for headless readers)."""
        with self._new:
            if self._total <= cursor:
                self._new.wait(timeout)

    def __len__(self) -> int:
        return self._total
