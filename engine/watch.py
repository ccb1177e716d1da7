"""WatchedRun: a training loop of the user's own (deeptui.watch), watched and steered. It is the
run's surface (engine.surface.Run) over that loop: `step()` logs the loss (kept on the device,
read back once per logging interval) and applies the commands that came in since the last step,
through the engine's own handlers (engine.control), with the same events, run directory and
control socket as the engine's runs; so ls, show, attach, export and `deeptui send` serve it."""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import queue
import signal
import sys
import threading
from pathlib import Path

import torch

from . import checkpoint, control, notify, outcome, system, tensorboard
from . import commands as C
from . import events as E
from .clock import RunClock
from .config import OPTIMIZERS, Config, from_table, safe_name
from .device import device_label
from .errors import RemoteError
from .layers import LayerProbe
from .metrics import IntervalSums, Reporter, gpu_memory
from .outcome import RunFailure
from .runlog import ENV_INTERACTIVE, ENV_RUN_DIR, RunLock, new_run_dir, write_config
from .state import RunState, TrainState
from .steer import OwnTrainer, as_float
from .surface import Refused


class Terminated(SystemExit):
    """SIGTERM in a watched script: unwinds the script as Ctrl+C would (its finally blocks run,
    the run ends stopped with its checkpoint), and the process exits 143 without a traceback."""

    def __init__(self):
        super().__init__(128 + signal.SIGTERM)


