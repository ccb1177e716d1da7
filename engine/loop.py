"""The Engine: one training run, in a background thread. Epochs, steps, the freeze schedule and
the boundaries between steps, where commands are applied; everything else is a part it holds.

Commands come in through `engine.commands` (a queue.Queue) and are applied only between steps,
each answered with an event (engine.control). Events go out through `engine.events` (an
EventBuffer) that front ends poll. Nothing else crosses the thread boundary.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from pathlib import Path

import torch

from . import checkpoint, control, distributed, notify, outcome, system, tensorboard
from . import commands as C
from . import events as E
from .config import Config
from .device import activate, device_label
from .layers import LayerProbe
from .metrics import IntervalSums, Reporter, Settings, evaluate, gpu_memory
from .models import freeze_label, has_features, is_frozen, label, set_frozen
from .optim import describe, make_optimizer, set_base_lr
from .runlog import NullLog
from .state import RunState, TrainState
from .step import StepRunner
from .thread import EngineThread


class Engine:
    """One training run. Build it with engine.build (setup errors are raised before anything
    runs), then `start()` its thread, or call `run()` in the current thread."""

    def __init__(
        self,
        cfg: Config,
        *,
        device: torch.device,
        data,
        model: torch.nn.Module,
        run_dir: Path,
        resume: dict | None = None,
        dist_info=None,
        lock=None,
        resume_changes: list[tuple[str, object, object]] = (),
    ):
        self.cfg, self.device, self.data = cfg, device, data
        self.lock = lock  # runlog.RunLock: this process alone writes the run directory
        self.dist = dist_info  # engine.distributed.DistInfo in a data-parallel run, else None
        self.is_main = dist_info is None or dist_info.is_main
        self.model = model.to(device)
        self.run_dir = Path(run_dir)
        self.commands: queue.Queue = queue.Queue()
        # Only rank 0 writes the run directory; the other ranks log to nowhere.
        self.log = tensorboard.run_log(self.run_dir, cfg) if self.is_main else NullLog(self.run_dir)
        self.report = Reporter(self.log, E.EventBuffer(), self.position)
        self.freeze = tuple(cfg.model.freeze)  # what freezing acts on; empty: the features
        self.has_features = has_features(model, self.freeze)
        self.choices = tuple(cfg.optimizer.choices) or (cfg.optimizer.name,)
        self.train = TrainState(optimizer=cfg.optimizer.name, base_lr=cfg.optimizer.lr)
        self.eval_mode = cfg.run.eval_mode  # the test set's mode: eval, train or both (the M key)
        self.log_every, self.max_steps = step_limits(cfg)
        self.state = RunState.STARTING
        self.final_state = ""
        self.interactive = False  # a dashboard watches: on_nan = "auto" pauses instead of stopping
        self.replayed = 0  # the Session surface: a local run has no history from before
        self.stop_requested, self.stop_reason, self.save_on_stop = False, "", True
        self.checkpoints = checkpoint.CheckpointFiles(self.run_dir, cfg.log.keep_checkpoints)
        self.last_loss: float | None = None  # the last interval's training loss (checkpoints check it)
        self.restart_clock(0.0)
        self.thread = EngineThread()  # build_in_thread replaces it with the thread it built in
        if self.has_features and cfg.schedule.freeze_features_epochs > 0:
            set_frozen(self.model, True, self.freeze)
        self.runner = StepRunner(
            self.model, device, cfg.perf, distributed=dist_info is not None, loss_reduction=cfg.optimizer.loss_reduction
        )
        # rank 0 watches the layers (after an all-reduce the gradients are the same on every rank)
        self.layers = LayerProbe(
            self.model, cfg.log.layers_interval if self.is_main else 0, activations=not cfg.perf.compile
        )
        self.optimizer = self.make_optimizer(self.train.optimizer)
        self.sums = IntervalSums(device)
        self.system = system.monitor_for(self)  # the machine's figures, in a thread of their own
        self.notifier = notify.Notifier(self)  # run.notify_command
        self.resumed = resume is not None
        self.resume_changes = list(resume_changes)  # (key, saved, now): applied, and said so at the start
        if resume is not None:
            checkpoint.restore(self, resume)
            checkpoint.apply_changes(self, self.resume_changes)

    # ---- the Session surface (engine.session): thread-safe -------------------------------

    @property
    def events(self) -> E.EventBuffer:
        return self.report.events

    def send(self, command: C.Command) -> int:
        self.commands.put(command)
        return command.id

    def start(self) -> threading.Thread:
        return self.thread.start(self.run)

    def shutdown(self, reason: str = "quit", timeout: float = 30.0) -> bool:
        """Ask the run to stop at the next step boundary and wait; True when the thread ended."""
        self.send(C.Stop(reason=reason))
        self.thread.release()  # never started: it runs, sees the Stop first, and ends "stopped"
        return self.thread.join(timeout)

    def detach(self) -> None:
        """A local run lives in this process: there is nothing to detach from."""

    @property
    def alive(self) -> bool:
        return self.thread.alive

    def wait_finished(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.alive

    # ---- clock, position, settings ------------------------------------------------------

    def restart_clock(self, offset: float) -> None:
        """The run clock reads `offset` now (seconds run before a resume or a restore)."""
        self._t0, self._time_offset = time.monotonic(), offset

    def now(self) -> float:
        return self._time_offset + time.monotonic() - self._t0

    @property
    def epoch_now(self) -> int:
        """The 1-based epoch that events and rows are labelled with; after the last epoch has
        ended (final evaluation, checkpoint, Finished) it stays the last one, not epochs + 1."""
        return min(self.train.epoch + 1, self.cfg.run.epochs)

    def position(self) -> tuple[float, int, int]:
        return self.now(), self.epoch_now, self.train.step

    @property
    def frozen(self) -> bool:
        return is_frozen(self.model, self.freeze)

    def settings(self) -> Settings:
        t = self.train
        return Settings(lr=t.base_lr, optimizer=t.optimizer, frozen=self.frozen, mode=t.mode, eval_mode=self.eval_mode)

    def make_optimizer(self, name: str) -> torch.optim.Optimizer:
        cfg = self.cfg
        perf = cfg.perf
        return make_optimizer(
            name, self.model, cfg.optimizer, self.train.base_lr, self.device.type, perf.fused, perf.foreach
        )

    def describe_optimizer(self) -> str:
        return describe(self.train.optimizer, self.cfg.optimizer, self.optimizer)

    def set_base_lr(self, lr: float) -> None:
        self.train.base_lr = lr
        set_base_lr(self.optimizer, lr)
        self.emit_state()

    def release(self) -> None:
        """The run directory is free again (the run has ended)."""
        if self.lock is not None:
            self.lock.release()

    def request_stop(self, reason: str, save_checkpoint: bool = True) -> None:
        self.stop_requested, self.stop_reason, self.save_on_stop = True, reason, save_checkpoint

    def set_state(self, state: RunState, reason: str = "") -> None:
        if state == RunState.RUNNING and self.state != RunState.RUNNING:
            self.sums.started = time.monotonic()  # pauses do not count against samples/s
        self.state = state
        params = self.describe_optimizer()
        self.report.emit(
            E.StateChanged, state=state.value, reason=reason, optimizer_params=params, **vars(self.settings())
        )

    def emit_state(self) -> None:
        self.set_state(self.state)

    # ---- the run ------------------------------------------------------------------------

    def run(self) -> str:
        """Train until done, stopped or failed; returns the final state. Never raises."""
        try:
            activate(self.device)  # this thread's CUDA device: where kernels go and what syncs wait for
            if self.dist is not None:  # one non-finite-loss policy for every rank: rank 0's
                self.interactive = bool(distributed.broadcast_object(self.interactive, self.dist))
            announce(self)
            self.system.start()
            self.set_state(RunState.RUNNING)
            self._train()
            state = RunState.STOPPED if self.stop_requested else RunState.FINISHED
            reason = self.stop_reason
        except Exception as exc:  # any failure becomes an event; the logs are kept
            state, reason = RunState.FAILED, outcome.report_error(self, exc)
        self.system.stop()
        outcome.finish(self, state, reason)
        return state.value

    def _train(self) -> None:
        cfg, t = self.cfg, self.train
        if cfg.run.max_steps and t.step >= cfg.run.max_steps:  # a resume of a run that got there
            self.report.mark("max_steps", f"already at {t.step} of run.max_steps = {cfg.run.max_steps}")
            return
        while t.epoch < cfg.run.epochs and not self.stop_requested:
            apply_schedule(self)
            self.data.train.set_epoch(t.epoch)
            skip = t.batch_in_epoch  # after a resume mid-epoch: the same order, minus what was done
            for i, (x, y) in enumerate(self.data.train):
                if i < skip:
                    continue
                control.between_steps(self)
                if self.stop_requested:
                    return
                self._train_step(x, y)
                t.step += 1
                t.batch_in_epoch += 1
                if t.step % self.log_every == 0:
                    self._readback()
                rows = self.layers.read()  # after the watched step of each log.layers_interval
                if rows is not None:
                    self.report.layers(self.layers.names, rows)
                if self.max_steps and t.step >= self.max_steps:
                    self._readback()
                    self.report.mark("max_steps", f"reached {self.max_steps} steps")
                    self.evaluate()
                    return
            self._readback()
            t.epoch += 1
            t.batch_in_epoch = 0
            self.evaluate()
            self.log.flush()
            if cfg.log.checkpoint_every and t.epoch % cfg.log.checkpoint_every == 0:
                checkpoint.save_now(self, epoch=t.epoch)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        frozen = self.frozen
        compiling = self.runner.needs_compile(frozen, y.shape[0])
        if compiling:
            previous = self.state
            what = f"features {'frozen' if frozen else 'trainable'}, {self.train.mode} mode, batch {y.shape[0]}"
            self.set_state(RunState.COMPILING, f"torch.compile for {what}")
        with self.layers.watch(self.train.step + 1):
            loss, logits = self.runner.step(self.optimizer, x, y, frozen=frozen, lbfgs=self.train.optimizer == "lbfgs")
        if compiling:  # the first step of a compiled variant is done: compiling is over
            self.set_state(previous, "compiled")
        self.sums.add(loss, logits, y)  # running sums stay on the device
        self.train.samples_seen += y.shape[0]

    def _readback(self) -> None:
        """The interval's sums as one logged row: the one host sync per interval."""
        got = self.sums.read(self.dist)
        if got is None:
            return
        loss, acc, n, seconds = got
        self.last_loss = loss
        seen = self.train.samples_seen * (self.dist.world if self.dist else 1)
        self.report.train(loss, acc, n / seconds, seen, self.settings(), gpu=gpu_memory(self.device))
        if not math.isfinite(loss):
            outcome.on_nonfinite(self, loss)

    def evaluate(self) -> None:
        """Test loss and error in eval mode, in train mode, or both (run.eval_mode, the M key). In
        a data-parallel run rank 0 evaluates (the weights are the same on every rank) while the
        others wait, kept alive by its heartbeats (engine.distributed.with_heartbeat)."""
        if not self.is_main:
            return distributed.wait_for_evaluation(self.dist)
        self._evaluate()
        if self.dist is not None:
            distributed.evaluated(self.dist)

    def _evaluate(self) -> None:
        epoch = self.train.epoch + (1 if self.train.batch_in_epoch else 0)  # mid-epoch: the one under way
        for mode in ("eval", "train") if self.eval_mode == "both" else (self.eval_mode,):
            test = self.data.test if self.dist is None else distributed.with_heartbeat(self.data.test, self.dist)
            got = evaluate(self.model, test, self.runner.autocast, self.device, mode=mode)
            if got is None:
                return
            self.report.test(epoch, got[0], got[1], self.settings(), mode=mode)
            # best.pt follows the first mode's accuracy (eval when both): one rule per run
            if mode == self.eval_mode.replace("both", "eval") and got[1] > self.train.best_accuracy:
                if math.isfinite(got[0]):
                    self.train.best_accuracy, self.train.best_epoch = got[1], epoch
                    checkpoint.save_now(self, best=True)
        self.log.flush()


