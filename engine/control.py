"""Commands in: applied between two training steps, through one table from command type to
handler; every command is answered with CommandApplied or CommandRejected (and marked in
events.csv), so front ends show what the engine did, not what a key asked for.

In a data-parallel run rank 0 takes the user's commands and broadcasts them at each step
boundary, and every rank applies the same list at the same step.
"""

from __future__ import annotations

import contextlib
import math
import queue
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import checkpoint, models
from . import commands as C
from . import events as E
from .config import EVAL_MODES, OPTIMIZERS
from .state import RunState

if TYPE_CHECKING:
    from .loop import Engine

Result = tuple[bool, str]  # (applied, what happened or why not)
MAX_TIMING_REPEATS, MAX_TIMING_SIZE = 1001, 8192  # a timing is bounded (and any command cuts it short)


def between_steps(engine: Engine) -> None:
    """Apply every queued command; while paused, wait for commands here."""
    if engine.dist is not None:
        return _between_steps_distributed(engine)
    while True:
        waiting = engine.state == RunState.PAUSED and not engine.stop_requested
        try:
            cmd = engine.commands.get(timeout=0.1) if waiting else engine.commands.get_nowait()
        except queue.Empty:
            if not waiting:
                return
            engine.log.flush_if_due()  # rows written while paused reach the disk too
            continue
        apply(engine, cmd)


def _between_steps_distributed(engine: Engine) -> None:
    """Rank 0 gathers the commands and tells every rank how many there are (one small CPU
    collective per step); only when there are some do they travel, pickled, and every rank
    applies the same list at the same step. While paused, the ranks loop here together."""
    from .distributed import broadcast_count, broadcast_object

    while True:
        batch = []
        if engine.is_main:
            waiting = engine.state == RunState.PAUSED and not engine.stop_requested
            with contextlib.suppress(queue.Empty):
                batch.append(engine.commands.get(timeout=0.1) if waiting else engine.commands.get_nowait())
                while True:
                    batch.append(engine.commands.get_nowait())
        if broadcast_count(len(batch), engine.dist):
            for cmd in broadcast_object(batch, engine.dist):  # the dataclasses travel pickled
                apply(engine, cmd)
        if not (engine.state == RunState.PAUSED and not engine.stop_requested):
            return


def apply(engine: Engine, cmd: C.Command) -> None:
    """Run the command's handler and answer it; a handler that raises rejects the command and
    the run goes on."""
    name = type(cmd).__name__
    handler = HANDLERS.get(type(cmd))
    try:
        ok, text = handler(engine, cmd) if handler else (False, f"unknown command {name}")
    except Exception as exc:
        ok, text = False, f"{type(exc).__name__}: {exc}"
    if ok:
        engine.report.mark(f"applied:{name}", text)
        engine.report.emit(E.CommandApplied, command_id=cmd.id, command=name, detail=text)
    else:
        engine.report.mark(f"rejected:{name}", text)
        engine.report.emit(E.CommandRejected, command_id=cmd.id, command=name, reason=text)


# ---- the handlers ----------------------------------------------------------------------------


def pause(engine: Engine, cmd: C.Pause) -> Result:
    if engine.state == RunState.PAUSED:
        return False, "already paused"
    engine.set_state(RunState.PAUSED, "paused by user")
    engine.log.flush()
    return True, f"paused at step {engine.train.step}"


def resume(engine: Engine, cmd: C.Resume) -> Result:
    if engine.state != RunState.PAUSED:
        return False, "not paused"
    engine.set_state(RunState.RUNNING, "resumed by user")
    return True, f"resumed at step {engine.train.step}"


def stop(engine: Engine, cmd: C.Stop) -> Result:
    engine.request_stop(cmd.reason, save_checkpoint=cmd.save_checkpoint)
    return True, f"stopping at step {engine.train.step}: {cmd.reason}"


