"""SessionController: the session a dashboard watches and where the dashboard is in it. It owns the
read cursor, tells replayed history (an attached run's past) from live events, folds every event
into the RunView, keeps the commands sent with what to do once each is applied, the automatic
timing's progress, and the run's clock on this side. No Textual here: the app asks it and reacts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.feed import feed_of
from deeptui.engine.session import Session

from .view import RunView


@dataclass
class Batch:
    """What one read brought: every new event (folded already), the live ones among them (past the
    replayed history: toasts and dialogs are for those), and whether the history was replayed now."""

    events: list[E.Event]
    live: list[E.Event]
    replayed: bool
    restarted: bool = False  # the view was started again from the session's whole history


class SessionController:
    def __init__(self, session: Session, view: RunView, clock: Callable[[], float] = time.monotonic):
        self.session, self.view, self.clock = session, view, clock
        self.feed = feed_of(session)  # none skipped: what the bounded buffer dropped comes from the journal
        self.pending: dict[int, str] = {}  # command id -> what to do once it is applied
        self.launched = clock()  # on the local clock, when the run's clock read 0 (the earliest such guess)
        self.auto_timing = "due"  # run.auto_timing: due, sent, done
        self.generation = getattr(session, "generation", 0)  # a HistorySession's: a new one is its whole history

    def switch(self, session: Session, view: RunView, keep_clock: bool = False) -> None:
        """Watch another session from now on (the next run of a compare series; the engine once
        built, keeping the header's clock)."""
        self.session, self.view = session, view
        self.feed, self.pending, self.auto_timing = feed_of(session), {}, "due"
        self.generation = getattr(session, "generation", 0)
        if not keep_clock:
            self.launched = self.clock()

    def read(self) -> Batch:
        """The events since the last read, folded into the view."""
        restarted = getattr(self.session, "generation", 0) != self.generation
        if restarted:  # show: the whole history has been read; the view starts again from it
            self.generation = self.session.generation
            self.view, self.feed = (
                RunView(preset=self.view.preset, batch_size=self.view.batch_size),
                feed_of(self.session),
            )
        events = self.feed.read()
        if not events:
            return Batch([], [], False, restarted)
        # an event read now happened at its time_s or later: the run began no later than this
        self.launched = min(self.launched, self.clock() - max(e.time_s for e in events))
        first, replayed = self.feed.cursor - len(events), self.session.replayed
        for ev in events:
            self.view.apply(ev)
        live = [ev for i, ev in enumerate(events) if first + i >= replayed]
        return Batch(events, live, first < replayed, restarted)

    def catch_up(self) -> None:
        """Fold what came after the last read (the run's end, after q) without reacting to it."""
        for ev in self.feed.read():
            self.view.apply(ev)

    def send(self, cmd: C.Command, follow: str = "") -> int:
        """Send a command; `follow` names what to do once the engine has applied it."""
        cid = self.session.send(cmd)
        if follow:
            self.pending[cid] = follow
        return cid

    def follow_up(self, ev: E.CommandApplied | E.CommandRejected) -> str:
        """What was to follow the command this event answers ("" for none)."""
        return self.pending.pop(ev.command_id, "")

    def elapsed(self) -> float:
        """The run's clock: the latest event's, ticking on (loading, paused) until the run ends."""
        v = self.view
        return max(v.time_s, self.clock() - self.launched) if v.state.live and not v.finished else v.time_s
