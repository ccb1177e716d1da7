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
from collections.abc import Callable
from pathlib import Path

from . import checkpoint
from . import commands as C
from . import events as E
from .config import EVAL_MODES
from .state import PAUSED_BY_USER, RunState
from .surface import Refused, Run

Result = tuple[bool, str]  # (applied, what happened or why not)
MAX_TIMING_REPEATS, MAX_TIMING_SIZE = 1001, 8192  # a timing is bounded (and any command cuts it short)


def between_steps(run: Run, commands: queue.Queue) -> None:
    """Apply every queued command; while paused, wait for commands here."""
    if run.dist is not None:
        return _between_steps_distributed(run, commands)
    while True:
        waiting = run.state == RunState.PAUSED and not run.stopping
        try:
            cmd = commands.get(timeout=0.1) if waiting else commands.get_nowait()
        except queue.Empty:
            if not waiting:
                return
            run.report.log.flush_if_due()  # rows written while paused reach the disk too
            continue
        apply(run, cmd)


def _between_steps_distributed(run: Run, commands: queue.Queue) -> None:
    """Rank 0 gathers the commands and tells every rank how many there are (one small CPU
    collective per step); only when there are some do they travel, pickled, and every rank
    applies the same list at the same step. While paused, the ranks loop here together."""
    from .distributed import broadcast_count, broadcast_object

    while True:
        batch = []
        if run.is_main:
            waiting = run.state == RunState.PAUSED and not run.stopping
            with contextlib.suppress(queue.Empty):
                batch.append(commands.get(timeout=0.1) if waiting else commands.get_nowait())
                while True:
                    batch.append(commands.get_nowait())
        if broadcast_count(len(batch), run.dist):
            for cmd in broadcast_object(batch, run.dist):  # the dataclasses travel pickled
                apply(run, cmd)
        if run.state != RunState.PAUSED or run.stopping:
            return


def apply(run: Run, cmd: C.Command) -> None:
    """Run the command's handler and answer it. A handler checks everything before it changes
    anything, so a rejected command changes nothing; one that raises is rejected too, and the
    run goes on."""
    name = type(cmd).__name__
    handler = HANDLERS.get(type(cmd))
    try:
        ok, text = handler(run, cmd) if handler else (False, f"unknown command {name}")
    except Refused as exc:  # a verb this run cannot take: nothing changed
        ok, text = False, str(exc)
    except Exception as exc:
        ok, text = False, f"{type(exc).__name__}: {exc}"
    if ok:
        run.report.emit(E.CommandApplied, command_id=cmd.id, command=name, detail=text)
    else:
        run.report.emit(E.CommandRejected, command_id=cmd.id, command=name, reason=text)


# ---- the handlers: check, then act through the run's verbs -----------------------------------


def pause(run: Run, cmd: C.Pause) -> Result:
    if run.state == RunState.PAUSED:
        return False, "already paused"
    run.set_state(RunState.PAUSED, PAUSED_BY_USER)
    run.report.log.flush()
    return True, f"paused at step {run.train.step}"


def resume(run: Run, cmd: C.Resume) -> Result:
    if run.state != RunState.PAUSED:
        return False, "not paused"
    run.set_state(RunState.RUNNING, "resumed by user")
    return True, f"resumed at step {run.train.step}"


def stop(run: Run, cmd: C.Stop) -> Result:
    run.request_stop(cmd.reason, save_checkpoint=cmd.save_checkpoint)
    return True, f"stopping at step {run.train.step}: {cmd.reason}"


def switch_optimizer(run: Run, cmd: C.SwitchOptimizer) -> Result:
    steer = run.trainer
    current, choices = steer.train.optimizer, steer.choices
    following = (choices.index(current) + 1) % len(choices) if current in choices else 0
    name = cmd.name or (choices[following] if choices else "")
    steer.switch_optimizer(name)  # Refused for a name it cannot switch to (unknown, momentum 0, ...)
    note = (
        " (LBFGS takes one parameter group: per-group learning rates are not applied)"
        if name == "lbfgs" and run.cfg.optimizer.group_lr
        else ""
    )
    sync = steer.sync_note(name)
    if sync:
        note += f"; note: {sync}"
    return True, f"{current} -> {name}; {steer.describe_optimizer()}; state starts fresh{note}"


def set_frozen(run: Run, cmd: C.SetFrozen) -> Result:
    steer = run.trainer
    what = steer.freeze_label()
    if not steer.has_features:
        name = steer.model_label()
        return False, f"model '{name}' has no pretrained features to freeze (name its modules in {steer.freeze_key})"
    if cmd.frozen == steer.frozen:
        return False, f"{what} already {'frozen' if cmd.frozen else 'trainable'}"
    n = steer.set_frozen(cmd.frozen)
    overridden = "; schedule overridden" if run.cfg.schedule.freeze_features_epochs else ""  # else none to override
    return True, f"{what} {'frozen' if cmd.frozen else 'trainable'} ({n} parameters){overridden}"