def switch_optimizer(engine: Engine, cmd: C.SwitchOptimizer) -> Result:
    current, choices = engine.train.optimizer, engine.choices
    name = cmd.name or choices[(choices.index(current) + 1) % len(choices) if current in choices else 0]
    if name not in OPTIMIZERS:
        return False, f"unknown optimizer {name!r}"
    if name == "lbfgs" and engine.dist is not None:
        return False, "LBFGS is not supported in a data-parallel run (its line search is per rank)"
    if name in ("momentum", "nesterov") and engine.cfg.optimizer.momentum == 0:
        return False, f"{name} needs optimizer.momentum > 0 (the preset sets 0)"
    engine.optimizer = engine.make_optimizer(name)
    engine.train.optimizer = name
    engine.emit_state()
    note = (
        " (LBFGS takes one parameter group: per-group learning rates are not applied)"
        if name == "lbfgs" and engine.cfg.optimizer.group_lr
        else ""
    )
    sync = engine.runner.sync_note(engine.optimizer, name)
    if sync:
        note += f"; note: {sync}"
    return True, f"{current} -> {name}; {engine.describe_optimizer()}; state starts fresh{note}"


def set_frozen(engine: Engine, cmd: C.SetFrozen) -> Result:
    if not engine.has_features:
        name = models.label(engine.cfg.model, engine.model)
        return False, f"model '{name}' has no pretrained features to freeze (name its modules in model.freeze)"
    engine.train.freeze_override = cmd.frozen
    if cmd.frozen == engine.frozen:
        return False, f"{models.freeze_label(engine.freeze)} already {'frozen' if cmd.frozen else 'trainable'}"
    n = models.set_frozen(engine.model, cmd.frozen, engine.freeze)
    engine.emit_state()
    what = models.freeze_label(engine.freeze)
    return True, f"{what} {'frozen' if cmd.frozen else 'trainable'} ({n} parameters); schedule overridden"


def set_mode(engine: Engine, cmd: C.SetMode) -> Result:
    if cmd.mode not in ("train", "eval"):
        return False, f"mode must be train or eval, not {cmd.mode!r}"
    if cmd.mode == engine.train.mode:
        return False, f"already in {cmd.mode} mode"
    engine.train.mode = cmd.mode
    engine.model.train(cmd.mode == "train")
    engine.emit_state()
    return True, f"training steps now run in {cmd.mode} mode"


def set_eval_mode(engine: Engine, cmd: C.SetEvalMode) -> Result:
    if cmd.mode not in EVAL_MODES:
        return False, f"eval mode must be one of {', '.join(EVAL_MODES)}, not {cmd.mode!r}"
    what = "eval and train modes" if cmd.mode == "both" else f"{cmd.mode} mode"
    if cmd.mode == engine.eval_mode:
        return False, f"the test set is already evaluated in {what}"
    engine.eval_mode = cmd.mode
    engine.emit_state()
    return True, f"the test set is now evaluated in {what}, from the next evaluation on"


def set_learning_rate(engine: Engine, cmd: C.SetLearningRate) -> Result:
    if not (cmd.lr > 0 and math.isfinite(cmd.lr)):
        return False, f"learning rate must be a positive number, not {cmd.lr}"
    old = engine.train.base_lr
    engine.set_base_lr(float(cmd.lr))
    return True, f"lr {old:.3g} -> {engine.train.base_lr:.3g}"


def scale_learning_rate(engine: Engine, cmd: C.ScaleLearningRate) -> Result:
    if not (cmd.factor > 0 and math.isfinite(cmd.factor)):
        return False, f"factor must be a positive number, not {cmd.factor}"
    return set_learning_rate(engine, C.SetLearningRate(lr=engine.train.base_lr * cmd.factor, id=cmd.id))


def evaluate_now(engine: Engine, cmd: C.EvaluateNow) -> Result:
    engine.evaluate()
    return True, f"evaluated at step {engine.train.step}"


def save_checkpoint(engine: Engine, cmd: C.SaveCheckpoint) -> Result:
    paths = checkpoint.save_now(engine)
    if paths and paths[0].name == "nonfinite.pt":
        return False, f"the model is not finite: saved as {paths[0]} only, not over the last good checkpoint"
    return True, f"saved {', '.join(str(p) for p in paths)}"


