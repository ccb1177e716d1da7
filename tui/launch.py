"""The dashboard before the engine: Launch is the Session a dashboard watches while the engine is
built in a thread of its own (importing torch, loading the data, building the model take seconds
on a small machine); it tells what it is doing as Loading events, keeps the commands sent meanwhile,
and hands over to the engine once it is ready."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.state import RunState


class Launch:
    def __init__(self, cfg, build: Callable[[Callable[[str], None]], object], started_at: float | None = None):
        self.cfg = cfg
        self.run_dir = Path(".")  # not made yet
        self.events = E.EventBuffer()
        self.final_state = ""
        self.bad_input = False
        self.interactive = True
        self.replayed = 0
        self.engine = None  # the Engine, once built
        self.error: BaseException | None = None  # a setup error instead (SetupError: exit 2)
        self.ready = threading.Event()
        self.pending: list[C.Command] = []  # sent before the engine existed
        self._build = build  # build(stage) -> Engine; stage(text) says what it is doing
        self._t0 = time.monotonic() if started_at is None else started_at  # the engine's clock starts here too
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # the build's end against a quit that gives up waiting for it

    def stage(self, text: str) -> None:
        self.events.append(E.Loading(time.monotonic() - self._t0, 1, 0, stage=text))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="deeptui-launch", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            engine = self._build(self.stage)
            with self._lock:
                left = bool(self.final_state)  # quit while it was building: this engine never starts
                if not left:
                    self.engine = engine
            if left:
                engine.shutdown("quit while starting", timeout=30)
        except BaseException as exc:  # shown by the app; the CLI prints it and exits 2
            self.error = exc
        finally:
            self.ready.set()

    @property
    def alive(self) -> bool:
        return not self.ready.is_set()

    def send(self, command: C.Command) -> int:
        self.pending.append(command)
        return command.id

    def shutdown(self, reason: str = "quit", timeout: float = 30.0) -> bool:
        """Quit while loading: wait for the build (an import cannot be interrupted), then stop it.
        A build still running after `timeout` is left behind: the run is stopped before it started
        (final_state), and the engine it makes, if it makes one, is never started."""
        self.ready.wait(timeout)
        with self._lock:
            if self.engine is None and self.error is None:
                self.final_state = RunState.STOPPED
        if self.engine is not None:
            return bool(self.engine.shutdown(reason, timeout))
        return True

    def stopped_while_starting(self) -> str:
        """The line for a quit that came before the build ended."""
        recent = [e for e in self.events.read(0)[0] if isinstance(e, E.Loading)]
        doing = f" ({recent[-1].stage.rstrip(' .')})" if recent else ""
        return f"stopped while starting{doing}; nothing was trained"

    def detach(self) -> None:
        pass

    def wait_finished(self, timeout: float) -> bool:
        return self.ready.wait(timeout)
