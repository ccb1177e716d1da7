"""The wire format of the control socket: addresses, connecting, and the JSON form of commands
and events (see engine.remote)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
from pathlib import Path

from .. import commands as C
from .. import events as E
from ..errors import RemoteError

PROTOCOL = 1  # the JSON lines' version (README, "The control socket"): a Status answer carries it
SOCKET_NAME = "control.sock"
PID_NAME = "deeptui.pid"
MAX_LINE = 64 * 1024  # longest accepted client line; longer ones are skipped, not buffered
MAX_EVENT_LINE = 1024 * 1024  # longest event line a client reads; longer ones are skipped


# ---- addresses ---------------------------------------------------------------------------


@contextlib.contextmanager
def address(path: Path):
    """A path short enough for AF_UNIX (108 bytes): deep run directories are reached through
    /proc/self/fd/N of an open directory descriptor (Linux)."""
    path = Path(path)
    if len(os.fsencode(str(path))) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def connect(path: Path, timeout: float = 5.0) -> socket.socket:
    """Connect to a run's control socket. A socket file nobody listens on (a crashed run) is
    removed and reported as not live."""
    path = Path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with address(path) as addr:
            sock.connect(addr)
    except FileNotFoundError:
        sock.close()
        raise RemoteError(
            f"{path}: no control socket; the run is not live (or was started by an older deeptui)",
            fix="pass the directory of a running run (deeptui ls)",
        ) from None
    except ConnectionRefusedError:
        sock.close()
        # The server renames its socket into place only once it listens, so refused means stale.
        with contextlib.suppress(OSError):
            path.unlink()
        raise RemoteError(
            f"{path}: stale control socket of a run that is no longer running (removed)",
            fix="pass the directory of a running run (deeptui ls)",
        ) from None
    except OSError as e:
        sock.close()
        raise RemoteError(
            f"{path}: cannot connect ({e.strerror or e})", fix="check the path and that you own the run"
        ) from None
    sock.settimeout(None)
    return sock


def lines(f, limit: int):
    """The lines of a binary stream, each at most `limit` bytes: a longer one is skipped (read in
    pieces up to its newline), never held in memory whole."""
    while True:
        line = f.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit:
            yield line
            continue
        while line and not line.endswith(b"\n"):  # the rest of the too-long line
            line = f.readline(limit)


def is_live(path: Path) -> bool:
    try:
        connect(path, timeout=2.0).close()
        return True
    except RemoteError:
        return False


# ---- the wire format ---------------------------------------------------------------------


def encode(obj: dict) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def as_message(obj) -> dict:
    """A command or an event as a JSON-ready object: its class name under "type", its fields."""
    return {"type": type(obj).__name__, **dataclasses.asdict(obj)}


def encode_event(event: E.Event) -> bytes:
    return (E.to_json(event) + "\n").encode()


decode_event = E.from_json  # the socket's lines and events.jsonl are the same JSON


_PLAIN = (str, int, float, bool)


def _field_value(cmd: str, key: str, kind, value):
    """Check one command field against its declared type; raise ValueError naming the fix."""
    kind = getattr(kind, "__name__", kind)
    ok = {
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "tuple": lambda v: isinstance(v, list) and all(isinstance(x, _PLAIN) for x in v),
    }.get(kind)
    if ok is None or not ok(value):
        want = {
            "tuple": "a list",
            "float": "a number",
            "int": "an integer",
            "bool": "true or false",
            "str": "a string",
        }.get(kind, kind)
        raise ValueError(f"{cmd}.{key} must be {want}, not {json.dumps(value)[:40]}")
    if kind == "float":
        return float(value)
    if kind == "tuple":
        return tuple(value)
    return value


def decode_command(obj) -> C.Command:
    """A JSON object into a command dataclass; ValueError with a one-line reason otherwise."""
    if not isinstance(obj, dict):
        raise ValueError('a command is a JSON object like {"type": "Pause"}')
    name = obj.get("type")
    cls = C.BY_NAME.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown command type {json.dumps(name)[:60]}; known: {', '.join(C.BY_NAME)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in obj.items():
        if key == "type":
            continue
        if key not in fields:
            known = ", ".join(k for k in fields) or "none"
            raise ValueError(f"{name} has no field {key[:40]!r}; fields: {known}")
        kwargs[key] = _field_value(name, key, fields[key].type, value)
    return cls(**kwargs)
