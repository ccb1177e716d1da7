"""The thread boundary of a run in this process: EngineThread, the one thread a run trains in,
and ThreadSession, the Session surface over it (commands in through a queue, events out).

The thread is started plainly (`start(target)`), or made by engine.build.build_in_thread, which
builds the engine inside the thread and then holds it until start() lets it train: all torch work
of a run then happens in one thread (one OpenMP team; see build_in_thread).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from . import commands as C


class EngineThread:
    def __init__(self, thread: threading.Thread | None = None, go: threading.Event | None = None):
        self._thread = thread
        self._go = go  # set by build_in_thread: the thread waits on it before training

    def start(self, target: Callable[[], object]) -> threading.Thread:
        if self._go is not None:  # its thread is waiting to train
            self._go.set()
        else:
            self._thread = threading.Thread(target=target, name="deeptui-engine", daemon=True)
            self._thread.start()
        return self._thread

    def release(self) -> None:
        """A thread that was never started runs now (it finds the Stop queued before it)."""
        if self._go is not None:
            self._go.set()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout`; True when the thread has ended (or never existed)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        started = self._go is None or self._go.is_set()
        return self._thread is not None and self._thread.is_alive() and started


class ThreadSession:
    """engine.session.Session for a run whose `run()` trains in an EngineThread of this process:
    the commands queue that the loop empties between steps, and the thread's life."""

    def __init__(self):
        self.commands: queue.Queue = queue.Queue()
        self.thread = EngineThread()  # build_in_thread replaces it with the thread it built in
        self.final_state = ""
        self.bad_input = False  # failed on its input: Finished.bad_input
        self.interactive = False  # a dashboard watches: on_nan = "auto" pauses instead of stopping
        self.replayed = 0  # a local run has no history from before

    def run(self) -> str:  # pragma: no cover - the Engine's
        raise NotImplementedError

    def send(self, command: C.Command) -> int:
        self.commands.put(command)
        return command.id

    def start(self) -> threading.Thread:
        return self.thread.start(self.run)

    def shutdown(self, reason: str = "quit", timeout: float = 30.0) -> bool:
        """Ask the run to stop at the next step boundary and wait; True when the thread ended."""
        self.send(C.Stop(reason=reason))
        self.thread.release()  # never started: it runs, sees the Stop first, and ends "stopped"
        return self.thread.join(timeout)

    def detach(self) -> None:
        """A local run lives in this process: there is nothing to detach from."""

    @property
    def alive(self) -> bool:
        return self.thread.alive

    def wait_finished(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.alive

    def commands_waiting(self) -> bool:
        return not self.commands.empty()
