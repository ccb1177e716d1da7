"""The dashboard under a hailstorm of keys: random keys, the palette and its Enter, the dialogs
and their Escape, 150 presses at 80x24 on a real run (DEEPTUI_KEYMASH=2000 for a longer storm).
The app must stay up, raise nothing, and show at the end the state the engine is in."""

from __future__ import annotations

import os
import random

import pytest

from deeptui.engine import commands as C
from deeptui.tui.app import DeeptuiApp
from deeptui.tui.dashboard import Dashboard
from tests.pilot import text_of, until

pytestmark = pytest.mark.asyncio

KEYS = [
    "p",
    "space",
    "o",
    "O",
    "f",
    "m",
    "plus",
    "minus",
    "L",
    "t",
    "s",
    "e",
    "l",
    "question_mark",
    "ctrl+p",
    "enter",
    "enter",
    "escape",
    "escape",
    "up",
    "down",
    "tab",
    "x",
    "1",
    "0",
    "period",
    "backspace",
    "d",
]  # not q: it quits, from a dialog too


async def test_hundreds_of_random_keys_leave_the_app_alive_and_honest(make_engine, tmp_path, monkeypatch, seed=0):
    # e opens the export dialog, and the storm types a folder name into it and presses Enter: the
    # copy goes to that folder relative to the working directory, which must not be the checkout
    monkeypatch.chdir(tmp_path)
    eng = make_engine("run.epochs=1000", "log.interval=2", "run.on_nan='pause'")
    eng.send(C.Pause())  # p in the storm runs it now and then; a paused run keeps the CPU for the keys
    app = DeeptuiApp(eng, timing={"repeats": 1, "sizes": (32, 16, 16)})
    rng = random.Random(seed)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.state in ("running", "paused"), timeout=60, what="the run")
        for i in range(int(os.environ.get("DEEPTUI_KEYMASH", "150"))):
            await pilot.press(rng.choice(KEYS))
            if i % 25 == 0:
                await pilot.pause(0.05)
        for _ in range(6):  # close whatever dialog is open
            if isinstance(app.screen, Dashboard):
                break
            await pilot.press("escape")
            await pilot.pause(0.05)
        assert isinstance(app.screen, Dashboard) and app.is_running
        assert eng.alive
        eng.send(C.Pause())
        await until(
            pilot,
            lambda: eng.state == "paused" and "paused" in text_of(app, "#header"),
            timeout=30,
            what="the screen shows the engine's state",
        )
        assert app.view.optimizer == eng.train.optimizer and app.view.mode == eng.train.mode
        await pilot.press("q")
    assert not eng.alive


async def test_the_palette_with_enter_pressed_quickly_does_not_crash(make_engine, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    eng = make_engine("run.epochs=1000")
    eng.send(C.Pause())
    app = DeeptuiApp(eng)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "paused" in text_of(app, "#header"), what="paused")
        for _ in range(3):
            await pilot.press("ctrl+p", "enter", "enter", "enter")
        await pilot.pause(0.3)
        for _ in range(6):
            if isinstance(app.screen, Dashboard):
                break
            await pilot.press("escape")
            await pilot.pause(0.05)
        assert app.is_running and isinstance(app.screen, Dashboard)
        await pilot.press("q")
