"""What the engine tells: plain frozen dataclasses, appended to an EventBuffer that readers poll,
and their JSON form (the run directory's events.jsonl and the control socket's lines).

Plain fields only (numbers, strings, tuples). A run's events are its record: every view of a run
(the dashboard, attach, show, the summary, ls, the exports) is a fold of them.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
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
    wall_time: float = 0.0  # the wall clock (time.time()) at this event: when the run (or resume) started


@dataclass(frozen=True)
class Loading(Event):
    """Before the engine exists: what is being loaded (torch, the data, the model)."""

    stage: str


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
    eval_mode: str = "eval"  # how the test set is evaluated: eval, train or both
    lr_schedule: str = ""  # the [schedule] lr that sets the lr now; "" when constant or set by hand


@dataclass(frozen=True)
class StepMetrics(Event):
    """Training loss and accuracy averaged over one logging interval."""

    loss: float
    accuracy: float
    lr: float
    optimizer: str
    frozen: bool
    mode: str
    samples_per_s: float  # over the interval's training time (pauses, timings, compiles left out)
    samples_seen: int
    train_s: float = 0.0  # the run's training time so far: the clock that samples/s and the ETA use
    gpu_memory_mb: float = 0.0  # CUDA: allocated by tensors now
    gpu_reserved_mb: float = 0.0  # CUDA: held by the caching allocator now
    gpu_peak_mb: float = 0.0  # CUDA: the most allocated during this interval
    clipped: float = math.nan  # optimizer.clip_grad_norm: the interval's share of clipped steps; nan: off


@dataclass(frozen=True)
class EpochEnd(Event):
    """One evaluation on the test set, in eval mode or (run.eval_mode) in train mode."""

    test_loss: float
    test_accuracy: float
    test_error_pct: float
    mode: str = "eval"
    lr: float = 0.0  # the settings the model was trained with up to this evaluation
    optimizer: str = ""
    frozen: bool = False


@dataclass(frozen=True)
class LayerStats(Event):
    """Per-layer statistics of one training step (the last of each log.layers_interval), one
    entry per layer in depth order (input to output)."""

    layers: tuple  # module names, e.g. "features.0", "resnet_blocks.3", "fc"
    weight_norm: tuple
    grad_norm: tuple  # 0 for a frozen layer
    update_ratio: tuple  # |step's change| / |weights|
    activation_mean: tuple  # of the layer's output; nan where not measured (torch.compile)
    activation_std: tuple


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
class TimingProgress(Event):
    """The batch-vs-loop timing under way: `done` of `total` timed runs."""

    done: int
    total: int


@dataclass(frozen=True)
class Warning(Event):  # noqa: A001 - an event, not the builtin
    message: str
    kind: str = "warning"  # its row's name in events.csv (e.g. resume_changes, notify_failed)


@dataclass(frozen=True)
class Note(Event):
    """Something the run did that is neither a command's answer nor a change of state (reached
    run.max_steps, notify_command ran): a line in the log and a row of events.csv."""

    kind: str
    detail: str


@dataclass(frozen=True)
class Rewound(Event):
    """The run went back to a checkpoint (RestoreCheckpoint): `step` is the checkpoint's. Every
    point logged past it left the history (its metrics rows moved to metrics.csv.orphaned), so a
    fold drops them too; the clock goes on."""

    path: str
    from_step: int
    orphaned: int  # metrics.csv rows moved out


@dataclass(frozen=True)
class NonFiniteLoss(Event):
    """The training loss turned non-finite; policy says what the run did: pause (a dashboard
    offers the ways out), continue, or stop (a RunError follows)."""

    loss: float
    policy: str
    message: str


@dataclass(frozen=True)
class CheckpointSaved(Event):
    """A checkpoint file written: kind last, best, epoch, or nonfinite (a model that is not
    finite, kept for inspection: never written over a finite one)."""

    path: str
    kind: str = "last"


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
    bad_input: bool = False  # failed on its input (a SetupError met while training, e.g. a corrupt sample): exit 2


@dataclass(frozen=True)
class Digest(Event):
    """The training rows before it, as a fold of them (engine.lod.TrainFold's state: the newest
    points in full, older ones in buckets), and the last row's fields: what a client that attaches
    to a long run, or `show`, gets in place of every StepMetrics. Never written to events.jsonl:
    a reader makes it from the record (engine.replay)."""

    train: dict
    last: dict  # the last StepMetrics' fields (none: {})
    recent: tuple = ()  # the newest rows' fields (engine.replay.RECENT_ROWS), for a line each


# Told to the front ends but not kept: progress ticks that a fold does not need.
TRANSIENT = (TimingProgress, Loading)


def to_json(event: Event) -> str:
    """One event as a JSON object: its class name under "type", then its fields (plain values:
    numbers, strings, tuples of them, and a Digest's dicts of lists), the clock in full precision."""
    return json.dumps({"type": type(event).__name__, **vars(event)}, separators=(",", ":"))


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


_FIELDS: dict[type, frozenset] = {}  # each event class's field names


def from_json(obj) -> Event | None:
    """A JSON object back into its event (lists become tuples); None for an object that is not an
    event this version knows. Fields a newer version added are left out; missing ones with a
    default take it."""
    if not isinstance(obj, dict):
        return None
    cls = globals().get(str(obj.get("type")))
    if not (isinstance(cls, type) and issubclass(cls, Event)):
        return None
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    try:
        return cls(**{k: _tuples(v) for k, v in obj.items() if k in names})
    except TypeError:
        return None


def from_line(line: bytes | str) -> Event | None:
    """One line of events.jsonl (or of the control socket) back into its event; None for a line
    that is not JSON or not an event this version knows."""
    try:
        return from_json(json.loads(line))
    except (ValueError, RecursionError):
        return None


class EventBuffer:
    """A bounded, thread-safe log of events; each reader keeps its own cursor.

    The engine only appends (cheap, never blocks on a reader); readers call `read(cursor)` a few
    times a second. If a reader falls more than `maxlen` events behind, the oldest are skipped
    and counted in `dropped`; readers read through engine.feed.Feed, which gets those from the
    run's journal. It is not the history: a new client's comes from the control
    server's replay (engine.replay), a finished run's from events.jsonl; so it stays small.
    """

    def __init__(self, maxlen: int | None = 20_000):
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

    def extend(self, events: list[Event]) -> None:
        for ev in events:
            self.append(ev)

    def limit(self, maxlen: int) -> None:
        """Keep at most `maxlen` events from now on (a client's buffer, once its history is in:
        the history stays until that many live events came after it)."""
        with self._lock:
            self._items = collections.deque(self._items, maxlen=maxlen)

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