def set_mode(run: Run, cmd: C.SetMode) -> Result:
    if cmd.mode not in ("train", "eval"):
        return False, f"mode must be train or eval, not {cmd.mode!r}"
    if cmd.mode == run.train.mode:
        return False, f"already in {cmd.mode} mode"
    run.trainer.set_mode(cmd.mode)
    return True, f"training steps now run in {cmd.mode} mode"


def set_eval_mode(run: Run, cmd: C.SetEvalMode) -> Result:
    if cmd.mode not in EVAL_MODES:
        return False, f"eval mode must be one of {', '.join(EVAL_MODES)}, not {cmd.mode!r}"
    what = "eval and train modes" if cmd.mode == "both" else f"{cmd.mode} mode"
    if cmd.mode == run.trainer.eval_mode:
        return False, f"the test set is already evaluated in {what}"
    run.trainer.set_eval_mode(cmd.mode)
    return True, f"the test set is now evaluated in {what}, from the next evaluation on"


def _check_lr(lr: float) -> str:
    return "" if lr > 0 and math.isfinite(lr) else f"learning rate must be a positive number, not {lr}"


def set_learning_rate(run: Run, cmd: C.SetLearningRate) -> Result:
    bad = _check_lr(cmd.lr)
    if bad:
        return False, bad
    old, schedule = run.train.base_lr, run.trainer.settings().lr_schedule
    run.trainer.set_lr(float(cmd.lr))
    said = f"; overrides the lr schedule ({schedule}): the lr stays as set" if schedule else ""
    return True, f"lr {old:.3g} -> {run.train.base_lr:.3g}{said}"


def scale_learning_rate(run: Run, cmd: C.ScaleLearningRate) -> Result:
    if not (cmd.factor > 0 and math.isfinite(cmd.factor)):
        return False, f"factor must be a positive number, not {cmd.factor}"
    return set_learning_rate(run, C.SetLearningRate(lr=run.train.base_lr * cmd.factor, id=cmd.id))


def evaluate_now(run: Run, cmd: C.EvaluateNow) -> Result:
    run.evaluate()
    return True, f"evaluated at step {run.train.step}"


def save_checkpoint(run: Run, cmd: C.SaveCheckpoint) -> Result:
    paths = run.save_checkpoint()
    if paths and Path(paths[0]).stem == Path(checkpoint.NONFINITE).stem:  # nonfinite.pt (.ckpt: Lightning's)
        return False, f"the model is not finite: saved as {paths[0]} only, not over the last good checkpoint"
    return True, f"saved {', '.join(str(p) for p in paths)}"


def flush_logs(run: Run, cmd: C.FlushLogs) -> Result:
    log = run.report.log
    log.flush()
    return True, f"flushed {log.metrics_path} and {log.events_path}"


def run_timing(run: Run, cmd: C.RunTiming) -> Result:
    from .device import synchronize
    from .timing import TimingAborted, measure

    if not run.is_main:
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
    previous = run.state
    run.set_state(RunState.TIMING, "batch-vs-loop timing")
    total = 2 * cmd.repeats

    def progress(done: int) -> None:
        run.report.emit(E.TimingProgress, done=done, total=total)

    try:
        synchronize(run.device)
        # any command (resume, stop, ...) comes first: the timing gives way between two runs
        report = measure(
            run.device, repeats=cmd.repeats, sizes=tuple(cmd.sizes), should_stop=run.commands_waiting, progress=progress
        )
    except TimingAborted:
        return False, "timing put off: a command came first"
    finally:
        run.set_state(previous, "timing done")
    run.report.emit(E.TimingResult, **report.event_fields())
    return True, report.line()


def restore_checkpoint(run: Run, cmd: C.RestoreCheckpoint) -> Result:
    if not (cmd.lr >= 0 and cmd.lr_scale > 0 and math.isfinite(cmd.lr) and math.isfinite(cmd.lr_scale)):
        return False, f"learning rate must be a positive number, not lr={cmd.lr} lr_scale={cmd.lr_scale}"
    path = run.checkpoints.find(cmd.which) if run.is_main else None
    payload = checkpoint.load(path, run.cfg) if path is not None else None
    if run.dist is not None:  # rank 0 reads the file; every rank restores what it read
        from .distributed import broadcast_object

        payload, path = broadcast_object((payload, path), run.dist)
    if payload is None:
        return False, "no checkpoint saved yet in this run" if cmd.which == "last" else f"no {cmd.which} checkpoint"
    if not payload.get("finite", True):
        return False, f"{path.name} holds a model that is not finite"
    lr = cmd.lr if cmd.lr > 0 else float(payload["train"]["base_lr"]) * cmd.lr_scale
    run.rewind(payload, path)
    note = ""
    if lr != run.train.base_lr:
        note = f", lr {run.train.base_lr:.3g} -> {lr:.3g}"
        run.trainer.set_lr(lr)
    return True, f"restored {path.name} (step {run.train.step}{note})"


HANDLERS: dict[type, Callable[[Run, C.Command], Result]] = {
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
