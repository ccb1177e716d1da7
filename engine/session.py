"""The Session: what a front end may use of a run. The local Engine, the remote client
(engine.remote.client.RemoteSession) and the tests' FakeSession implement it.

Commands go in through send(); everything a front end shows comes from `events`, read with a
cursor (`events.read(cursor) -> (new events, next cursor)`), never from what it asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from .commands import Command
from .config import Config
from .events import EventBuffer


@runtime_checkable
class Session(Protocol):
    cfg: Config  # the resolved preset
    run_dir: Path
    events: EventBuffer  # every event of the run, for each reader to read with its cursor
    final_state: str  # "" while running; then finished, stopped or failed
    bad_input: bool  # it failed on its input (Finished.bad_input): exit 2
    interactive: bool  # a dashboard watches: a non-finite loss pauses (on_nan = "auto")
    replayed: float  # events[:replayed] happened before this session attached (inf: not known yet, all of it)

    @property
    def alive(self) -> bool:
        """The run is going on (started, not ended, not detached from)."""
        ...

    def send(self, command: Command) -> int:
        """Queue a command; returns its id, which the answering event carries."""
        ...

    def start(self) -> None: ...

    def shutdown(self, reason: str = "quit", timeout: float = 30.0) -> bool:
        """Stop the run (checkpoint, flush) and wait; True when it ended in time."""
        ...

    def detach(self) -> None:
        """Stop watching; a run in another process goes on."""
        ...

    def wait_finished(self, timeout: float) -> bool:
        """Wait up to `timeout` for the run to end; True when it has."""
        ...
