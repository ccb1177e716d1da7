"""A stand-in session that replays a fixed list of events (snapshot tests, dashboard tests).

It implements deeptui.engine.session.Session and has no thread: `start()` makes every event
readable at once, and `send` records the command and answers it with CommandApplied, or
CommandRejected when `reject` says so.
"""

from __future__ import annotations

from pathlib import Path

from deeptui.engine import commands as C
from deeptui.engine import events as E


class FakeSession:
    def __init__(
        self, cfg, events: list[E.Event], run_dir: str | Path = "/runs/fake", alive: bool = True, final_state: str = ""
    ):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.events = E.EventBuffer()
        self._script = list(events)
        self._alive_after_start = alive
        self.alive = False
        self.final_state = final_state
        self.bad_input = False
        self.interactive = True
        self.replayed = 0
        self.sent: list[C.Command] = []
        self.reject: dict[str, str] = {}  # command class name -> reason

    def start(self) -> None:
        self.alive = self._alive_after_start
        for ev in self._script:
            self.events.append(ev)

    def send(self, command: C.Command) -> int:
        self.sent.append(command)
        name = type(command).__name__
        last = self._script[-1] if self._script else E.Event(0.0, 1, 0)
        if name in self.reject:
            self.events.append(
                E.CommandRejected(
                    last.time_s, last.epoch, last.step, command_id=command.id, command=name, reason=self.reject[name]
                )
            )
        elif self.alive:
            self.events.append(
                E.CommandApplied(
                    last.time_s, last.epoch, last.step, command_id=command.id, command=name, detail="(fake)"
                )
            )
        return command.id

    def shutdown(self, reason: str = "quit", timeout: float = 30.0) -> bool:
        self.alive = False
        self.final_state = self.final_state or "stopped"
        return True

    def detach(self) -> None:
        self.alive = False

    def wait_finished(self, timeout: float) -> bool:
        return not self.alive