def flush_logs(engine: Engine, cmd: C.FlushLogs) -> Result:
    engine.log.flush()
    return True, f"flushed {engine.log.metrics_path} and {engine.log.events_path}"


def run_timing(engine: Engine, cmd: C.RunTiming) -> Result:
    from .device import synchronize
    from .timing import TimingAborted, measure

    if not engine.is_main:
        return True, "timing runs on rank 0"
    if not (
        1 <= cmd.repeats <= MAX_TIMING_REPEATS
        and len(cmd.sizes) == 3
        and all(isinstance(n, int) and 1 <= n <= MAX_TIMING_SIZE for n in cmd.sizes)
    ):
        return False, (
            f"repeats must be 1..{MAX_TIMING_REPEATS} and sizes three integers 1..{MAX_TIMING_SIZE}, "
            f"not repeats={cmd.repeats} sizes={cmd.sizes}"
        )
    previous = engine.state
    engine.set_state(RunState.TIMING, "batch-vs-loop timing")
    total = 2 * cmd.repeats

    def progress(done: int) -> None:
        engine.report.emit(E.TimingProgress, done=done, total=total)

    try:
        synchronize(engine.device)
        # any command (resume, stop, ...) comes first: the timing gives way between two runs
        report = measure(
            engine.device,
            repeats=cmd.repeats,
            sizes=tuple(cmd.sizes),
            should_stop=lambda: not engine.commands.empty(),
            progress=progress,
        )
    except TimingAborted:
        return False, "timing put off: a command came first"
    finally:
        engine.set_state(previous, "timing done")
    engine.sums.started = time.monotonic()  # the timing's time is not training time
    engine.report.emit(E.TimingResult, **report.event_fields())
    return True, report.line()


def restore_checkpoint(engine: Engine, cmd: C.RestoreCheckpoint) -> Result:

    if not (cmd.lr >= 0 and cmd.lr_scale > 0 and math.isfinite(cmd.lr) and math.isfinite(cmd.lr_scale)):
        return False, f"learning rate must be a positive number, not lr={cmd.lr} lr_scale={cmd.lr_scale}"
    path = engine.checkpoints.find(cmd.which) if engine.is_main else None
    payload = checkpoint.load(path, engine.cfg) if path is not None else None
    if engine.dist is not None:  # rank 0 reads the file; every rank restores what it read
        from .distributed import broadcast_object

        payload = broadcast_object(payload, engine.dist)
    if payload is None:
        return False, "no checkpoint saved yet in this run" if cmd.which == "last" else f"no {cmd.which} checkpoint"
    checkpoint.restore(engine, payload)
    engine.sums.reset()
    engine.last_loss = None  # the restored model has not been measured yet
    lr = cmd.lr if cmd.lr > 0 else engine.train.base_lr * cmd.lr_scale
    note = ""
    if lr != engine.train.base_lr:
        note = f", lr {engine.train.base_lr:.3g} -> {lr:.3g}"
        engine.set_base_lr(lr)
    engine.emit_state()
    where = path.name if path is not None else cmd.which
    return True, f"restored {where} (step {engine.train.step}{note})"


HANDLERS: dict[type, Callable[[Engine, C.Command], Result]] = {
    C.Pause: pause,
    C.Resume: resume,
    C.Stop: stop,
    C.SwitchOptimizer: switch_optimizer,
    C.SetFrozen: set_frozen,
    C.SetMode: set_mode,
    C.SetEvalMode: set_eval_mode,
    C.SetLearningRate: set_learning_rate,
    C.ScaleLearningRate: scale_learning_rate,
    C.EvaluateNow: evaluate_now,
    C.SaveCheckpoint: save_checkpoint,
    C.FlushLogs: flush_logs,
    C.RunTiming: run_timing,
    C.RestoreCheckpoint: restore_checkpoint,
}
assert set(HANDLERS) == set(C.ALL), "every command needs a handler"
