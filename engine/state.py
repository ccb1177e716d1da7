"""The run's state as one enum, and the training counters and settings as one dataclass.

Engine, events, dashboard and command line share RunState; its values are the plain strings
that events carry (`state="running"`), so `RunState.PAUSED == "paused"` holds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum


class RunState(str, Enum):
    STARTING = "starting"  # the front end is up; the engine is not yet
    RUNNING = "running"
    PAUSED = "paused"
    TIMING = "timing"  # the batch-vs-loop timing runs; training waits
    COMPILING = "compiling"  # torch.compile builds a variant; the first step takes long
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    @property
    def ended(self) -> bool:
        return self in (RunState.FINISHED, RunState.STOPPED, RunState.FAILED)


@dataclass
class TrainState:
    """Where the run is and what the user set; touched only by the engine thread once it runs.
    A checkpoint keeps `state_dict()`; a resume starts from `load_state_dict()`."""

    optimizer: str  # the optimizer's name in engine.registry
    base_lr: float  # parameter groups keep their ratio to it
    epoch: int = 0  # completed epochs
    step: int = 0  # training steps done, over the whole run
    batch_in_epoch: int = 0  # steps done in the current epoch
    samples_seen: int = 0  # by this process (a data-parallel run: per rank)
    mode: str = "train"  # the model's mode during training steps
    freeze_override: bool | None = None  # set when the user froze/unfroze by hand
    time_s: float = 0.0  # run time before this process started (a resume)
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
        self.time_s = float(d["time_s"])
        self.best_accuracy = float(d.get("best_accuracy", -1.0))  # absent before deeptui 0.2
        self.best_epoch = int(d.get("best_epoch", 0))
