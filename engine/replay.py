"""A run's history as a client gets it: every event that is not a training row, in order, with
the training rows folded (engine.lod.TrainFold) into one Digest at the place of the last one, and
of the machine's readings and the layers' statistics only the latest. Its size follows the
screen and the run's interventions, not its length, and a fold of it (RunView) is the fold of
every event. Built as the events come (the control server's own thread) or from events.jsonl in
one streaming pass (show, ls of an old run)."""

from __future__ import annotations

import collections
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from . import events as E
from .lod import TrainFold

RECENT_ROWS = 100  # the newest training rows a Digest carries in full (attach --headless prints them)
ROW_PREFIX = b'{"type":"StepMetrics",'  # to_json writes the type first: the rows are told apart cheaply
_STR = rb'"(?:[^"\\]|\\.)*"'
# A training row as to_json writes it, read without json (a long run's file is mostly these).
ROW = re.compile(
    rb'\{"type":"StepMetrics","time_s":([^,]+),"epoch":(-?\d+),"step":(-?\d+),"loss":([^,]+),"accuracy":([^,]+),'
    rb'"lr":([^,]+),"optimizer":' + _STR + rb',"frozen":(true|false),"mode":' + _STR + rb',"samples_per_s":([^,]+),'
    rb'"samples_seen":(-?\d+),"train_s":([^,}]+)[,}]'
)  # groups: time_s, epoch, step, loss, accuracy, lr, frozen, samples_per_s, samples_seen, train_s


class Replay:
    """The fold of a run's events into what a new client needs (see the module's docstring)."""

    def __init__(self):
        self.kept: list[E.Event] = []  # every event but the rows, the machine's and the layers' readings
        self.train = TrainFold()
        self.last_row: dict | bytes | None = None  # the newest row's fields (or its line of events.jsonl)
        self.recent: collections.deque = collections.deque(maxlen=RECENT_ROWS)  # (step, fields or line)
        self.at = 0  # where in `kept` the folded rows end: the Digest goes there
        self.system: E.SystemStats | None = None
        self.layers: E.LayerStats | None = None
        self.count = 0  # events folded
        self.position = (0.0, 1, 0)  # (time_s, epoch, step) of the newest event
        self.lines = 0  # lines of events.jsonl folded (replay_file)

    def add(self, ev: E.Event) -> None:
        if isinstance(ev, E.TRANSIENT):
            return
        self.count += 1
        self.position = (ev.time_s, ev.epoch, ev.step)
        if isinstance(ev, E.StepMetrics):
            self.train.add_row(ev)
            self.last_row, self.at = vars(ev), len(self.kept)
            self.recent.append((ev.step, self.last_row))
        elif isinstance(ev, E.SystemStats):
            self.system = ev
        elif isinstance(ev, E.LayerStats):
            self.layers = ev
        else:
            if isinstance(ev, E.Rewound) or (isinstance(ev, E.RunStarted) and ev.resumed):
                self.train.cut(ev.step)
                left = [r for r in self.recent if r[0] <= ev.step]  # the branch the history keeps
                self.recent.clear()
                self.recent.extend(left)
            self.kept.append(ev)

    def add_line(self, line: bytes) -> None:
        """One line of events.jsonl. A training row as to_json writes it goes straight into the
        fold, without json or its event (most of a long run's file); a line that is no event is
        skipped."""
        if line.startswith(ROW_PREFIX):
            m = ROW.match(line)
            if m is not None:
                t, epoch, step, loss, acc, _, _, rate, seen, train_s = m.groups()
                try:
                    args = (int(step), float(seen), float(t), float(loss), float(acc), float(train_s), float(rate))
                except ValueError:
                    return
                self.count += 1
                self.position = (args[2], int(epoch), args[0])
                self.train.add(*args)
                self.last_row, self.at = line, len(self.kept)
                self.recent.append((args[0], line))
                return
        ev = E.from_line(line)
        if ev is not None:
            self.add(ev)

    def digest(self) -> E.Digest | None:
        if self.last_row is None:
            return None
        recent = [f for f in (_fields(row) for _, row in self.recent) if f]
        row = E.from_json({**_fields(self.last_row), "type": "StepMetrics"})
        last = {k: v for k, v in vars(row).items()} if row is not None else {}
        t, epoch, step = (row.time_s, row.epoch, row.step) if row is not None else self.position
        return E.Digest(t, epoch, step, train=self.train.state(), last=last, recent=tuple(recent))

    def events(self) -> list[E.Event]:
        """The history to replay, in order."""
        digest = self.digest()
        head = self.kept[: self.at] + ([digest] if digest is not None else [])
        return head + self.kept[self.at :] + [e for e in (self.layers, self.system) if e is not None]


def _fields(row: dict | bytes) -> dict:
    """A row's fields, from its event's or from its line of events.jsonl."""
    if not isinstance(row, bytes):
        return row
    try:
        fields = json.loads(row)
    except (ValueError, RecursionError):
        return {}
    return fields if isinstance(fields, dict) else {}


def replay_file(path: Path, progress: Callable[[int, int], None] | None = None) -> Replay:
    """events.jsonl folded in one pass at constant memory (a torn last line is skipped);
    `progress(bytes read, size)` every few MB."""
    rp = Replay()
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            done, next_report = 0, 0
            for line in f:
                rp.add_line(line)
                rp.lines += 1
                if progress is not None:
                    done += len(line)
                    if done >= next_report:
                        progress(done, size)
                        next_report = done + 4 * 2**20
            if progress is not None:
                progress(size, size)
    except OSError:
        pass
    return rp
