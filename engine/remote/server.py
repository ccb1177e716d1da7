"""ControlServer: serves one engine's events and commands on <run_dir>/control.sock."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path

from .. import events as E
from ..errors import RemoteError, RunDirError
from ..feed import Feed
from ..replay import Replay
from ..runlog import open_private
from ..state import RunState
from ..system import summary
from .wire import MAX_LINE, PID_NAME, PROTOCOL, SOCKET_NAME, address, decode_command, encode, encode_event, is_live

LISTEN_BACKLOG = 128  # clients that may wait to be accepted at once (ls, attach, scripts)
SEND_TIMEOUT = 30.0  # a client that reads nothing for this long is dropped
CHUNK = 256  # events per write while replaying the history


class ControlServer:
    """Serves one engine's events and commands on `<run_dir>/control.sock` until the run ends.

    One listener thread (which also follows the events, for Status and to notice Finished) and
    two threads per client: a writer (history, then live events) and a reader (commands).
    Nothing here blocks the training thread: it only reads the EventBuffer and calls send().
    """

    def __init__(self, engine, path: Path | None = None):
        self.engine = engine
        self.path = Path(path) if path is not None else Path(engine.run_dir) / SOCKET_NAME
        self.pid_path = self.path.with_name(PID_NAME)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._clients: list[_Client] = []
        self._lock = threading.Lock()
        self._ino = None
        self._follow_lock = threading.Lock()
        # The history a new client gets, folded as the events come (on this server's thread, never
        # the training thread's): its size follows the screen, not the run's length.
        self.replay = getattr(engine, "history", None) or Replay()  # a resume's: the engine folded it once
        replayed = getattr(engine, "replayed", 0)  # a resume's history opens the buffer: folded above
        self._journal = getattr(getattr(engine, "report", None), "log", None)
        # from the history's end on; the replay holds its journal lines (each non-transient event)
        self._feed = Feed(engine.events, self._journal, replayed, self.replay.lines, replayed)
        self.run_started: E.RunStarted | None = None
        self.finished = False
        self.status = {
            "type": "Status",
            "protocol": PROTOCOL,
            "pid": os.getpid(),
            "state": RunState.STARTING.value,
            "epoch": 0,
            "step": 0,
            "loss": None,
            "preset": "",
            "clients": 0,
        }

    def start(self) -> ControlServer:
        if os.path.lexists(self.path):
            if is_live(self.path):
                raise RemoteError(
                    f"{self.path}: another deeptui process serves this run",
                    fix=f"attach to it with 'deeptui attach {self.path.parent}'",
                )
            # is_live removed the stale socket of a crashed run.
        # Bind under a temporary name, restrict it to the owner, listen, then rename into place:
        # control.sock appears only when it accepts, and never with a wider mode.
        tmp = self.path.with_name(f".{SOCKET_NAME}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with address(tmp) as addr:
                sock.bind(addr)
            os.chmod(tmp, 0o600)
            sock.listen(LISTEN_BACKLOG)
            sock.settimeout(0.25)
            os.replace(tmp, self.path)
        except OSError as e:
            sock.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise RemoteError(
                f"{self.path}: cannot create the control socket ({e.strerror or e}); "
                "fix: check the run directory's permissions"
            ) from None
        self._ino = os.stat(self.path).st_ino
        self._listener = sock
        with contextlib.suppress(OSError, RunDirError), open_private(self.pid_path, append=False) as f:
            f.write(f"{os.getpid()}\n")
        self._thread = threading.Thread(target=self._serve, name="deeptui-control", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving: clients get the events up to Finished (within `timeout`), then the
        socket and pid files are removed. Idempotent."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._remove_files()
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            c.writer.join(max(0.0, deadline - time.monotonic()))
            c.close()
            c.reader.join(max(0.0, deadline - time.monotonic()))

    @property
    def clients(self) -> int:
        with self._lock:
            return sum(1 for c in self._clients if not c.closed)

    def _remove_files(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with contextlib.suppress(OSError):
            if self._ino is not None and os.stat(self.path).st_ino == self._ino:
                self.path.unlink()
        with contextlib.suppress(OSError):
            if self.pid_path.read_text().strip() == str(os.getpid()):
                self.pid_path.unlink()

    def _serve(self) -> None:
        while not self._stop.is_set() and not self.finished:
            self._follow_events()
            if self.finished:
                break
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                break
            client = _Client(self, conn)
            with self._lock:
                self._clients = [c for c in self._clients if not c.closed] + [client]
            client.start()
        # The run ended (or close() was called): accept no one new; connected clients still
        # get the events up to Finished from their writers.
        self._remove_files()

    def _follow_events(self) -> None:
        with self._follow_lock:  # the listener, Status requests and new clients all catch up here
            self._catch_up()

    def _catch_up(self) -> None:
        events = self._feed.read()  # with what the bounded buffer dropped before it was read
        for ev in events:
            self.replay.add(ev)
        self._track(events)

    def _track(self, events: list[E.Event]) -> None:
        st = self.status
        for ev in events:
            st["epoch"], st["step"] = ev.epoch, ev.step
            if isinstance(ev, E.RunStarted):
                self.run_started = ev
                st["preset"] = ev.preset
            elif isinstance(ev, E.StateChanged):
                st["state"] = ev.state
            elif isinstance(ev, E.StepMetrics):
                st["loss"] = ev.loss
            elif isinstance(ev, E.SystemStats):
                st["system"] = summary(ev)  # the machine's figures, for `deeptui ls`
            elif isinstance(ev, E.Finished):
                st["state"] = ev.state
                self.finished = True

    def history(self) -> tuple[list[E.Event], int]:
        """What a new client gets before the live events: the run's replay (engine.replay: every
        event but the training rows, which come folded at the screen's resolution), and the
        buffer's cursor where the live events go on. Built from what this thread has folded: no
        file is read, and the training thread is never asked for anything."""
        with self._follow_lock:
            self._catch_up()
            return self.replay.events(), Feed(self.engine.events, self._journal, self._feed.cursor, self._feed.lines)


class _Client:
    """One connection: a writer thread sends the history then the live events; a reader thread
    turns lines into engine commands and answers bad ones with an Error line."""

    def __init__(self, server: ControlServer, sock: socket.socket):
        self.server = server
        self.sock = sock
        sock.settimeout(SEND_TIMEOUT)
        self.closed = False
        self._send_lock = threading.Lock()
        self.writer = threading.Thread(target=self._write_events, name="deeptui-client-w", daemon=True)
        self.reader = threading.Thread(target=self._read_commands, name="deeptui-client-r", daemon=True)

    def start(self) -> None:
        self.writer.start()
        self.reader.start()

    def close(self) -> None:
        """Wake both threads: shutdown ends a blocked recv or send at once."""
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _send(self, data: bytes) -> bool:
        try:
            with self._send_lock:
                self.sock.sendall(data)
            return True
        except OSError:  # gone, or read nothing for SEND_TIMEOUT: drop this client only
            self.close()
            return False

    def error(self, message: str, cid=None) -> None:
        reply = {"type": "Error", "message": message}
        if isinstance(cid, int) and not isinstance(cid, bool):
            reply["id"] = cid
        self._send(encode(reply))

    def _write_events(self) -> None:
        buf = self.server.engine.events
        events, feed = self.server.history()  # then the live events, none dropped for a slow client
        history = True
        while not self.closed:
            for i in range(0, len(events), CHUNK):
                part = events[i : i + CHUNK]
                if not self._send(b"".join(encode_event(e) for e in part)):
                    return
                if any(isinstance(e, E.Finished) for e in part):
                    self.close()  # the client reads Finished, then EOF
                    return
            if history:  # what came before this client connected: shown, but not acted upon
                history = False
                if not self._send(encode({"type": "HistoryEnd"})):
                    return
            if self.server._stop.is_set() and not self.server.engine.alive:
                events = feed.read()
                if not events:
                    self.close()
                    return
                continue
            buf.wait(feed.cursor, 0.5)
            events = feed.read()

    def _read_commands(self) -> None:
        pending = bytearray()
        skipping = False  # inside a line longer than MAX_LINE: drop bytes until its newline
        try:
            while not self.closed:
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break  # the client went away; whatever it left half-written is dropped
                while data:
                    nl = data.find(b"\n")
                    if skipping:
                        if nl < 0:
                            break
                        skipping, data = False, data[nl + 1 :]
                        continue
                    if nl < 0:
                        if len(pending) + len(data) > MAX_LINE:
                            pending.clear()
                            skipping = True
                            self.error(f"line longer than {MAX_LINE // 1024} KiB: skipped")
                        else:
                            pending += data
                        break
                    line, data = bytes(pending) + data[:nl], data[nl + 1 :]
                    pending.clear()
                    if len(line) > MAX_LINE:
                        self.error(f"line longer than {MAX_LINE // 1024} KiB: skipped")
                    else:
                        self._handle(line)
        finally:
            self.close()
            with contextlib.suppress(OSError):
                self.sock.close()

    def _handle(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            obj = json.loads(line)
        except ValueError as e:  # also bad UTF-8
            self.error(f"not a JSON line ({str(e)[:80]})")
            return
        except RecursionError:
            self.error("JSON nested too deeply: a command is one flat object")
            return
        cid = obj.get("id") if isinstance(obj, dict) else None
        if isinstance(obj, dict) and obj.get("type") == "Status":
            self.server._follow_events()
            self._send(encode({**self.server.status, "clients": self.server.clients}))
            return
        try:
            cmd = decode_command(obj)
        except ValueError as e:
            self.error(str(e), cid)
            return
        self.server.engine.send(cmd)
