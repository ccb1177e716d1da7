"""RemoteSession: a run in another process, seen through its control socket."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import random
import socket
import threading
from pathlib import Path

from .. import commands as C
from .. import events as E
from .wire import MAX_EVENT_LINE, SOCKET_NAME, as_message, connect, decode_event, encode, lines

LIVE_EVENTS = 20_000  # live events a client's buffer keeps beyond the history (the dashboard reads it at 4 Hz)


class RemoteSession:
    """A run in another process, seen through its control socket, with the Engine's surface.

    `events` fills from a reader thread: the whole history first, then the live stream.
    `shutdown()` stops the run; `detach()` only disconnects and the run goes on.
    """

    def __init__(self, run_dir: str | Path, *, connect_timeout: float = 5.0):
        from ..config import load_config

        p = Path(run_dir)
        self.run_dir = p.parent if p.name == SOCKET_NAME else p
        self.path = self.run_dir / SOCKET_NAME
        self.connect_timeout = connect_timeout
        self.cfg = load_config(self.run_dir / "config.toml")
        self.events = E.EventBuffer(maxlen=None)  # the whole history, then bounded (HistoryEnd)
        self.final_state = ""
        self.bad_input = False
        self.interactive = True
        self.detached = False
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._finished = threading.Event()
        self._history_done = threading.Event()
        # events[:replayed] happened before we attached (no toasts, no dialogs); until the server's
        # HistoryEnd says where that ends, every event is history, however long it takes to come.
        self.replayed: float = math.inf
        self._last: E.Event | None = None
        # Ids in a range of their own, so answers meant for another dashboard are not taken for ours.
        self._ids = itertools.count(random.randrange(1, 2**40) << 16)

    def start(self) -> None:
        """Connect and start reading; raises RemoteError when the run is not live. Idempotent."""
        if self._sock is not None:
            return
        self._sock = connect(self.path, self.connect_timeout)
        self._reader = threading.Thread(target=self._read, name="deeptui-remote", daemon=True)
        self._reader.start()
        self._history_done.wait(self.connect_timeout)  # the history first, as a rule: one fold, then the poll

    @property
    def alive(self) -> bool:
        return (
            self._reader is not None and self._reader.is_alive() and not self._finished.is_set() and not self.detached
        )

    def send(self, command: C.Command) -> int:
        command = dataclasses.replace(command, id=next(self._ids))
        sock = self._sock
        if sock is None or self.detached:
            return command.id
        data = encode(as_message(command))
        try:
            with self._send_lock:
                sock.sendall(data)
        except OSError:
            pass  # the reader sees the connection end and says so
        return command.id

    def wait_finished(self, timeout: float) -> bool:
        return self._finished.wait(timeout)

    def shutdown(self, reason: str = "quit", timeout: float = 30.0) -> bool:
        """Stop the run (it saves a checkpoint and flushes its logs) and wait for Finished."""
        if self.alive:
            self.send(C.Stop(reason=reason))
            self._finished.wait(timeout)
        done = self._finished.is_set()
        self.detach()
        return done

    def detach(self) -> None:
        """Disconnect; the run goes on."""
        self.detached = True
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(5.0)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _read(self) -> None:
        f = self._sock.makefile("rb")
        try:
            for line in lines(f, MAX_EVENT_LINE):
                try:
                    obj = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if isinstance(obj, dict) and obj.get("type") == "HistoryEnd":
                    self.replayed = len(self.events)
                    self.events.limit(len(self.events) + LIVE_EVENTS)
                    self._history_done.set()
                    continue
                ev = decode_event(obj)
                if ev is None:
                    if isinstance(obj, dict) and obj.get("type") == "Error":
                        self._note(f"the run refused a message: {obj.get('message')}")
                    continue
                self._last = ev
                self.events.append(ev)
                if isinstance(ev, E.Finished):
                    self.final_state, self.bad_input = ev.state, ev.bad_input
                    self._finished.set()
        except OSError:
            pass
        finally:
            if not self._history_done.is_set():  # ended during the history: all of it was history
                self.replayed = len(self.events)
                self._history_done.set()
            with contextlib.suppress(OSError):
                f.close()
        if not self._finished.is_set() and not self.detached:
            self._note(
                "lost the connection to the run (its process ended or closed the socket); "
                f"see {self.run_dir / 'deeptui.log'}"
            )

    def _note(self, message: str) -> None:
        last = self._last
        self.events.append(
            E.Warning(
                last.time_s if last else 0.0, last.epoch if last else 0, last.step if last else 0, message=message
            )
        )
