"""How a run is stopped short: the non-finite-loss policy (through the run's verbs only), and
failures turned into one-line events with their fix."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from . import events as E
from .config import Config
from .errors import SetupError
from .runlog import disk_full, disk_full_parts
from .state import PAUSED_ON_NAN, RunState
from .surface import Run


def on_nonfinite(run: Run, loss: float) -> None:
    """A non-finite training loss: stop (raise), pause for a dashboard, or go on, as run.on_nan
    says. The NonFiniteLoss event comes first whatever the policy: the plots mark its step."""
    policy = run.cfg.run.on_nan
    if policy == "auto":
        policy = "pause" if run.interactive else "stop"
    msg = f"training loss is {loss} at step {run.train.step}"
    what = {
        "stop": "the run stops",
        "pause": "paused; rewind to a good checkpoint, stop, or stay paused",
        "continue": "continuing (run.on_nan = continue)",
    }[policy]
    run.report.emit(E.NonFiniteLoss, loss=loss, policy=policy, message=f"{msg}: {what}")
    if policy == "stop":
        lower = f"--set optimizer.lr={run.train.base_lr / 10:g}"
        raise RunFailure(msg, fix=f'lower the learning rate (e.g. {lower}) or set run.on_nan = "pause"')
    if policy == "pause":
        run.set_state(RunState.PAUSED, PAUSED_ON_NAN)
        run.notify("paused", msg)  # in its own thread: the run waits for the user, not for it


class RunFailure(Exception):
    """A run that cannot go on, with its fix as a field (not parsed back out of the message)."""

    def __init__(self, message: str, fix: str = ""):
        super().__init__(message)
        self.message, self.fix = message, fix


def report_error(run: Run, exc: BaseException) -> str:
    """An exception that ended the run (or its final checkpoint) as a RunError event."""
    message, fix = describe_failure(exc, run.cfg, run.dist, run.run_dir)
    with contextlib.suppress(Exception):  # a full disk: the event still reaches the front ends
        run.report.emit(E.RunError, message=message, fix=fix)
    return message


def describe_failure(exc: Exception, cfg: Config, dist=None, run_dir: Path | None = None) -> tuple[str, str]:
    """(one-line message, fix) for an exception that ended a run."""
    message, fix = f"{type(exc).__name__}: {exc}".strip(), ""
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        message = "CUDA out of memory"
        fix = f"use a smaller batch, e.g. --set data.batch_size={max(1, cfg.data.batch_size // 2)}"
    elif isinstance(exc, OSError) and disk_full(exc):
        message, fix = disk_full_parts(Path(exc.filename or run_dir or cfg.log.dir))
    elif isinstance(exc, OSError):
        fix = "check the file named above, its permissions and the free disk space"
    elif isinstance(exc, RunFailure):
        message, fix = exc.message, exc.fix
    elif dist is not None and isinstance(exc, (RuntimeError, ConnectionError)):
        message = f"rank {dist.rank}: lost contact with the other ranks ({message[:160]})"
        fix = "a worker process died or was killed; see the launcher's message for which rank"
    elif isinstance(exc, SetupError):  # e.g. a DataError met while training: its fix is a field
        message, fix = exc.message, exc.fix
    message = message.splitlines()[0][:300] if message else type(exc).__name__
    return message, fix