def step_limits(cfg: Config) -> tuple[int, int]:
    """(steps per logged row, the run's step limit or 0): log.interval, or log.interval_samples
    over the batch size; run.max_steps and run.max_samples, whichever comes first."""
    batch = cfg.data.batch_size
    every = max(1, cfg.log.interval_samples // batch) if cfg.log.interval_samples else cfg.log.interval
    limits = [cfg.run.max_steps] if cfg.run.max_steps else []
    if cfg.run.max_samples:
        limits.append(math.ceil(cfg.run.max_samples / batch))
    return every, min(limits, default=0)


def apply_schedule(engine: Engine) -> None:
    """Features frozen for the first N epochs, unless the user has overridden it."""
    n = engine.cfg.schedule.freeze_features_epochs
    if not engine.has_features or n == 0 or engine.train.freeze_override is not None:
        return
    want = engine.train.epoch < n
    if want != engine.frozen:
        set_frozen(engine.model, want, engine.freeze)
        action = "freeze" if want else "unfreeze"
        detail = (
            f"{freeze_label(engine.freeze)} {'frozen' if want else 'trainable'} at epoch {engine.epoch_now} "
            f"(schedule: frozen for the first {n} epochs)"
        )
        engine.report.mark(f"schedule_{action}", detail)
        engine.report.emit(E.ScheduleAction, action=action, detail=detail)
        engine.emit_state()


def announce(engine: Engine) -> None:
    """The run's first event and mark, and a word on [perf] settings that cost a host sync."""
    cfg, t = engine.cfg, engine.train
    engine.report.emit(
        E.RunStarted,
        preset=cfg.run.name,
        run_dir=str(engine.run_dir),
        device=device_label(engine.device),
        model=label(cfg.model, engine.model),
        parameters=sum(p.numel() for p in engine.model.parameters()),
        epochs=cfg.run.epochs,
        steps_per_epoch=len(engine.data.train),
        max_steps=engine.max_steps,
        has_features=engine.has_features,
        freeze_modules=engine.freeze,
        optimizer_choices=engine.choices,
        resumed=engine.resumed,
    )
    frozen = ("frozen" if engine.frozen else "trainable") if engine.has_features else "n/a"
    engine.report.mark(
        "resume" if engine.resumed else "start",
        f"preset={cfg.run.name} device={device_label(engine.device).split()[0]} "
        f"optimizer={t.optimizer} lr={t.base_lr:g} frozen={frozen} "
        f"parameters={sum(p.numel() for p in engine.model.parameters())}",
    )
    if engine.resume_changes:
        said = ", ".join(f"{k} {old!r} -> {new!r}" for k, old, new in engine.resume_changes)
        engine.report.mark("resume_changes", said)
        engine.report.emit(E.Warning, message=f"resumed with changes: {said}")
    note = engine.runner.sync_note(engine.optimizer, t.optimizer)
    if note:
        engine.report.emit(E.Warning, message=note)
