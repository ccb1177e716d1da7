"""What the dashboard knows about a run, built only from the engine's events (no Textual here).

`RunView.apply(event)` folds one event into plain Python state: the series to plot, the markers,
the latest state the engine reported, the log lines. The dashboard reads it to draw; nothing here
talks back to the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from deeptui.engine import events as E

EMA_ALPHA = 0.1  # weight of the newest point in the smoothed training loss

# Commands whose application is drawn as a vertical marker on the loss plot.
MARKER_KINDS = {
    "SwitchOptimizer": "optimizer",
    "SetFrozen": "freeze",
    "SetMode": "mode",
    "SetLearningRate": "lr",
    "ScaleLearningRate": "lr",
    "RestoreCheckpoint": "restore",
}


@dataclass
class Series:
    """x/y points in arrival order; y may hold non-finite values (they are not drawn)."""

    x: list = field(default_factory=list)
    y: list = field(default_factory=list)

    def add(self, x: float, y: float) -> None:
        self.x.append(x)
        self.y.append(y)

    def __len__(self) -> int:
        return len(self.x)


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
        self.state = "starting"
        self.reason = ""
        self.optimizer = ""
        self.optimizer_params = ""
        self.lr = 0.0
        self.frozen = False
        self.mode = "train"
        self.eval_mode = "eval"  # how the engine evaluates the test set: eval, train or both
        self.epoch = 0
        self.step = 0
        self.time_s = 0.0  # the engine clock at the latest event
        self.samples_per_s = 0.0
        self.gpu_memory_mb = 0.0  # allocated now; reserved now; peak of the last interval
        self.gpu_reserved_mb = 0.0
        self.gpu_peak_mb = 0.0
        self.last_loss = math.nan
        self.last_accuracy = math.nan
        self.train_loss = Series()
        self.train_loss_ema = Series()
        self.train_acc = Series()
        self.test_loss = Series()
        self.test_acc = Series()
        self.test_error_pct = math.nan
        self.best_test: tuple[float, int] | None = None  # (lowest test error %, its epoch)
        self.samples_seen = 0
        self.test_loss_train = Series()  # the test set evaluated in train mode (run.eval_mode)
        self.test_acc_train = Series()
        self.test_error_train_pct = math.nan
        self.layers: E.LayerStats | None = None  # the latest per-layer statistics
        self.layers_version = 0
        self._ema: float | None = None
        self._step_times: list[tuple[int, float]] = []  # (step, time_s) of recent StepMetrics
        self.markers: list[tuple[int, str]] = []  # (step, kind)
        self.timing: E.TimingResult | None = None
        self.timing_progress = (0, 0)  # (done, total) of the timing under way
        self.state_before_timing = "running"
        # kind (last, best, epoch) -> (step, path, lr then): the good checkpoints to go back to
        self.checkpoints: dict[str, tuple[int, str, float]] = {}
        self.error: E.RunError | None = None
        self.system: E.SystemStats | None = None  # the machine's latest reading
        self.log: list[tuple[str, str]] = []  # (style, text)
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
        self.log.append((style, f"{'':>7}   {text}"))

    def _log(self, style: str, ev: E.Event, text: str) -> None:
        self.log.append((style, f"{ev.time_s:7.1f}s e{ev.epoch} s{ev.step}  {text}"))

    def _on_RunStarted(self, ev: E.RunStarted) -> None:
        self.preset = ev.preset or self.preset
        self.device, self.model, self.parameters = ev.device, ev.model, ev.parameters
        self.epochs, self.steps_per_epoch, self.max_steps = ev.epochs, ev.steps_per_epoch, ev.max_steps
        self.has_features = ev.has_features
        self.freeze_modules = tuple(ev.freeze_modules)
        self.optimizer_choices = tuple(ev.optimizer_choices)
        self.run_dir = ev.run_dir
        self.epoch, self.step = ev.epoch, ev.step
        self._log(
            "dim",
            ev,
            f"{'resumed' if ev.resumed else 'started'} {ev.model} ({ev.parameters:,} parameters) on {ev.device}",
        )

    def _on_Loading(self, ev: E.Loading) -> None:
        self.state, self.reason = "starting", ev.stage
        self._log("dim", ev, ev.stage)

    def _on_TimingProgress(self, ev: E.TimingProgress) -> None:
        self.timing_progress = (ev.done, ev.total)

    def _on_StateChanged(self, ev: E.StateChanged) -> None:
        if ev.state == "timing" and self.state != "timing":
            self.state_before_timing = self.state
        self.state, self.reason = ev.state, ev.reason
        self.optimizer, self.optimizer_params = ev.optimizer, ev.optimizer_params
        self.lr, self.frozen, self.mode = ev.lr, ev.frozen, ev.mode
        self.eval_mode = ev.eval_mode
        self.epoch, self.step = ev.epoch, ev.step

    def _on_StepMetrics(self, ev: E.StepMetrics) -> None:
        self.epoch, self.step = ev.epoch, ev.step
        self.last_loss, self.last_accuracy = ev.loss, ev.accuracy
        self.samples_per_s, self.gpu_memory_mb = ev.samples_per_s, ev.gpu_memory_mb
        self.gpu_reserved_mb, self.gpu_peak_mb = ev.gpu_reserved_mb, ev.gpu_peak_mb
        self.lr, self.optimizer, self.frozen, self.mode = ev.lr, ev.optimizer, ev.frozen, ev.mode
        self.train_loss.add(ev.step, ev.loss)
        if math.isfinite(ev.loss):
            self._ema = ev.loss if self._ema is None else (1 - EMA_ALPHA) * self._ema + EMA_ALPHA * ev.loss
            self.train_loss_ema.add(ev.step, self._ema)
        self.train_acc.add(ev.step, 100.0 * ev.accuracy)
        self.samples_seen = ev.samples_seen
        self._step_times.append((ev.step, ev.time_s))
        del self._step_times[:-6]
        self.points_version += 1

    def _on_EpochEnd(self, ev: E.EpochEnd) -> None:
        if ev.mode == "train":
            self.test_loss_train.add(ev.step, ev.test_loss)
            self.test_acc_train.add(ev.step, 100.0 * ev.test_accuracy)
            self.test_error_train_pct = ev.test_error_pct
        else:
            self.test_loss.add(ev.step, ev.test_loss)
            self.test_acc.add(ev.step, 100.0 * ev.test_accuracy)
            self.test_error_pct = ev.test_error_pct
        if ev.mode != "train":
            if math.isfinite(ev.test_error_pct) and (self.best_test is None or ev.test_error_pct < self.best_test[0]):
                self.best_test = (ev.test_error_pct, ev.epoch)
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
        self.markers.append((ev.step, "freeze"))
        self.points_version += 1
        self._log("cyan", ev, f"schedule: {ev.detail}")

    def _on_TimingResult(self, ev: E.TimingResult) -> None:
        self.timing = ev
        self._log("", ev, f"timing on {ev.device}: loop/batch = {ev.ratio:.1f}")

    def _on_Warning(self, ev: E.Warning | E.NonFiniteLoss) -> None:
        self._log("bold yellow", ev, f"warning: {ev.message}")

    def _on_CheckpointSaved(self, ev: E.CheckpointSaved) -> None:
        if ev.kind != "nonfinite":
            self.checkpoints[ev.kind] = (ev.step, ev.path, self.lr)
        self._log("" if ev.kind != "nonfinite" else "yellow", ev, f"checkpoint saved ({ev.kind}): {ev.path}")

    def _on_RunError(self, ev: E.RunError) -> None:
        self.error = ev
        self._log("bold red", ev, f"error: {ev.message}" + (f"; fix: {ev.fix}" if ev.fix else ""))

    def _on_SystemStats(self, ev: E.SystemStats) -> None:
        self.system = ev

    def _on_Finished(self, ev: E.Finished) -> None:
        self.finished = True
        self.state = ev.state
        self.reason = ev.reason
        self._log(
            "bold", ev, f"run {ev.state}" + (f" ({ev.reason})" if ev.reason else "") + f"; run directory {ev.run_dir}"
        )

    HANDLERS = {
        E.RunStarted: _on_RunStarted,
        E.StateChanged: _on_StateChanged,
        E.StepMetrics: _on_StepMetrics,
        E.EpochEnd: _on_EpochEnd,
        E.LayerStats: _on_LayerStats,
        E.CommandApplied: _on_CommandApplied,
        E.CommandRejected: _on_CommandRejected,
        E.ScheduleAction: _on_ScheduleAction,
        E.TimingResult: _on_TimingResult,
        E.TimingProgress: _on_TimingProgress,
        E.Loading: _on_Loading,
        E.Warning: _on_Warning,
        E.NonFiniteLoss: _on_Warning,
        E.CheckpointSaved: _on_CheckpointSaved,
        E.RunError: _on_RunError,
        E.SystemStats: _on_SystemStats,
        E.Finished: _on_Finished,
    }

    # ---- derived numbers ----------------------------------------------------------------

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
        """Seconds left at the recent pace (steps per engine second), or None when unknown."""
        if len(self._step_times) < 2 or self.finished:
            return None
        (s0, t0), (s1, t1) = self._step_times[0], self._step_times[-1]
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
