"""Telling a user who is not looking: the terminal bell and a desktop notification (OSC 9, as
iTerm2, WezTerm, Windows Terminal and kitty read it; OSC 777, as urxvt, foot and VTE terminals
do) when the run finishes, fails or pauses on a non-finite loss. No one is looking when the
terminal has reported that it lost the focus, or when no key was pressed for a minute."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

from deeptui.engine import events as E
from deeptui.engine.state import RunState

IDLE_SECONDS = 60.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _clean(text: str, limit: int = 200) -> str:
    return _CONTROL.sub(" ", text).strip()[:limit]


def sequences(title: str, body: str, tmux: bool = False) -> str:
    """The bell, then OSC 9 and OSC 777 with the notification; inside tmux the two are wrapped for
    its passthrough (tmux set -g allow-passthrough on lets them reach the terminal)."""
    title, body = _clean(title, 60).replace(";", ","), _clean(body)
    oscs = [f"\x1b]9;{title}: {body}\x07", f"\x1b]777;notify;{title};{body}\x07"]
    if tmux:
        oscs = ["\x1bPtmux;" + osc.replace("\x1b", "\x1b\x1b") + "\x1b\\" for osc in oscs]
    return "\a" + "".join(oscs)


def alert_for(ev: E.Event, preset: str) -> tuple[str, str] | None:
    """(title, body) of an event worth a notification, or None."""
    if isinstance(ev, E.Finished) and ev.state in (RunState.FINISHED, RunState.FAILED):
        return f"deeptui: {preset} {ev.state}", (ev.reason or ev.state) + f" ({ev.run_dir})"
    if isinstance(ev, E.NonFiniteLoss) and ev.policy == "pause":
        return f"deeptui: {preset} paused", ev.message
    return None


class Alerts:
    """Decides whether to ring and writes the sequences through `write` (the terminal driver)."""

    def __init__(self, write: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        self.write, self.clock = write, clock
        self.last_input = clock()
        self.sent: list[str] = []  # what was written, newest last

    def input_seen(self) -> None:
        self.last_input = self.clock()

    def looking(self, focused: bool) -> bool:
        return focused and self.clock() - self.last_input < IDLE_SECONDS

    def on_event(self, ev: E.Event, preset: str, focused: bool) -> bool:
        """Ring for `ev` if it is worth it and no one is looking; True when it rang."""
        alert = alert_for(ev, preset)
        if alert is None or self.looking(focused):
            return False
        text = sequences(*alert, tmux=bool(os.environ.get("TMUX")))
        self.sent.append(text)
        self.write(text)
        return True
