"""The Engine: one training run, in a background thread. Epochs, steps, the freeze schedule and
the boundaries between steps, where commands are applied; the verbs of engine.surface.Run, the
only code that assigns the run's fields; everything else is a part it holds.

Commands come in through `engine.commands` (a queue.Queue) and are applied only between steps,
each answered with an event (engine.control). Events go out through `engine.events` (an
EventBuffer) that front ends poll, and into the run directory (engine.runlog). Nothing else
crosses the thread boundary.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch

from . import checkpoint, control, distributed, models, notify, outcome, system, tensorboard
from . import events as E
from .clock import RunClock
from .config import Config
from .device import activate, amp_note, device_label
from .errors import SetupError
from .layers import LayerProbe
from .metrics import IntervalSums, Reporter, evaluate, gpu_memory
from .replay import Replay
from .runlog import NullLog
from .state import RunState, TrainState
from .thread import ThreadSession
from .trainer import Trainer


class Engine(ThreadSession):
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
        started_at: float | None = None,
    ):
        super().__init__()
        self.cfg, self.device, self.data = cfg, device, data
        self.lock = lock  # runlog.RunLock: this process alone writes the run directory
        self.dist = dist_info  # engine.distributed.DistInfo in a data-parallel run, else None
        self.is_main = dist_info is None or dist_info.is_main
        self.run_dir = Path(run_dir)
        self.clock = RunClock(started_at)  # from launch: the header's clock never jumps back
        log = tensorboard.run_log(self.run_dir, cfg) if self.is_main else NullLog(self.run_dir)  # rank 0 writes
        self.report = Reporter(log, E.EventBuffer(), self.position)
        self.history = self.report.earlier() if resume is not None and self.is_main else Replay()
        self.replayed = len(self.report.events)  # that history: no toasts, no dialogs for it
        self.log_every, self.max_steps = step_limits(cfg)
        self.trainer = Trainer(
            cfg, model, device, distributed=dist_info is not None, on_change=lambda: self.set_state(self.state)
        )
        self.trainer.plan_lr(len(data.train), self.max_steps, self.report.lr_schedule)
        self.state = RunState.STARTING
        self.stopping, self.stop_reason, self.save_on_stop = False, "", True
        self.checkpoints = checkpoint.CheckpointFiles(self.run_dir, cfg.log.keep_checkpoints)
        self.layers = LayerProbe(
            self.model, cfg.log.layers_interval if self.is_main else 0, activations=not cfg.perf.compile
        )
        self.sums = IntervalSums(device, self.clock.trained)
        self.system = system.monitor_for(self)  # the machine's figures, in a thread of their own
        self.notifier = notify.Notifier(self)  # run.notify_command
        self.resumed = resume is not None
        self.resume_changes = list(resume_changes)  # (key, saved, now): applied, and said so at the start
        if resume is not None:  # the trainer takes its state back, the clocks go on from the checkpoint's
            self.trainer.load_state_dict(resume, self.run_dir, changed={k for k, _, _ in self.resume_changes})
            self.clock.continue_from(float(resume["train"]["time_s"]), float(resume["train"].get("train_s", 0.0)))

    # ---- reading (engine.surface.Run; the Session's is ThreadSession's) -------------------

    @property
    def events(self) -> E.EventBuffer:
        return self.report.events

    @property
    def model(self) -> torch.nn.Module:
        return self.trainer.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.trainer.optimizer

    @property
    def train(self) -> TrainState:
        return self.trainer.train

    def now(self) -> float:
        return self.clock.now()

    @property
    def epoch_now(self) -> int:
        """The 1-based epoch of events and rows; after the last one ended, still the last one."""
        return min(self.train.epoch + 1, self.cfg.run.epochs)

    def position(self) -> tuple[float, int, int]:
        return self.now(), self.epoch_now, self.train.step

    def state_dict(self) -> dict:
        """Each part's state: the Trainer's, and the clocks."""
        st = self.trainer.state_dict()
        return {**st, "train": {**st["train"], **self.clock.state_dict()}}

    # ---- verbs (engine.surface.Run): each change is told as a StateChanged ----------------

    def set_state(self, state: RunState, reason: str = "") -> None:
        self.state = state
        self.report.emit(E.StateChanged, **self._state_fields(state, reason))

    def _state_fields(self, state: RunState, reason: str) -> dict:
        t = self.trainer
        return dict(state=state.value, reason=reason, optimizer_params=t.describe_optimizer(), **vars(t.settings()))

    def request_stop(self, reason: str, save_checkpoint: bool = True) -> None:
        self.stopping, self.stop_reason, self.save_on_stop = True, reason, save_checkpoint

    def save_checkpoint(self, epoch: int | None = None, best: bool = False) -> list[Path]:
        with self.clock.held():
            return checkpoint.save_now(self, epoch=epoch, best=best)

    def rewind(self, payload: dict, path: Path) -> int:
        from_step = self.train.step
        self.trainer.load_state_dict(payload, self.run_dir)
        self.sums.reset()
        orphaned = self.report.log.cut_after(self.train.step)
        self.report.emit(E.Rewound, path=str(path), from_step=from_step, orphaned=orphaned)
        self.set_state(self.state)
        self.rewound = True  # the loop goes on from the checkpoint's place in its epoch
        return orphaned

    def notify(self, what: str, reason: str = "") -> None:
        self.notifier.fire(what, reason)

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
            self.clock.release()  # training time counts from here
            self._train()
            state = RunState.STOPPED if self.stopping else RunState.FINISHED
            reason = self.stop_reason
        except Exception as exc:  # any failure becomes an event; the logs are kept
            state, reason = RunState.FAILED, outcome.report_error(self, exc)
            self.bad_input = isinstance(exc, SetupError)  # e.g. a corrupt sample: exit 2, as before the start
        self.clock.hold()
        self.system.stop()
        self._finish(state, reason)
        return state.value

    def _train(self) -> None:
        cfg, t = self.cfg, self.train
        if cfg.run.max_steps and t.step >= cfg.run.max_steps:  # a resume of a run that got there
            self.report.note("max_steps", f"already at {t.step} of run.max_steps = {cfg.run.max_steps}")
            return
        while t.epoch < cfg.run.epochs and not self.stopping:
            apply_schedule(self)
            self.data.train.set_epoch(t.epoch)
            skip, self.rewound = t.batch_in_epoch, False  # a resume's or a rewind's place in its epoch
            for i, (x, y) in enumerate(self.data.train):
                if i < skip:
                    continue
                with self.clock.held():  # commands, a pause, a timing: not training time
                    control.between_steps(self, self.commands)
                if self.stopping:
                    return
                if self.rewound:  # its epoch again, from the checkpoint's batch: its schedule, its order
                    break
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
                    self.report.note("max_steps", f"reached {self.max_steps} steps")
                    self.evaluate()
                    return
            else:
                self._readback()
                t.epoch, t.batch_in_epoch = t.epoch + 1, 0
                self.evaluate()
                self.report.log.flush()
                if cfg.log.checkpoint_every and t.epoch % cfg.log.checkpoint_every == 0:
                    self.save_checkpoint(epoch=t.epoch)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        frozen = self.trainer.frozen
        compiling = self.trainer.runner.needs_compile(frozen, y.shape[0])
        if compiling:  # the compile's time is not training time, nor are its samples counted in samples/s
            previous = self.state
            what = f"features {'frozen' if frozen else 'trainable'}, {self.train.mode} mode, batch {y.shape[0]}"
            self.set_state(RunState.COMPILING, f"torch.compile for {what}")
        with self.clock.held() if compiling else contextlib.nullcontext(), self.layers.watch(self.train.step + 1):
            loss, logits = self.trainer.step(x, y)
        if compiling:  # the first step of a compiled variant is done: compiling is over
            self.set_state(previous, "compiled")
        self.sums.add(loss, logits, y, timed=not compiling, clipped=self.trainer.runner.last_clipped)

    def _readback(self) -> None:
        """The interval's sums as one logged row: the one host sync per interval."""
        got = self.sums.read(self.dist)
        if got is None:
            return
        loss, acc, _, rate = got
        self.trainer.last_loss = loss
        seen = self.train.samples_seen * (self.dist.world if self.dist else 1)
        extra = dict(gpu=gpu_memory(self.device), clipped=self.sums.clipped_share)
        self.report.train(loss, acc, rate, seen, self.clock.trained(), self.trainer.settings(), **extra)
        if not math.isfinite(loss):
            outcome.on_nonfinite(self, loss)

    def evaluate(self) -> None:
        """Test loss and error in eval mode, in train mode, or both (run.eval_mode, the M key). In a
        data-parallel run rank 0 evaluates while the others wait, kept alive by its heartbeats."""
        if not self.is_main:
            return distributed.wait_for_evaluation(self.dist)
        epoch = self.train.epoch + (1 if self.train.batch_in_epoch else 0)  # mid-epoch: the one under way
        t = self.trainer
        with self.clock.held():
            for mode in ("eval", "train") if t.eval_mode == "both" else (t.eval_mode,):
                test = self.data.test if self.dist is None else distributed.with_heartbeat(self.data.test, self.dist)
                got = evaluate(self.model, test, t.runner.autocast, self.device, mode=mode)
                if got is None:
                    break
                self.report.test(epoch, got[0], got[1], t.settings(), mode=mode)
                # best.pt follows the first mode's accuracy (eval when both): one rule per run
                if mode == t.eval_mode.replace("both", "eval") and got[1] > self.train.best_accuracy:
                    if math.isfinite(got[0]):
                        self.train.best_accuracy, self.train.best_epoch = got[1], epoch
                        self.save_checkpoint(best=True)
            self.report.log.flush()
        if self.dist is not None:
            distributed.evaluated(self.dist)

    def _finish(self, state: RunState, reason: str) -> None:
        """The end of every run: the final checkpoint, the logs closed with StateChanged and
        Finished as their last lines, the data loaders and process group shut down; then the
        front ends hear them (the run directory is free by then)."""
        try:  # the final model is kept too, so a finished run can be evaluated or extended
            if state == RunState.FINISHED or (state == RunState.STOPPED and self.save_on_stop):
                self.save_checkpoint()
        except Exception as exc:  # a run whose last checkpoint is not on disk has not finished
            kept = self.checkpoints.find("last")
            reason = outcome.report_error(self, exc) + (f"; the last good checkpoint is {kept}" if kept else "")
            state, self.bad_input = RunState.FAILED, False
        self.notifier.end(state, reason)  # run.notify_command
        try:
            self.report.log.flush()
        except OSError as exc:
            reason, state, self.bad_input = outcome.report_error(self, exc), RunState.FAILED, False
        self.state, self.final_state = state, state.value
        t, epoch, step = self.position()
        end = dict(state=state.value, run_dir=str(self.run_dir), reason=reason, bad_input=self.bad_input)
        ended = [
            E.StateChanged(round(t, 3), epoch, step, **self._state_fields(state, reason)),
            E.Finished(round(t, 3), epoch, step, **end),
        ]
        with contextlib.suppress(Exception):
            for ev in ended:
                self.report.log.record(ev)
            self.report.log.close()
        with contextlib.suppress(Exception):
            self.data.close()
        if self.lock is not None:
            self.lock.release()
        if self.dist is not None:
            with contextlib.suppress(Exception):
                distributed.close(clean=state == RunState.FINISHED)  # else NCCL is aborted, not waited for
        for ev in ended:
            self.events.append(ev)


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
    if not engine.trainer.has_features or n == 0 or engine.train.freeze_override is not None:
        return
    want = engine.train.epoch < n
    if want != engine.trainer.frozen:
        action = "freeze" if want else "unfreeze"
        detail = (
            f"{engine.trainer.freeze_label()} {'frozen' if want else 'trainable'} at epoch {engine.epoch_now} "
            f"(schedule: frozen for the first {n} epochs)"
        )
        engine.report.emit(E.ScheduleAction, action=action, detail=detail)
        engine.trainer.set_frozen(want, by_user=False)  # its StateChanged follows the schedule's line


def announce(engine: Engine) -> None:
    """The run's first event, and a word on what the resume changed and on [perf] settings that
    cost a host sync."""
    cfg, t = engine.cfg, engine.train
    engine.report.emit(
        E.RunStarted,
        preset=cfg.run.name,
        run_dir=str(engine.run_dir),
        device=device_label(engine.device),
        model=models.label(cfg.model, engine.model),
        parameters=sum(p.numel() for p in engine.model.parameters()),
        epochs=cfg.run.epochs,
        steps_per_epoch=len(engine.data.train),
        max_steps=engine.max_steps,
        has_features=engine.trainer.has_features,
        freeze_modules=engine.trainer.freeze,
        optimizer_choices=engine.trainer.choices,
        resumed=engine.resumed,
        wall_time=round(time.time(), 3),
    )
    if engine.resume_changes:
        said = ", ".join(f"{k} {old!r} -> {new!r}" for k, old, new in engine.resume_changes)
        engine.report.emit(E.Warning, message=f"resumed with changes: {said}", kind="resume_changes")
    for note in (engine.trainer.sync_note(t.optimizer), amp_note(engine.device, cfg.perf.amp)):
        if note:
            engine.report.emit(E.Warning, message=note)
