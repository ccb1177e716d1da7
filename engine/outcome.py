"""How a run ends or is stopped short: the non-finite-loss policy, failures turned into one-line
events, and the end of every run (final checkpoint, logs closed, Finished)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import checkpoint
from . import events as E
from .config import Config
from .runlog import disk_full, disk_full_message
from .state import RunState

if TYPE_CHECKING:
    from .loop import Engine


def on_nonfinite(engine: Engine, loss: float) -> None:
    """A non-finite training loss: stop (raise), pause for a dashboard, or go on, as run.on_nan says."""
    policy = engine.cfg.run.on_nan
    if policy == "auto":
        policy = "pause" if engine.interactive else "stop"
    msg = f"training loss is {loss} at step {engine.train.step}"
    engine.report.mark("nonfinite_loss", f"{msg}; on_nan={policy}")
    if policy == "stop":
        raise FloatingPointError(
            f"{msg}; fix: lower the learning rate (e.g. --set optimizer.lr="
            f'{engine.train.base_lr / 10:g}) or set run.on_nan = "pause"'
        )
    what = (
        "paused; rewind to the last good checkpoint, stop, or stay paused"
        if policy == "pause"
        else ("continuing (run.on_nan = continue)")
    )
    engine.report.emit(E.NonFiniteLoss, loss=loss, policy=policy, message=f"{msg}: {what}")
    if policy == "pause":
        engine.set_state(RunState.PAUSED, "non-finite loss")
        engine.notifier.fire("paused", msg)  # in its own thread: the run waits for the user, not for it


def finish(engine: Engine, state: RunState, reason: str) -> None:
    """The end of every run: the final checkpoint, the last marks, the logs closed, the data
    loaders and process group shut down, then StateChanged and Finished."""
    try:  # the final model is kept too, so a finished run can be evaluated or extended
        if state == RunState.FINISHED or (state == RunState.STOPPED and engine.save_on_stop):
            checkpoint.save_now(engine)
    except Exception as exc:  # a run whose last checkpoint is not on disk has not finished
        kept = engine.checkpoints.find("last")
        reason = report_error(engine, exc) + (f"; the last good checkpoint is {kept}" if kept else "")
        state = RunState.FAILED
    if state in (RunState.FINISHED, RunState.FAILED):
        engine.notifier.fire(state.value, reason, wait=True)  # run.notify_command; never raises
    with contextlib.suppress(Exception):
        engine.report.mark(state.value, reason)
    engine.state = state
    try:
        engine.log.close()
    except OSError as exc:
        reason = report_error(engine, exc)
        state = RunState.FAILED
    engine.final_state = state.value
    with contextlib.suppress(Exception):
        engine.data.close()
    engine.release()
    if engine.dist is not None:
        from .distributed import close

        with contextlib.suppress(Exception):
            close(clean=state == RunState.FINISHED)
    engine.set_state(state, reason)
    engine.report.emit(E.Finished, state=state.value, run_dir=str(engine.run_dir), reason=reason)


def report_error(engine: Engine, exc: Exception) -> str:
    """An exception that ended the run (or its final checkpoint) as a RunError and a mark."""
    message, fix = describe_failure(exc, engine.cfg, engine.dist, engine.run_dir)
    engine.report.emit(E.RunError, message=message, fix=fix)
    with contextlib.suppress(Exception):
        engine.report.mark("error", message + (f"; fix: {fix}" if fix else ""))
    return message


def describe_failure(exc: Exception, cfg: Config, dist=None, run_dir: Path | None = None) -> tuple[str, str]:
    """(one-line message, fix) for an exception that ended a run."""
    message, fix = f"{type(exc).__name__}: {exc}".strip(), ""
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        message = "CUDA out of memory"
        fix = f"use a smaller batch, e.g. --set data.batch_size={max(1, cfg.data.batch_size // 2)}"
    elif isinstance(exc, OSError) and disk_full(exc):
        message, _, fix = disk_full_message(Path(exc.filename or run_dir or cfg.log.dir)).partition("; fix: ")
    elif isinstance(exc, OSError):
        fix = "check the file named above, its permissions and the free disk space"
    elif isinstance(exc, FloatingPointError):
        message, _, fix = str(exc).partition("; fix: ")
    elif dist is not None and isinstance(exc, (RuntimeError, ConnectionError)):
        message = f"rank {dist.rank}: lost contact with the other ranks ({message[:160]})"
        fix = "a worker process died or was killed; see the launcher's message for which rank"
    elif type(exc).__name__ == "DataError":
        message = str(exc)
    message = message.splitlines()[0][:300] if message else type(exc).__name__
    return message, fix
