"""The run's state as one enum, and the training counters and settings as one dataclass.

Engine, events, dashboard and command line share RunState; its values are the plain strings
that events carry (`state="running"`), so `RunState.PAUSED == "paused"` holds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum


class RunState(str, Enum):
    """Every layer spells a run's state with this enum and asks it the questions below; no state
    is written as a string elsewhere."""

    STARTING = "starting"  # the front end is up; the engine is not yet
    RUNNING = "running"
    PAUSED = "paused"
    TIMING = "timing"  # the batch-vs-loop timing runs; training waits
    COMPILING = "compiling"  # torch.compile builds a variant; the first step takes long
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # read back from a run directory: killed, crashed (no end record)
    SUSPENDED = "suspended"  # its process is stopped (SIGSTOP, ctrl+z): deeptui ls tells it so

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of(cls, value: str) -> RunState:
        """The state an event or a file names; an unknown word (a newer deeptui's) reads as
        interrupted rather than failing the reader."""
        try:
            return cls(value)
        except ValueError:
            return cls.INTERRUPTED

    @property
    def ended(self) -> bool:
        return self in (RunState.FINISHED, RunState.STOPPED, RunState.FAILED, RunState.INTERRUPTED)

    @property
    def live(self) -> bool:
        """The run goes on: it may train again and takes commands."""
        return not self.ended

    @property
    def busy(self) -> bool:
        """Training waits for something other than the user: a timing or a compile."""
        return self in (RunState.TIMING, RunState.COMPILING)

    @property
    def ok(self) -> bool:
        """Exit 0: it finished, or the user stopped it."""
        return self in (RunState.FINISHED, RunState.STOPPED)

    @property
    def can_resume(self) -> bool:
        """`--resume` continues it from its newest checkpoint."""
        return self in (RunState.STOPPED, RunState.FAILED, RunState.INTERRUPTED)


# The reasons a StateChanged gives for a pause: the user's, or the engine's own after a
# non-finite loss (which waits for a decision: no automatic timing then).
PAUSED_BY_USER = "paused by user"
PAUSED_ON_NAN = "non-finite loss"


@dataclass
class TrainState:
    """Where the run is and what the user set; touched only by the engine thread once it runs.
    A checkpoint keeps `state_dict()`; a resume starts from `load_state_dict()`. (The run's time
    is the engine's RunClock, saved beside these.)"""

    optimizer: str  # the optimizer's name in engine.registry
    base_lr: float  # parameter groups keep their ratio to it
    epoch: int = 0  # completed epochs
    step: int = 0  # training steps done, over the whole run
    batch_in_epoch: int = 0  # steps done in the current epoch
    samples_seen: int = 0  # by this process (a data-parallel run: per rank)
    mode: str = "train"  # the model's mode during training steps
    freeze_override: bool | None = None  # set when the user froze/unfroze by hand
    lr_override: bool = False  # the user set the lr by hand: [schedule] lr no longer acts
    best_accuracy: float = -1.0  # the best test accuracy so far (best.pt holds that model)
    best_epoch: int = 0

    def state_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["freeze_override"] = -1 if self.freeze_override is None else int(self.freeze_override)
        return d

    def load_state_dict(self, d: dict) -> None:
        fo = int(d["freeze_override"])
        self.optimizer, self.base_lr, self.mode = str(d["optimizer"]), float(d["base_lr"]), str(d["mode"])
        self.epoch, self.step = int(d["epoch"]), int(d["step"])
        self.batch_in_epoch, self.samples_seen = int(d["batch_in_epoch"]), int(d["samples_seen"])
        self.freeze_override = None if fo < 0 else bool(fo)
        self.best_accuracy = float(d.get("best_accuracy", -1.0))  # absent before deeptui 0.2
        self.best_epoch = int(d.get("best_epoch", 0))
        self.lr_override = bool(d.get("lr_override", False))  # absent before the lr schedule
