"""TensorBoard event files beside the CSV files: from each event of the run, its metrics row's
numbers as scalars, its events.csv row as a text, the machine's readings, and the resolved config
as hparams. The scalar records are encoded here (protobuf and TFRecord framing by hand, CRC32C
over a batch at once) so that a live run's rows cost the training thread a queue put
(log.tensorboard = true writes them on a thread of its own) and `deeptui export RUN_DIR
--tensorboard` streams a run's history at file speed with constant memory. events.jsonl stays
the record.

TensorBoard is an optional extra (pip install 'deeptui[tensorboard]'); without it a run that asks
for it does not start, with a one-line message.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import events as E
from .errors import SetupError
from .history import kept_lines
from .replay import ROW
from .runlog import CSV_ROWS, JOURNAL, RunLog, open_private

TRAIN_SCALARS = ("loss", "accuracy", "lr", "samples_per_s", "frozen")
GPU_SCALARS = ("util_pct", "mem_used_mb", "temp_c", "power_w")
EVENT_FILES = "events.out.tfevents.*"
BATCH = 4096  # records framed and written at once
_files = itertools.count()


class TensorBoardMissing(SetupError):
    """log.tensorboard = true or `deeptui export --tensorboard` without the tensorboard package."""


def require(what: str = "log.tensorboard = true") -> None:
    """Raise TensorBoardMissing (one line, the fix) unless torch.utils.tensorboard can be used."""
    try:
        import torch.utils.tensorboard  # noqa: F401 - it imports tensorboard and says so when it is missing
    except ImportError:
        raise TensorBoardMissing(
            f"{what} needs the tensorboard package, which is not installed; fix: pip install "
            "'deeptui[tensorboard]' (or pip install tensorboard)"
            + (", or set log.tensorboard = false" if what.startswith("log.") else "")
        ) from None


def _flat(config: dict) -> dict:
    """The resolved preset as TensorBoard hparams: 'optimizer.lr' -> 0.05; arrays and tables as text."""
    out = {}
    for section, keys in config.items():
        for k, v in keys.items():
            out[f"{section}.{k}"] = v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
    return out


# ---- the records: protobuf by hand, TFRecord framing, CRC32C in batches ---------------------------


_SMALL = [bytes((i,)) for i in range(0x80)]


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _SMALL[n]
    if 0 <= n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if 0 <= n < 0x200000:
        return bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14))
    n &= (1 << 64) - 1  # an int64 as protobuf writes it
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc_table()  # CRC32C (Castagnoli), as TFRecords use it


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc32c_many(records: list[bytes]) -> list[int]:
    """CRC32C of each record: with numpy, records of one length at once, a byte column at a time
    (about a microsecond a record, where the table loop costs a hundred)."""
    try:
        import numpy as np
    except ImportError:
        return [crc32c(r) for r in records]
    table = np.array(CRC_TABLE, dtype=np.uint32)
    out = [0] * len(records)
    by_length: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_length.setdefault(len(r), []).append(i)
    for length, which in by_length.items():
        rows = np.frombuffer(b"".join(records[i] for i in which), dtype=np.uint8).reshape(len(which), length)
        c = np.full(len(which), 0xFFFFFFFF, dtype=np.uint32)
        for j in range(length):
            c = table[(c ^ rows[:, j]) & 0xFF] ^ (c >> 8)
        for i, v in zip(which, (c ^ 0xFFFFFFFF).tolist()):
            out[i] = v
    return out


def _masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


_LENGTH_CRC: dict[int, bytes] = {}


def framed(records: list[bytes]) -> bytes:
    """TFRecords: length, its masked CRC32C, the data, its masked CRC32C."""
    out = []
    for data, crc in zip(records, crc32c_many(records)):
        head = struct.pack("<Q", len(data))
        head_crc = _LENGTH_CRC.get(len(data))
        if head_crc is None:
            head_crc = _LENGTH_CRC[len(data)] = struct.pack("<I", _masked(crc32c(head)))
        out += (head, head_crc, data, struct.pack("<I", _masked(crc)))
    return b"".join(out)


_VALUE_HEAD: dict[str, bytes] = {}


def _value_head(tag: str) -> bytes:
    """Summary.Value's bytes up to its simple_value: field 1 (the value, its length), the tag."""
    head = _VALUE_HEAD.get(tag)
    if head is None:
        t = tag.encode()
        body = b"\x0a" + _varint(len(t)) + t + b"\x15"
        head = _VALUE_HEAD[tag] = b"\x0a" + _varint(len(body) + 4) + body
    return head


def scalars_event(wall: float, step: int, values: list[tuple[str, float]]) -> bytes:
    """An Event with a Summary of simple_value scalars, as SummaryWriter.add_scalar writes them."""
    summary = b"".join(_value_head(tag) + struct.pack("<f", v) for tag, v in values)
    return b"\x09" + struct.pack("<d", wall) + b"\x10" + _varint(step) + b"\x2a" + _varint(len(summary)) + summary


