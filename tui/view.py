"""What the dashboard knows about a run, built only from the engine's events (no Textual here).

`RunView.apply(event)` folds one event into plain Python state: the series to plot, the markers,
the latest state the engine reported, the log lines. The dashboard reads it to draw; nothing here
talks back to the engine.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from deeptui.engine import events as E
from deeptui.engine.lod import Lod, TrainFold
from deeptui.engine.state import RunState

# Commands whose application is drawn as a vertical marker on the loss plot.
MARKER_KINDS = {
    "SwitchOptimizer": "optimizer",
    "SetFrozen": "freeze",
    "SetMode": "mode",
    "SetLearningRate": "lr",
    "ScaleLearningRate": "lr",
    "RestoreCheckpoint": "restore",
}
CHECKPOINT_KINDS = ("last", "epoch", "best")  # the finite ones: a rewind may go back to them
LOG_KEEP = 1000  # log lines a view keeps (the dashboard's event log shows as many)


@dataclass
class Series:
    """x/y points in arrival order; y may hold non-finite values (they are not drawn)."""

    x: list = field(default_factory=list)
    y: list = field(default_factory=list)
    w: list = field(default_factory=list)  # the rows each point stands for (a Lod bucket's count); empty: one each

    @classmethod
    def of_lod(cls, lod: Lod, axis: str, value: str = "loss") -> Series:
        """A Lod's entries against step, samples seen or time: bounded, whatever the run's length."""
        return cls(lod.column(axis), lod.column(value), lod.weights())

    def add(self, x: float, y: float) -> None:
        self.x.append(x)
        self.y.append(y)

    def cut(self, x: float) -> None:
        """Drop the points past `x` (a rewind went back there)."""
        n = len(self.x)
        while n and self.x[n - 1] > x:
            n -= 1
        del self.x[n:], self.y[n:]

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Checkpoint:
    """A good checkpoint file the run wrote: what RestoreCheckpoint calls it, its step, the lr then."""

    which: str  # last, best, epoch N
    step: int
    path: str
    lr: float


class LodSeries:
    """One value of the training points (loss, or accuracy in %) against step, read from the
    run's Lod when asked: its newest points in full, older ones as their buckets' means."""

    def __init__(self, lod: Lod, value: str):
        self.lod, self.value = lod, value

    @property
    def x(self) -> list:
        return self.lod.column("step")

    @property
    def y(self) -> list:
        return self.lod.column(self.value)

    def __len__(self) -> int:
        return len(self.lod)

    def __eq__(self, other) -> bool:
        return repr(self) == repr(other)

    __hash__ = None

    def __repr__(self) -> str:
        return f"Series(x={self.x!r}, y={self.y!r})"


class Curves:
    """The run's points, as its plots draw them: the training rows (engine.lod.TrainFold: loss,
    accuracy, samples seen and the clock by step, at bounded memory), and the test rows by the
    mode they were evaluated in. One history: `cut(step)` drops what a rewind or a resume left behind."""

    def __init__(self):
        self.train = TrainFold()
        self.test_loss = Series()
        self.test_acc = Series()
        self.test_loss_train = Series()  # the test set evaluated in train mode (run.eval_mode)
        self.test_acc_train = Series()
        self.tests: dict[str, list[E.EpochEnd]] = {"eval": [], "train": []}  # the test rows, by mode
        self._best: dict[str, E.EpochEnd | None] = {"eval": None, "train": None}

    @property
    def train_loss(self) -> LodSeries:
        return LodSeries(self.train.lod, "loss")

    @property
    def train_acc(self) -> LodSeries:
        return LodSeries(self.train.lod, "acc")

    @property
    def has_train(self) -> bool:
        return len(self.train.lod) > 0

    def add_train(self, ev: E.StepMetrics) -> None:
        self.train.add_row(ev)

    def _test_series(self, mode: str) -> tuple[Series, Series]:
        return (self.test_loss_train, self.test_acc_train) if mode == "train" else (self.test_loss, self.test_acc)

    def add_test(self, ev: E.EpochEnd) -> None:
        mode = "train" if ev.mode == "train" else "eval"
        self.tests[mode].append(ev)
        loss, acc = self._test_series(mode)
        loss.add(ev.step, ev.test_loss)
        acc.add(ev.step, 100.0 * ev.test_accuracy)
        best = self._best[mode]
        if math.isfinite(ev.test_error_pct) and (best is None or ev.test_error_pct < best.test_error_pct):
            self._best[mode] = ev

    def cut(self, step: int) -> None:
        self.train.cut(step)
        for mode, rows in self.tests.items():
            rows[:] = [e for e in rows if e.step <= step]
            for series in self._test_series(mode):
                series.cut(step)
            finite = [e for e in rows if math.isfinite(e.test_error_pct)]
            self._best[mode] = min(finite, key=lambda e: e.test_error_pct) if finite else None

    @property
    def last_loss(self) -> float:
        return self.train.lod.last("loss")

    @property
    def last_accuracy(self) -> float:
        return self.train.lod.last("acc") / 100.0

    @property
    def samples_seen(self) -> int:
        return int(self.train.lod.last("samples")) if self.has_train else 0

    def final_test(self, mode: str = "eval") -> E.EpochEnd | None:
        rows = self.tests[mode]
        return rows[-1] if rows else None

    def best_test(self, mode: str = "eval") -> E.EpochEnd | None:
        """The test row with the lowest error in `mode` (the first of equals), kept as rows come."""
        return self._best[mode]

    def test_error(self, mode: str = "eval") -> float:
        last = self.final_test(mode)
        return last.test_error_pct if last else math.nan


LR_CHANGE = re.compile(r"^(?P<command>\w+): lr (?P<old>\S+) -> (?P<new>\S+)$")
CHECKPOINT = re.compile(r"^checkpoint saved \((?P<kind>\w+)\): (?P<path>.+)$")


class EventLog(list):
    """The run's log lines, (style, text), as the events tell them; a line that repeats the one
    before it is merged into it: learning-rate changes in a row into one (`ScaleLearningRate: lr
    0.1 -> 409.6 (12 changes)`), the checkpoint files of one save into one line, the same words again into
    one line with its count. `merges` counts the rewrites of the last line (a dashboard redraws);
    only the newest LOG_KEEP to 2 * LOG_KEEP lines are kept, `count` says how many ever came."""

    def __init__(self):
        super().__init__()
        self.merges = 0
        self.count = 0  # lines ever added (not merged): the dashboard writes the ones it has not
        self._last: dict = {}  # what the last line says, to merge the next one into it

    def add(self, style: str, stamp: str, text: str, step: int | None = None) -> None:
        last, merged = self._last, None
        lr, ckpt = LR_CHANGE.match(text), CHECKPOINT.match(text)
        if lr and last.get("lr") is not None and last.get("command") == lr["command"]:
            merged = dict(last, n=last["n"] + 1)  # "changes", not "x12": a count, not a factor
            words = f"{lr['command']}: lr {last['lr']} -> {lr['new']} ({merged['n']} changes)"
        elif ckpt and last.get("kinds") and last.get("step") == step:
            name = Path(ckpt["path"]).name  # the stop's save after the epoch's: once each
            kinds = last["kinds"] + [ckpt["kind"]] * (ckpt["kind"] not in last["kinds"])
            paths = last["paths"] + [name] * (name not in last["paths"])
            merged = dict(last, kinds=kinds, paths=paths)
            words = f"checkpoint saved ({', '.join(kinds)}): {', '.join([last['first'], *paths[1:]])}"
        elif text == last.get("shown"):
            merged = dict(last, n=last["n"] + 1)
            words = f"{text} (x{merged['n']})"
        if merged is not None and self:
            self[-1] = (style, f"{stamp}  {words}")
            self._last = dict(merged, shown=merged.get("shown") if words.startswith(text) else words)
            self.merges += 1
            return
        self.append((style, f"{stamp}  {text}"))
        self.count += 1
        if len(self) > 2 * LOG_KEEP:  # the newest LOG_KEEP to 2 * LOG_KEEP lines: bounded memory
            del self[:-LOG_KEEP]
        # `shown`: the words the last line says (a repeat of them merges); `lr`, `command`: the
        # change a run of the same lr command started from; `kinds`, `paths`: one save's files
        self._last = dict(shown=text, n=1, step=step, lr=lr["old"] if lr else None, command=lr and lr["command"])
        if ckpt:
            self._last.update(kinds=[ckpt["kind"]], paths=[Path(ckpt["path"]).name], first=ckpt["path"])


class RunView:
    """The run as the engine reported it. Only `apply` changes it."""

    def __init__(self, preset: str = "", batch_size: int = 0):
        self.preset = preset
        self.batch_size = batch_size
        self.device = ""
        self.model = ""
        self.parameters = 0
        self.epochs = 0
        self.steps_per_epoch = 0
        self.max_steps = 0
        self.has_features: bool | None = None  # None until RunStarted arrived
        self.freeze_modules: tuple = ()  # what the freeze key acts on; empty: the features
        self.optimizer_choices: tuple = ()
        self.run_dir = ""
        self.state = RunState.STARTING
        self.reason = ""
        self.optimizer = ""
        self.optimizer_params = ""
        self.lr = 0.0
        self.frozen = False
        self.mode = "train"
        self.eval_mode = "eval"  # how the engine evaluates the test set: eval, train or both
        self.lr_schedule = ""  # the [schedule] lr that sets the lr now ("" when constant or set by hand)
        self.clipped = math.nan  # optimizer.clip_grad_norm: the last interval's share of clipped steps
        self.epoch = 0
        self.step = 0
        self.time_s = 0.0  # the engine clock at the latest event
        self.samples_per_s = 0.0
        self.gpu_memory_mb = 0.0  # allocated now; reserved now; peak of the last interval
        self.gpu_reserved_mb = 0.0
        self.gpu_peak_mb = 0.0
        self.curves = Curves()  # the points the plots draw: one history
        self.layers: E.LayerStats | None = None  # the latest per-layer statistics
        self.layers_version = 0
        self.markers: list[tuple[int, str]] = []  # (step, kind)
        self.timing: E.TimingResult | None = None
        self.timing_progress = (0, 0)  # (done, total) of the timing under way
        self.state_before_timing = RunState.RUNNING
        self.checkpoints: dict[str, Checkpoint] = {}  # path -> the good checkpoints to go back to
        self.error: E.RunError | None = None
        self.system: E.SystemStats | None = None  # the machine's latest reading
        self.log = EventLog()  # (style, text)
        self.points_version = 0  # bumped whenever a plotted series or marker changes
        self.finished = False

    # ---- folding events -----------------------------------------------------------------

    def apply(self, ev: E.Event) -> None:
        self.time_s = max(self.time_s, ev.time_s)
        handler = self.HANDLERS.get(type(ev))
        if handler is not None:
            handler(self, ev)

    def note(self, text: str, style: str = "yellow") -> None:
        """A line from the dashboard itself (e.g. why a key cannot act), not from the engine."""
        self.log.add(style, " " * 8, text)

    def _log(self, style: str, ev: E.Event, text: str) -> None:
        self.log.add(style, f"{ev.time_s:7.1f}s e{ev.epoch} s{ev.step}", text, ev.step)

    def _on_RunStarted(self, ev: E.RunStarted) -> None:
        self.preset = ev.preset or self.preset
        self.device, self.model, self.parameters = ev.device, ev.model, ev.parameters
        self.epochs, self.steps_per_epoch, self.max_steps = ev.epochs, ev.steps_per_epoch, ev.max_steps
        self.has_features = ev.has_features
        self.freeze_modules = tuple(ev.freeze_modules)
        self.optimizer_choices = tuple(ev.optimizer_choices)
        self.run_dir = ev.run_dir
        self.epoch, self.step = ev.epoch, ev.step
        self.finished = False  # a resume goes on from a run that had ended
        if ev.resumed:  # from its checkpoint: what a killed process logged past it is not the history
            self._cut(ev.step)
        self._log(
            "dim",
            ev,
            f"{'resumed' if ev.resumed else 'started'} {ev.model} ({ev.parameters:,} parameters) on {ev.device}",
        )

    def _on_Loading(self, ev: E.Loading) -> None:
        self.state, self.reason = RunState.STARTING, ev.stage
        self._log("dim", ev, ev.stage)

    def _on_TimingProgress(self, ev: E.TimingProgress) -> None:
        self.timing_progress = (ev.done, ev.total)

    def _on_StateChanged(self, ev: E.StateChanged) -> None:
        state = RunState.of(ev.state)
        if state == RunState.TIMING and self.state != RunState.TIMING:
            self.state_before_timing = self.state
        self.state, self.reason = state, ev.reason
        self.optimizer, self.optimizer_params = ev.optimizer, ev.optimizer_params
        self.lr, self.frozen, self.mode = ev.lr, ev.frozen, ev.mode
        self.eval_mode, self.lr_schedule = ev.eval_mode, ev.lr_schedule
        self.epoch, self.step = ev.epoch, ev.step

    def _on_StepMetrics(self, ev: E.StepMetrics) -> None:
        self._row_settings(ev)
        self.curves.add_train(ev)
        self.points_version += 1

    def _row_settings(self, ev: E.StepMetrics) -> None:
        self.epoch, self.step = ev.epoch, ev.step
        self.samples_per_s, self.gpu_memory_mb = ev.samples_per_s, ev.gpu_memory_mb
        self.gpu_reserved_mb, self.gpu_peak_mb = ev.gpu_reserved_mb, ev.gpu_peak_mb
        self.lr, self.optimizer, self.frozen, self.mode = ev.lr, ev.optimizer, ev.frozen, ev.mode
        self.clipped = ev.clipped

    def _on_Digest(self, ev: E.Digest) -> None:
        """The training rows up to here as their fold (a long run's history, engine.replay)."""
        try:
            self.curves.train.load(ev.train)
            row = E.from_json({**ev.last, "type": "StepMetrics"}) if ev.last else None
        except (KeyError, TypeError, ValueError, AttributeError):
            return  # not a digest this version can read: the live rows still come
        if isinstance(row, E.StepMetrics):
            self._row_settings(row)
        self.points_version += 1

    def _on_EpochEnd(self, ev: E.EpochEnd) -> None:
        self.curves.add_test(ev)
        self.points_version += 1
        how = " (train mode)" if ev.mode == "train" else ""
        self._log("", ev, f"epoch {ev.epoch}: test loss {ev.test_loss:.4f}, test error {ev.test_error_pct:.2f}%{how}")

    def _on_LayerStats(self, ev: E.LayerStats) -> None:
        self.layers = ev
        self.layers_version += 1

    def _on_CommandApplied(self, ev: E.CommandApplied) -> None:
        kind = MARKER_KINDS.get(ev.command)
        if kind:
            self.markers.append((ev.step, kind))
            self.points_version += 1
        self._log("green", ev, f"{ev.command}: {ev.detail}")

    def _on_CommandRejected(self, ev: E.CommandRejected) -> None:
        self._log("yellow", ev, f"{ev.command} rejected: {ev.reason}")

    def _on_ScheduleAction(self, ev: E.ScheduleAction) -> None:
        self.markers.append((ev.step, "lr" if ev.action == "lr" else "freeze"))  # drawn as the user's lr change is
        self.points_version += 1
        self._log("cyan", ev, f"schedule: {ev.detail}")

    def _on_TimingResult(self, ev: E.TimingResult) -> None:
        self.timing = ev
        self._log("", ev, f"timing on {ev.device}: loop/batch = {ev.ratio:.1f}")

    def _on_Warning(self, ev: E.Warning) -> None:
        self._log("bold yellow", ev, f"warning: {ev.message}")

    def _on_NonFiniteLoss(self, ev: E.NonFiniteLoss) -> None:
        self.markers.append((ev.step, "nan"))  # where the loss turned non-finite
        self.points_version += 1
        self._log("bold yellow", ev, f"warning: {ev.message}")

    def _on_Note(self, ev: E.Note) -> None:
        self._log("dim", ev, ev.detail)

    def _on_Rewound(self, ev: E.Rewound) -> None:
        self._cut(ev.step)
        self._log("cyan", ev, f"rewound to {ev.path} (step {ev.from_step} -> {ev.step}); the plots go back with it")

    def _cut(self, step: int) -> None:
        """One history: the points, markers and checkpoints past `step` were on a branch that was left."""
        self.curves.cut(step)
        self.markers = [m for m in self.markers if m[0] <= step]
        self.checkpoints = {p: c for p, c in self.checkpoints.items() if c.step <= step}
        self.points_version += 1

    def _on_CheckpointSaved(self, ev: E.CheckpointSaved) -> None:
        if ev.kind in CHECKPOINT_KINDS:
            which = ev.kind
            if ev.kind == "epoch":
                digits = "".join(c for c in Path(ev.path).stem if c.isdigit())
                which = f"epoch {int(digits)}" if digits else "last"
            self.checkpoints[ev.path] = Checkpoint(which, ev.step, ev.path, self.lr)
        self._log("" if ev.kind != "nonfinite" else "yellow", ev, f"checkpoint saved ({ev.kind}): {ev.path}")

    def _on_RunError(self, ev: E.RunError) -> None:
        self.error = ev
        self._log("bold red", ev, f"error: {ev.message}" + (f"; fix: {ev.fix}" if ev.fix else ""))

    def _on_SystemStats(self, ev: E.SystemStats) -> None:
        self.system = ev

    def _on_Finished(self, ev: E.Finished) -> None:
        self.finished = True
        self.state = RunState.of(ev.state)
        self.reason = ev.reason
        self._log(
            "bold", ev, f"run {ev.state}" + (f" ({ev.reason})" if ev.reason else "") + f"; run directory {ev.run_dir}"
        )

    HANDLERS = {
        E.RunStarted: _on_RunStarted,
        E.StateChanged: _on_StateChanged,
        E.StepMetrics: _on_StepMetrics,
        E.Digest: _on_Digest,
        E.EpochEnd: _on_EpochEnd,
        E.LayerStats: _on_LayerStats,
        E.CommandApplied: _on_CommandApplied,
        E.CommandRejected: _on_CommandRejected,
        E.ScheduleAction: _on_ScheduleAction,
        E.TimingResult: _on_TimingResult,
        E.TimingProgress: _on_TimingProgress,
        E.Loading: _on_Loading,
        E.Warning: _on_Warning,
        E.NonFiniteLoss: _on_NonFiniteLoss,
        E.Note: _on_Note,
        E.Rewound: _on_Rewound,
        E.CheckpointSaved: _on_CheckpointSaved,
        E.RunError: _on_RunError,
        E.SystemStats: _on_SystemStats,
        E.Finished: _on_Finished,
    }

    # ---- derived numbers ----------------------------------------------------------------

    @property
    def best_test(self) -> tuple[float, int] | None:
        """(lowest test error %, its epoch): of the eval-mode rows; of a run tested in train mode
        only (run.eval_mode = "train"), of those, as its best.pt is chosen."""
        best = self.curves.best_test("eval") or self.curves.best_test("train")
        return (best.test_error_pct, best.epoch) if best else None

    def rewind_target(self) -> Checkpoint | None:
        """The newest good checkpoint (last, epoch N or best) to go back to after a non-finite loss;
        of files at one step, last.pt (what the user saved), then the epoch's, then best.pt."""
        rank = {"last": 2, "best": 0}
        return max(self.checkpoints.values(), key=lambda c: (c.step, rank.get(c.which, 1)), default=None)

    @property
    def average_samples_per_s(self) -> float:
        """Samples per second of training time over the whole run (pauses, timings left out)."""
        train = self.curves.train
        return train.trained_samples / train.trained_s if train.trained_s > 0 else 0.0

    @property
    def total_steps(self) -> int:
        total = self.epochs * self.steps_per_epoch
        if self.max_steps:
            total = min(total, self.max_steps) if total else self.max_steps
        return total

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    def eta_s(self) -> float | None:
        """Seconds of training left at the recent pace (steps per training second: a pause or a
        timing does not slow it), or None when unknown."""
        times = self.curves.train.step_times
        if len(times) < 2 or self.finished:
            return None
        (s0, t0), (s1, t1) = times[0], times[-1]
        if s1 <= s0 or t1 <= t0:
            return None
        return max(0, self.total_steps - self.step) * (t1 - t0) / (s1 - s0)


def fmt_count(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e3:
        return f"{n / 1e3:.0f}k"
    return str(n)


def fmt_number(v: float, digits: int = 4) -> str:
    """A figure that fits a panel or a column: 0.3512, 1.234e+26, nan."""
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}f}" if abs(v) < 10**4 else f"{v:.3e}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
