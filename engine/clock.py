"""The run's two clocks: its time since launch (events' time_s, the header; it never goes back),
and its training time (what samples/s and the ETA count: pauses, timings, compiles, evaluations
and checkpoints left out)."""

from __future__ import annotations

import contextlib
import threading
import time


class RunClock:
    """`now()` reads the run's time: seconds since launch, plus the time of the processes before
    a resume. `trained()` reads the training time: it runs only outside `held()` stretches, and
    is held from the start until the loop lets it run (`release()`)."""

    def __init__(self, started_at: float | None = None):
        self._t0 = time.monotonic() if started_at is None else started_at
        self._offset = 0.0  # run time before this process (a resume)
        self._trained = 0.0  # training time up to the current stretch
        self._since: float | None = None  # when the current training stretch began; None while held
        self._holds = 1  # held until the loop trains
        self._lock = threading.Lock()  # the training thread holds and releases; others read

    def now(self) -> float:
        return self._offset + time.monotonic() - self._t0

    def trained(self) -> float:
        with self._lock:
            return self._trained + (time.monotonic() - self._since if self._since is not None else 0.0)

    def hold(self) -> None:
        with self._lock:
            if self._holds == 0 and self._since is not None:
                self._trained += time.monotonic() - self._since
                self._since = None
            self._holds += 1

    def release(self) -> None:
        with self._lock:
            self._holds = max(0, self._holds - 1)
            if self._holds == 0:
                self._since = time.monotonic()

    @contextlib.contextmanager
    def held(self):
        """Training waits inside: the training clock stops, the run's clock goes on."""
        self.hold()
        try:
            yield
        finally:
            self.release()

    def continue_from(self, time_s: float, trained_s: float) -> None:
        """A resume: both clocks go on from a checkpoint's readings (loading counts from launch)."""
        with self._lock:
            self._offset = time_s
            self._trained = trained_s
            if self._since is not None:
                self._since = time.monotonic()

    def state_dict(self) -> dict:
        return {"time_s": self.now(), "train_s": self.trained()}