class ScriptEnd:
    """How a watched script's end reaches its run while the run lives: `close` at exit (a script
    that never closed it), an uncaught exception (sys.excepthook: the run failed), and SIGTERM
    (kill, timeout, a scheduler's preemption), which ends the script as Ctrl+C does (Terminated:
    the run stopped with its checkpoint and end record, exit 143); only when the script left
    SIGTERM at its default."""

    def __init__(self, close):
        self.close, self.uncaught = close, None  # uncaught: what a close at exit ends the run with
        self._excepthook = sys.excepthook
        sys.excepthook = self._seen
        self._sigterm = None
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            self._sigterm = signal.signal(signal.SIGTERM, self._terminated)
        atexit.register(close)

    def _seen(self, kind, value, tb) -> None:
        self.uncaught = value
        self._excepthook(kind, value, tb)

    def _terminated(self, signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        self.uncaught = Terminated()
        raise self.uncaught

    def release(self) -> None:
        """The run has ended: the script's own hooks and handlers again."""
        if sys.excepthook == self._seen:
            sys.excepthook = self._excepthook
        if self._sigterm is not None:
            with contextlib.suppress(ValueError):  # not the main thread: the handler stays, harmless
                signal.signal(signal.SIGTERM, self._sigterm)
                self._sigterm = None
        atexit.unregister(self.close)


class WatchedRun:
    """One run of the user's loop: made (run directory, socket, first events) when it is built,
    ended by `close()` (or the `with` block's end, or the interpreter's)."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        name: str = "watched",
        freeze=(),
        optimizers: dict | None = None,
        log_every: int = 50,
        epochs: int = 0,
        steps_per_epoch: int = 0,
        log_dir: str | Path | None = None,
        on_nan: str = "auto",
        notify_command: str = "",
    ):
        self.clock = RunClock()
        self.commands: queue.Queue = queue.Queue()
        self.trainer = OwnTrainer(model, optimizer, freeze, optimizers, on_change=self.emit_state, on_warning=self.warn)
        self.device = _device(model)
        self.cfg = watched_config(self.trainer, self.device, name, log_every, epochs, log_dir, on_nan, notify_command)
        self.dist, self.is_main = None, True
        given = os.environ.pop(ENV_RUN_DIR, "")  # the first watch() of a script under `deeptui run` only
        self.interactive = bool(given) and os.environ.get(ENV_INTERACTIVE) == "1"
        self.run_dir = (Path(given) if given else new_run_dir(self.cfg.log.dir, self.cfg.run.name)).resolve()
        self.lock = RunLock(self.run_dir)
        try:
            write_config(self.run_dir, self.cfg.to_dict())
            self.report = Reporter(tensorboard.run_log(self.run_dir, self.cfg), E.EventBuffer(), self.position)
        except BaseException:
            self.lock.release()
            raise
        self.state = RunState.STARTING
        self.stopping, self.stop_reason, self.save_on_stop = False, "", True
        self.final_state = ""
        self.checkpoints = checkpoint.CheckpointFiles(self.run_dir, self.cfg.log.keep_checkpoints)
        self.checkpointer = None  # save(run, epoch, best) -> paths, instead of deeptui's files (Lightning's own)
        self.meter = Meter(self, model, int(epochs), int(steps_per_epoch))
        self.system = system.monitor_for(self)
        self.notifier = notify.Notifier(self)
        self.server = None
        self.ending: ScriptEnd | None = None
        self._start(announce_on_stderr=not given)

    def _start(self, announce_on_stderr: bool) -> None:
        from .remote.server import ControlServer

        announce(self)
        try:
            self.server = ControlServer(self).start()
        except RemoteError as e:
            self.report.emit(E.Warning, message=f"{e}; the run goes on without 'deeptui attach'")
        self.system.start()
        self.set_state(RunState.RUNNING)
        self.clock.release()
        self.ending = ScriptEnd(self.close)
        if announce_on_stderr:
            print(f"deeptui: watching {self.cfg.run.name}: deeptui attach {self.run_dir}", file=sys.stderr)

    # ---- what the loop calls -------------------------------------------------------------

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer in force: the loop's own, or the one a switch made."""
        return self.trainer.optimizer

    def step(self, loss, batch_size: int | None = None, correct=None) -> bool:
        """After the loop's optimizer step: log `loss` (its mean over `batch_size` samples; a
        tensor stays on the device until the interval's one readback) and, when given, `correct`
        (how many it predicted right), then apply the commands that came in (a pause waits here
        until resumed). False once a stop was asked for: the loop should end."""
        if self.final_state:
            return False
        if correct is not None and not batch_size:  # else 3 right of "1" logs 300% accuracy
            raise ValueError("run.step(loss, correct=...) needs batch_size=: the number of samples `correct` counts in")
        try:
            self.meter.step(loss, int(batch_size) if batch_size else 1, correct)
            self._boundary()
            if not self.stopping:
                self.meter.arm_probe(self.train.step + 1)
        except RunFailure as exc:  # a non-finite loss under run.on_nan = "stop"
            self._end(RunState.FAILED, outcome.report_error(self, exc))
            return False
        return not self.stopping

    def test(self, loss, accuracy=None) -> bool:
        """The loop's evaluation on its test set: its mean loss and, when given, its accuracy (a
        fraction). It ends an epoch, unless steps_per_epoch counts them; commands apply here too."""
        if self.final_state:
            return False
        try:
            self.meter.test(as_float(loss), as_float(accuracy) if accuracy is not None else None)
            self.report.log.flush()
            self._boundary(training=False)
        except RunFailure as exc:
            self._end(RunState.FAILED, outcome.report_error(self, exc))
            return False
        return not self.stopping

    def close(self, exc: BaseException | None = None) -> str:
        """End the run: finished (or stopped, when a stop was asked; after Ctrl+C), or failed with
        `exc`; the final checkpoint, the logs closed, the socket's clients told. The final state."""
        if self.final_state:
            return self.final_state
        if self.ending is not None:
            exc = exc if exc is not None else self.ending.uncaught
            self.ending.release()  # a SIGTERM while the run ends ends the process at once
        if exc is not None and not isinstance(exc, (KeyboardInterrupt, Terminated)):
            return self._end(RunState.FAILED, outcome.report_error(self, exc))
        state, reason = (RunState.STOPPED, self.stop_reason) if self.stopping else (RunState.FINISHED, "")
        if isinstance(exc, KeyboardInterrupt):
            state, reason, self.save_on_stop = RunState.STOPPED, "interrupted (KeyboardInterrupt)", True
        elif isinstance(exc, Terminated):
            state, reason, self.save_on_stop = RunState.STOPPED, "stopped by SIGTERM", True
        try:
            self.meter.readback()  # the interval under way
        except RunFailure as e:
            state, reason = RunState.FAILED, outcome.report_error(self, e)
        return self._end(state, reason)

    def __enter__(self) -> WatchedRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close(exc)
        return False

    # ---- reading (engine.surface.Run; and what the control socket serves) -----------------

    @property
    def events(self) -> E.EventBuffer:
        return self.report.events

    @property
    def train(self) -> TrainState:
        return self.trainer.train

    @property
    def alive(self) -> bool:
        return not self.final_state

    def now(self) -> float:
        return self.clock.now()

    def position(self) -> tuple[float, int, int]:
        """(run clock, 1-based epoch, step): between two epochs, the one that ended."""
        t, epochs = self.train, self.meter.epochs
        epoch = t.epoch + 1 if t.batch_in_epoch else max(1, t.epoch)
        return self.now(), min(epoch, epochs) if epochs else epoch, t.step

    def state_dict(self) -> dict:
        st = self.trainer.state_dict()
        return {**st, "train": {**st["train"], **self.clock.state_dict()}}

    def commands_waiting(self) -> bool:
        return not self.commands.empty()

    def send(self, command: C.Command) -> int:
        """Queue a command (the control socket's clients, a test); applied at the next step."""
        self.commands.put(command)
        return command.id

    # ---- verbs (engine.surface.Run) --------------------------------------------------------

    def set_state(self, state: RunState, reason: str = "") -> None:
        self.state = state
        self.report.emit(E.StateChanged, **self._state_fields(state, reason))

    def _state_fields(self, state: RunState, reason: str) -> dict:
        t = self.trainer
        return dict(state=state.value, reason=reason, optimizer_params=t.describe_optimizer(), **vars(t.settings()))

    def emit_state(self) -> None:
        self.set_state(self.state)

    def request_stop(self, reason: str, save_checkpoint: bool = True) -> None:
        self.stopping, self.stop_reason, self.save_on_stop = True, reason, save_checkpoint

    def evaluate(self) -> None:
        raise Refused("the loop evaluates its own test set: it calls run.test(loss, accuracy)")

    def save_checkpoint(self, epoch: int | None = None, best: bool = False) -> list[Path]:
        with self.clock.held():
            if self.checkpointer is not None:
                return self.checkpointer.save(self, epoch=epoch, best=best)
            return checkpoint.save_now(self, epoch=epoch, best=best)

    def flush_logs(self) -> None:
        self.report.log.flush()

    def rewind(self, payload: dict, path: Path) -> int:
        from_step = self.train.step
        self.trainer.load_state_dict(payload)
        self.meter.sums.reset()
        orphaned = self.report.log.cut_after(self.train.step)
        self.report.emit(E.Rewound, path=str(path), from_step=from_step, orphaned=orphaned)
        self.emit_state()
        return orphaned

    def notify(self, what: str, reason: str = "") -> None:
        self.notifier.fire(what, reason)

    def warn(self, message: str) -> None:
        self.report.emit(E.Warning, message=message)

    # ---- inside -----------------------------------------------------------------------------

    def _boundary(self, training: bool = True) -> None:
        """Between two of the loop's steps (or after its evaluation): follow what the loop changed
        itself, then apply the commands (while paused, wait here). Neither is training time."""
        self.trainer.follow_loop(training)
        if self.state == RunState.PAUSED or not self.commands.empty():
            with self.clock.held():
                control.between_steps(self, self.commands)

    def _end(self, state: RunState, reason: str) -> str:
        """As the engine's runs end: the final checkpoint, the commands left unanswered rejected,
        the logs closed with StateChanged and Finished last, then the front ends hear them."""
        self.meter.drop_probe()
        self.clock.hold()
        self.system.stop()
        try:
            if state == RunState.FINISHED or (state == RunState.STOPPED and self.save_on_stop):
                self.save_checkpoint()
        except Exception as exc:
            kept = self.checkpoints.find("last")
            reason = outcome.report_error(self, exc) + (f"; the last good checkpoint is {kept}" if kept else "")
            state = RunState.FAILED
        while not self.commands.empty():  # never applied: the run ended first
            cmd = self.commands.get_nowait()
            self.report.emit(
                E.CommandRejected, command_id=cmd.id, command=type(cmd).__name__, reason=f"the run {state}"
            )
        self.notifier.end(state, reason)  # run.notify_command
        self.state, self.final_state = state, state.value
        t, epoch, step = self.position()
        ended = [
            E.StateChanged(round(t, 3), epoch, step, **self._state_fields(state, reason)),
            E.Finished(round(t, 3), epoch, step, state=state.value, run_dir=str(self.run_dir), reason=reason),
        ]
        with contextlib.suppress(OSError):  # a full disk: the front ends still hear the end
            for ev in ended:
                self.report.log.record(ev)
            self.report.log.close()
        self.lock.release()
        for ev in ended:
            self.events.append(ev)
        if self.server is not None:
            self.server.close()
        if self.ending is not None:
            self.ending.release()
        return self.final_state


class Meter:
    """Where the loop is and what its steps measure: steps and epochs counted (an epoch ends
    after steps_per_epoch steps, or at each test), the interval's sums on the device until the
    one readback per interval, and the layer statistics of one step per layers interval (the
    probe's hooks and weight copy go on at one step boundary, its reading comes at the next)."""

    def __init__(self, run: WatchedRun, model: torch.nn.Module, epochs: int, steps_per_epoch: int):
        self.run, self.epochs, self.steps_per_epoch = run, epochs, steps_per_epoch
        self.log_every = run.cfg.log.interval
        self.sums = IntervalSums(run.device, run.clock.trained)
        self.layers = LayerProbe(model, run.cfg.log.layers_interval)
        self._probe = None  # the probe's context around the loop's step under way

    def step(self, loss, n: int, correct) -> None:
        t = self.run.train
        self.sums.add_loss(loss, n, correct)
        t.step += 1
        t.batch_in_epoch += 1
        t.samples_seen += n
        self.read_probe()
        if t.step % self.log_every == 0:
            self.readback()
        if self.steps_per_epoch and t.batch_in_epoch >= self.steps_per_epoch:
            self.readback()
            t.epoch += 1
            t.batch_in_epoch = 0
            self.run.report.log.flush()

    def test(self, loss: float, accuracy: float | None) -> None:
        """An evaluation row (an EpochEnd) for the epoch that ends; a better accuracy, best.pt."""
        run, t = self.run, self.run.train
        self.readback()
        epoch = t.epoch + (1 if t.batch_in_epoch or not self.steps_per_epoch else 0)
        run.report.test(max(1, epoch), loss, math.nan if accuracy is None else accuracy, run.trainer.settings())
        if math.isfinite(loss) and accuracy is not None and accuracy > t.best_accuracy:
            t.best_accuracy, t.best_epoch = accuracy, epoch
            run.save_checkpoint(best=True)
        if not self.steps_per_epoch:
            t.epoch, t.batch_in_epoch = epoch, 0

    def readback(self) -> None:
        """The interval's sums as one logged row: the one host sync per interval."""
        run = self.run
        got = self.sums.read()
        if got is None:
            return
        loss, acc, _, rate = got
        run.trainer.last_loss = loss
        settings, gpu = run.trainer.settings(), gpu_memory(run.device)
        run.report.train(loss, acc, rate, run.train.samples_seen, run.clock.trained(), settings, gpu=gpu)
        if not math.isfinite(loss):
            outcome.on_nonfinite(run, loss)

    def arm_probe(self, step: int) -> None:
        """Watch the loop's step number `step` when it is the last of a layers interval."""
        if self.layers.layers and step % self.layers.interval == 0:
            self._probe = self.layers.watch(step)
            self._probe.__enter__()

    def read_probe(self) -> None:
        """The statistics of the step the probe watched (one readback per layers interval)."""
        if self._probe is None:
            return
        self.drop_probe()
        rows = self.layers.read()
        if rows is not None:
            self.run.report.layers(self.layers.names, rows)

    def drop_probe(self) -> None:
        if self._probe is not None:
            probe, self._probe = self._probe, None
            probe.__exit__(None, None, None)


def announce(run: WatchedRun) -> None:
    """The run's first event: what the loop trains, where, with what choices."""
    t = run.trainer
    run.report.emit(
        E.RunStarted,
        preset=run.cfg.run.name,
        run_dir=str(run.run_dir),
        device=device_label(run.device),
        model=t.model_label(),
        parameters=sum(p.numel() for p in t.model.parameters()),
        epochs=run.meter.epochs,
        steps_per_epoch=run.meter.steps_per_epoch,
        max_steps=0,
        has_features=t.has_features,
        freeze_modules=t.freeze,
        optimizer_choices=t.choices,
    )


def _device(model: torch.nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def watched_config(trainer: OwnTrainer, device, name, log_every, epochs, log_dir, on_nan, notify_command) -> Config:
    """The run's config.toml: what deeptui.watch was given, checked as a preset is."""
    t = trainer.train
    dev = str(device) if device.type in ("cpu", "cuda") else "auto"
    optimizer: dict = {"choices": [c for c in trainer.choices if c in OPTIMIZERS]}
    if t.optimizer in OPTIMIZERS:
        optimizer["name"] = t.optimizer
    if t.base_lr > 0 and math.isfinite(t.base_lr):
        optimizer["lr"] = float(t.base_lr)
    raw = {
        "run": {
            "name": safe_name(str(name)),
            "kind": "watched",
            "device": dev,
            "epochs": max(1, int(epochs or 1)),
            "auto_timing": False,
            "on_nan": on_nan,
            "notify_command": notify_command,
        },
        "model": {"freeze": list(trainer.freeze)},
        "optimizer": optimizer,
        "log": {"dir": str(log_dir or os.environ.get("DEEPTUI_LOG_DIR") or "runs"), "interval": log_every},
    }
    return from_table(raw, "deeptui.watch()")