_ROW_HEADS = tuple(_value_head("train/" + n) for n in TRAIN_SCALARS)
_ROW_VALUES = struct.Struct("<" + "".join(f"{len(h)}sf" for h in _ROW_HEADS))
_ROW_SUMMARY = b"\x2a" + _varint(_ROW_VALUES.size)
_WALL = struct.Struct("<d")


def row_event(wall: float, step: int, loss: float, acc: float, lr: float, rate: float, frozen: float) -> bytes:
    """scalars_event of a training row's five numbers (none NaN), in one struct: the export's hot path."""
    h0, h1, h2, h3, h4 = _ROW_HEADS
    values = _ROW_VALUES.pack(h0, loss, h1, acc, h2, lr, h3, rate, h4, frozen)
    return b"\x09" + _WALL.pack(wall) + b"\x10" + _varint(step) + _ROW_SUMMARY + values


def summary_event(summary, wall: float, step: int | None = None) -> bytes:
    from tensorboard.compat.proto import event_pb2

    ev = event_pb2.Event(wall_time=wall, summary=summary)
    if step is not None:
        ev.step = step
    return ev.SerializeToString()


# ---- one event file ----------------------------------------------------------------------------


class TensorBoardLog:
    """One event file in `log_dir` (0600, as every run file); times are the run clock's seconds
    after `start_wall`. add() encodes, write() frames and writes what was added."""

    def __init__(self, log_dir: Path, config: dict, start_wall: float | None = None, flush_seconds: float = 2.0):
        require()
        from tensorboard.compat.proto import event_pb2
        from torch.utils.tensorboard.summary import hparams

        self.start_wall = time.time() if start_wall is None else start_wall
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_files)}"
        Path(log_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = Path(log_dir) / name
        self.f = open_private(self.path, binary=True)
        self.flush_seconds = flush_seconds
        self.scalars = self.texts = 0
        self.pending: list[bytes] = [
            event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()
        ]
        exp, ssi, self._end = hparams(_flat(config), {"test/loss": 0.0, "test/accuracy": 0.0})
        self.pending += [summary_event(s, time.time()) for s in (exp, ssi)]
        self._flushed = time.monotonic()

    def _scalars(self, step: int, time_s: float, values: list[tuple[str, float]]) -> None:
        values = [(tag, float(v)) for tag, v in values if not math.isnan(float(v))]
        if values:
            self.pending.append(scalars_event(self.start_wall + float(time_s), int(step), values))
            self.scalars += len(values)

    def add_row(self, step: int, time_s: float, loss, accuracy, lr, rate, frozen) -> None:
        """A training row's numbers (a StepMetrics, or its fields read straight from events.jsonl)."""
        if loss == loss and accuracy == accuracy and lr == lr and rate == rate:  # no NaN: one struct
            self.pending.append(row_event(self.start_wall + time_s, step, loss, accuracy, lr, rate, float(frozen)))
            self.scalars += 5
            return
        values = (loss, accuracy, lr, rate, float(frozen))
        self._scalars(step, time_s, list(zip(("train/" + n for n in TRAIN_SCALARS), values)))

    def add(self, ev: E.Event) -> None:
        """One event of the run: its numbers as scalars at its step (a step that goes back, after
        a rewind, makes TensorBoard drop the abandoned points), its events.csv row as text."""
        if isinstance(ev, E.StepMetrics):
            self.add_row(ev.step, ev.time_s, ev.loss, ev.accuracy, ev.lr, ev.samples_per_s, float(ev.frozen))
        elif isinstance(ev, E.EpochEnd):
            split = "test" if ev.mode == "eval" else "test_train_mode"  # the test set in train mode
            self._scalars(
                ev.step, ev.time_s, [(f"{split}/loss", ev.test_loss), (f"{split}/accuracy", ev.test_accuracy)]
            )
        elif isinstance(ev, E.SystemStats):
            step = int(ev.time_s)  # readings have no training step: their step is the run clock's second
            values = [
                (f"system/{gpu[0]}/{name}", value)
                for gpu in ev.gpus
                for name, value in zip(GPU_SCALARS, (gpu[1], gpu[2], gpu[4], gpu[5]))
            ]
            self._scalars(step, ev.time_s, values + [("system/cpu_pct", ev.cpu_pct), ("system/rss_mb", ev.rss_mb)])
        for file, cells in CSV_ROWS.get(type(ev), lambda ev: [])(ev):
            if file == "events":
                from torch.utils.tensorboard.summary import text

                name, detail = cells[3], cells[4]
                tag = "events/" + name.replace(":", "/")
                self.pending.append(summary_event(text(tag, detail or name), self.start_wall + ev.time_s, ev.step))
                self.texts += 1
        if len(self.pending) >= BATCH:
            self.write()

    def write(self) -> None:
        if self.pending:
            records, self.pending = self.pending, []
            self.f.write(framed(records))
        if time.monotonic() - self._flushed >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        self.write_pending()
        self.f.flush()
        self._flushed = time.monotonic()

    def write_pending(self) -> None:
        if self.pending:
            records, self.pending = self.pending, []
            self.f.write(framed(records))

    def close(self) -> None:
        self.pending.append(summary_event(self._end, time.time()))
        self.flush()
        self.f.close()


class TensorBoardThread:
    """A live run's TensorBoard writer: `add` puts the event on a queue (all that the training
    thread pays), a thread of its own encodes and writes them in batches; `flush` asks for a
    flush, `close` (the run's end, and so its signals too) writes everything and waits for it."""

    _FLUSH, _CLOSE = object(), object()

    def __init__(self, log: TensorBoardLog):
        self.log = log
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="deeptui-tensorboard", daemon=True)
        self.thread.start()

    def add(self, ev: E.Event) -> None:
        self.queue.put(ev)

    def flush(self) -> None:
        self.queue.put(self._FLUSH)

    def close(self, timeout: float = 30.0) -> None:
        self.queue.put(self._CLOSE)
        self.thread.join(timeout)

    def _run(self) -> None:
        closing = False
        while not closing:
            try:
                item = self.queue.get(timeout=self.log.flush_seconds)
            except queue.Empty:
                item = self._FLUSH
            batch = [item]
            while len(batch) < BATCH:  # what else is waiting, written together
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                for ev in batch:
                    if ev is self._CLOSE:
                        closing = True
                    elif ev is not self._FLUSH:
                        self.log.add(ev)
                if closing:
                    self.log.close()
                elif self._FLUSH in batch:
                    self.log.flush()
                else:
                    self.log.write()
            except Exception as e:  # a full disk: the CSV files and the journal are the record; stop here
                self.error = e
                return


