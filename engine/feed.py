"""A reader of a run's EventBuffer that never skips an event. The buffer is bounded (a live run's
memory stays flat); a reader that falls more than its length behind (a stalled screen, a slow
client) would lose the oldest events it had not read. A Feed gets those from the run's journal,
events.jsonl: the same events in the same order, less the transient ones, one line each. Where no
journal is at hand (a client's copy of a remote run), the gap is told as a Warning event rather
than passed over in silence. One mechanism for every reader: the control server, its clients, the
dashboard and the headless printer."""

from __future__ import annotations

from . import events as E


class Feed:
    """Events of `buffer` from `cursor` on. `journal` is the run's RunLog (its journal_path and
    flush()), or None. `lines` counts the journal's lines for the events before `cursor`, from
    `first_live` on: the events before first_live (a resume's folded history at the buffer's
    head) stand for no line of their own."""

    def __init__(self, buffer: E.EventBuffer, journal=None, cursor: int = 0, lines: int = 0, first_live: int = 0):
        self.buffer, self.journal = buffer, journal
        self.cursor, self.lines, self.first_live = cursor, lines, first_live
        self.filled = 0  # events that came from the journal
        self.lost = 0  # events that could not be had (no journal): told by a Warning

    def read(self) -> list[E.Event]:
        """The events since the last read, none skipped."""
        buffered, cursor = self.buffer.read(self.cursor)
        first = cursor - len(buffered)  # the index of the first: past self.cursor after a drop
        missed = self._gap(first, buffered) if first > self.cursor else []
        live = buffered[max(0, self.first_live - first) :]  # a resume's history stands for no line
        self.lines += sum(not isinstance(ev, E.TRANSIENT) for ev in live)
        self.cursor = cursor
        return missed + buffered

    def _gap(self, first: int, buffered: list[E.Event]) -> list[E.Event]:
        missed = first - self.cursor
        if self.journal is None:
            self.lost += missed
            at = buffered[0] if buffered else None
            t, epoch, step = (at.time_s, at.epoch, at.step) if at is not None else (0.0, 0, 0)
            message = f"{missed:,} events came faster than this view read them; the run's files have them all"
            return [E.Warning(t, epoch, step, message=message, kind="view_gap")]
        got = self._from_journal(buffered)
        self.filled += len(got)
        return got

    def _from_journal(self, buffered: list[E.Event]) -> list[E.Event]:
        """The journal's lines past the ones counted, up to the first event still buffered."""
        stop = next((E.to_json(e).encode() for e in buffered if not isinstance(e, E.TRANSIENT)), None)
        try:
            self.journal.flush()
        except (OSError, ValueError):
            pass
        got: list[E.Event] = []
        try:
            with open(self.journal.journal_path, "rb") as f:
                for i, line in enumerate(f):
                    if i < self.lines:
                        continue
                    if line.rstrip(b"\n") == stop or not line.endswith(b"\n"):
                        break
                    ev = E.from_line(line)
                    if ev is not None:
                        got.append(ev)
                    self.lines += 1
        except OSError:
            pass
        return got


def feed_of(session, cursor: int = 0) -> Feed:
    """A Feed of a session's events for a front end: over a run in this process (an engine, a
    watched loop), gaps come from its journal, a resume's folded history first; over another's
    (a client's copy, a finished run's files), a gap is told."""
    journal = getattr(getattr(session, "report", None), "log", None)
    if journal is None:  # lines are counted for a journal only
        return Feed(session.events, None, cursor)
    history = getattr(session, "history", None)
    return Feed(session.events, journal, cursor, getattr(history, "lines", 0), int(getattr(session, "replayed", 0)))
