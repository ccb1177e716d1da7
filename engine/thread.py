"""EngineThread: the one thread a run trains in.

Started plainly (`start(target)`), or made by engine.build.build_in_thread, which builds the
engine inside the thread and then holds it until start() lets it train: all torch work of a run
then happens in one thread (one OpenMP team; see build_in_thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable


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