class TensorBoardRunLog(RunLog):
    """The run log that also writes TensorBoard event files into the run directory (log.tensorboard),
    off the training thread."""

    def __init__(self, run_dir: Path, flush_seconds: float, config: dict):
        super().__init__(run_dir, flush_seconds)
        self.tensorboard = TensorBoardThread(TensorBoardLog(run_dir, config, flush_seconds=flush_seconds))

    def record(self, ev: E.Event) -> None:
        super().record(ev)
        if not self.closed and not isinstance(ev, E.TRANSIENT):
            self.tensorboard.add(ev)

    def flush(self) -> None:
        super().flush()
        if not self.closed:
            self.tensorboard.flush()

    def close(self) -> None:
        if not self.closed:
            super().close()
            self.tensorboard.close()


def run_log(run_dir: Path, cfg) -> RunLog:
    """The run's log: CSV files, and TensorBoard's event files too when log.tensorboard is set."""
    if cfg.log.tensorboard:
        return TensorBoardRunLog(run_dir, cfg.log.flush_seconds, cfg.to_dict())
    return RunLog(run_dir, cfg.log.flush_seconds)


def export_run(
    run_dir: Path, out_dir: Path, config: dict, progress: Callable[[int, int], None] | None = None
) -> TensorBoardLog:
    """A run's history (its events, one history: what a rewind or a resume abandoned is left out)
    as one TensorBoard event file in `out_dir`, streamed from events.jsonl at constant memory
    (`progress(bytes read, size)` as it goes); the run clock's zero is when config.toml was
    written, at the start of the run. A run made before events.jsonl is read from its CSV files."""
    run_dir = Path(run_dir)
    start = (run_dir / "config.toml").stat().st_mtime if (run_dir / "config.toml").exists() else None
    tb = TensorBoardLog(out_dir, config, start_wall=start, flush_seconds=math.inf)
    journal = run_dir / JOURNAL
    if journal.exists():
        pending, wall = tb.pending, tb.start_wall
        for line, row in kept_lines(journal, progress):
            if row is not None:
                t, _, step, loss, acc, lr, frozen, rate, _, _ = row.groups()
                loss, acc, lr, rate = float(loss), float(acc), float(lr), float(rate)
                if loss == loss and acc == acc and lr == lr and rate == rate:  # the common case, inline
                    pending.append(row_event(wall + float(t), int(step), loss, acc, lr, rate, frozen == b"true"))
                    tb.scalars += 5
                else:
                    tb.add_row(int(step), float(t), loss, acc, lr, rate, frozen == b"true")
                if len(pending) >= BATCH:
                    tb.write_pending()
                    pending = tb.pending
                continue
            ev = E.from_line(line)
            if ev is not None:
                tb.add(ev)
                pending = tb.pending  # add() may have written and started a new batch
    else:
        from .history import one_history, read_run

        for ev in one_history(read_run(run_dir)[1]):
            tb.add(ev)
    tb.close()
    return tb


__all__ = ["ROW", "TensorBoardLog", "TensorBoardRunLog", "export_run", "require", "run_log"]
