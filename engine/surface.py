"""The narrow surface of a run: what the engine's parts (command handlers, the non-finite policy,
checkpoints, the notifier, the machine monitor) may read of a run and the verbs they may call.
Run is the run's life (state, stop, checkpoints, rewind); Steerable, its `trainer`, the settings
a user steers. The Engine and its Trainer implement them, and so do a watched loop
(engine.watch) and its OwnTrainer (engine.steer); only they assign the run's fields. A verb that
a run cannot take raises Refused before it changes anything: the command is rejected with why."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .state import RunState, TrainState

if TYPE_CHECKING:
    from .config import Config
    from .events import EventBuffer
    from .metrics import Reporter, Settings


class Refused(Exception):
    """A verb this run cannot take (a watched loop asked to evaluate a test set it does not have, to
    switch to an optimizer it was not given): raised before anything changed; the command handler
    rejects the command with this message as its reason."""


class Steerable(Protocol):
    """The model's settings: read them here, change each with one call (the run tells it)."""

    has_features: bool  # something to freeze: the features, or model.freeze's modules
    freeze_key: str  # where the user names the modules to freeze: model.freeze, deeptui.watch(freeze=...)
    choices: tuple  # the optimizers that "next optimizer" cycles through

    @property
    def train(self) -> TrainState:
        """Counters and settings: read them, never assign them (the verbs below do)."""
        ...

    @property
    def frozen(self) -> bool: ...

    @property
    def eval_mode(self) -> str: ...

    def settings(self) -> Settings: ...

    def describe_optimizer(self) -> str: ...

    def freeze_label(self) -> str:
        """What freezing acts on, for messages: 'features' or the modules' names."""
        ...

    def model_label(self) -> str: ...

    def sync_note(self, optimizer: str) -> str:
        """Why this optimizer costs a host sync per step on this device ('' when it does not)."""
        ...

    def finite(self) -> bool:
        """Every weight finite, and the last training loss too."""
        ...

    def switch_optimizer(self, name: str) -> None:
        """A new optimizer `name` (its state starts fresh); Refused for one it cannot switch to."""
        ...

    def set_frozen(self, frozen: bool, by_user: bool = True) -> int:
        """Freeze or unfreeze (by the user: the schedule no longer acts); the parameters changed."""
        ...

    def set_mode(self, mode: str) -> None: ...

    def set_eval_mode(self, mode: str) -> None: ...

    def set_lr(self, lr: float) -> None: ...


class Run(Protocol):
    cfg: Config
    run_dir: Path
    device: Any  # torch.device
    dist: Any  # engine.distributed.DistInfo in a data-parallel run, else None
    is_main: bool  # rank 0 (or the only process): writes the run directory, takes the user's commands
    interactive: bool  # a dashboard watches: on_nan = "auto" pauses
    report: Reporter  # every event goes out here
    checkpoints: Any  # engine.checkpoint.CheckpointFiles (which uses this surface)
    trainer: Steerable

    # ---- reading ----------------------------------------------------------------------------

    @property
    def events(self) -> EventBuffer: ...

    @property
    def state(self) -> RunState: ...

    @property
    def train(self) -> TrainState:
        """The trainer's counters and settings (read only)."""
        ...

    @property
    def stopping(self) -> bool:
        """A stop was asked for: the run ends at the next step boundary."""
        ...

    def now(self) -> float:
        """The run's clock (seconds since launch, and before a resume)."""
        ...

    def state_dict(self) -> dict:
        """The parts of a checkpoint: each part's own state_dict()."""
        ...

    def commands_waiting(self) -> bool:
        """A command came in (a long verb, such as the timing, gives way to it)."""
        ...

    # ---- verbs: each applies at once and tells its events --------------------------------

    def set_state(self, state: RunState, reason: str = "") -> None: ...

    def request_stop(self, reason: str, save_checkpoint: bool = True) -> None: ...

    def evaluate(self) -> None:
        """The test set, now (Refused where the run has none of its own: a watched loop)."""
        ...

    def save_checkpoint(self, epoch: int | None = None, best: bool = False) -> list[Path]: ...

    def rewind(self, payload: dict, path: Path) -> int:
        """Go back to a checkpoint of this run (the clock goes on); the rows logged past it."""
        ...

    def notify(self, what: str, reason: str = "") -> None:
        """run.notify_command, in a thread of its own."""
        ...
