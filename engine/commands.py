"""What the UI may ask of the engine: plain frozen dataclasses (numbers, strings, tuples only).

Every command is applied only between training steps and answered with a CommandApplied or
CommandRejected event carrying the same `id`, so the UI shows what happened, not what was asked.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

_ids = itertools.count(1)


def _next_id() -> int:
    return next(_ids)


@dataclass(frozen=True)
class Command:
    id: int = field(default_factory=_next_id, kw_only=True)


@dataclass(frozen=True)
class Pause(Command):
    pass


@dataclass(frozen=True)
class Resume(Command):
    pass


@dataclass(frozen=True)
class Stop(Command):
    """End the run at the next step boundary; the logs are flushed and a checkpoint saved."""

    reason: str = "stop requested"
    save_checkpoint: bool = True


@dataclass(frozen=True)
class SwitchOptimizer(Command):
    """Switch to `name`, or to the next in the preset's choices when name is empty."""

    name: str = ""


@dataclass(frozen=True)
class SetFrozen(Command):
    """Freeze (True) or unfreeze (False) the pretrained features; overrides the schedule."""

    frozen: bool = True


@dataclass(frozen=True)
class SetMode(Command):
    """Run the training steps with the model in 'train' or 'eval' mode."""

    mode: str = "train"


@dataclass(frozen=True)
class SetEvalMode(Command):
    """Evaluate the test set in 'eval' mode, 'train' mode, or 'both' (one test row per mode)."""

    mode: str = "both"


@dataclass(frozen=True)
class SetLearningRate(Command):
    """Set the base learning rate; parameter groups keep their ratio to it."""

    lr: float = 0.01


@dataclass(frozen=True)
class ScaleLearningRate(Command):
    """Multiply every group's learning rate by `factor` (the dashboard's + and - keys)."""

    factor: float = 2.0


@dataclass(frozen=True)
class EvaluateNow(Command):
    pass


@dataclass(frozen=True)
class SaveCheckpoint(Command):
    pass


@dataclass(frozen=True)
class RunTiming(Command):
    """Pause training, run the batch-vs-loop timing on the training device, resume."""

    repeats: int = 51
    sizes: tuple = (2500, 1500, 1000)  # the lecture's x 2500x1000 and w 1500x1000


@dataclass(frozen=True)
class FlushLogs(Command):
    """Flush the CSV files now (the dashboard's export key)."""

    pass


@dataclass(frozen=True)
class RestoreCheckpoint(Command):
    """Go back to a checkpoint of this run: which = "last", "best" or "epoch N" (offered after a
    non-finite loss); then the learning rate is `lr` when > 0, else the saved one times lr_scale."""

    which: str = "last"
    lr: float = 0.0
    lr_scale: float = 1.0


ALL = (
    Pause,
    Resume,
    Stop,
    SwitchOptimizer,
    SetFrozen,
    SetMode,
    SetEvalMode,
    SetLearningRate,
    ScaleLearningRate,
    EvaluateNow,
    SaveCheckpoint,
    RunTiming,
    FlushLogs,
    RestoreCheckpoint,
)
BY_NAME = {c.__name__: c for c in ALL}
