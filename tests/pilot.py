"""Helpers for Pilot tests of the dashboards: read a panel's text, wait for the screen to change."""

from __future__ import annotations

import time

from textual.css.query import NoMatches
from textual.widgets import RichLog, Static

from deeptui.tui.dashboard import Dashboard


def dashboard_of(app) -> Dashboard:
    """The app's dashboard screen, also while a dialog is open over it."""
    return next(s for s in app.screen_stack if isinstance(s, Dashboard))


def text_of(app, selector: str) -> str:
    """The text a panel of the app's dashboard shows now."""
    w = dashboard_of(app).query_one(selector)
    if isinstance(w, RichLog):
        return "\n".join("".join(seg.text for seg in line) for line in w.lines)
    if isinstance(w, Static):
        r = w.render()
        return getattr(r, "plain", str(r))
    raise TypeError(selector)


async def until(pilot, pred, timeout: float = 30.0, what: str = ""):
    """Let the app run until pred() holds (the engine thread and the 4 Hz poll both move)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await pilot.pause(0.05)
    try:
        header = f"; header: {text_of(pilot.app, '#header')!r}; events: {text_of(pilot.app, '#log')[-600:]!r}"
    except (StopIteration, NoMatches):  # an app without a dashboard header
        header = ""
    raise AssertionError(f"timed out waiting for {what or pred}{header}")
