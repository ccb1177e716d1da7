"""The dashboard under a hailstorm of keys: random keys, the palette and its Enter, the dialogs
and their Escape, 150 presses at 80x24 on a real run (DEEPTUI_KEYMASH=2000 for a longer storm).
The app must stay up, raise nothing, and show at the end the state the engine is in."""

from __future__ import annotations

import os
import random

from deeptui.engine import commands as C
from deeptui.tui.app import DeeptuiApp
from deeptui.tui.dashboard import Dashboard
from tests.pilot import text_of, until

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


async def test_two_enters_typed_at_once_in_the_palette_close_it_once(make_engine, tmp_path, monkeypatch):
    """Ctrl+P, then Enter twice in one read of the terminal: the second selection was still queued
    when the first had closed the palette, and closed the screen under it (ScreenStackError)."""
    from textual.command import CommandPalette

    monkeypatch.chdir(tmp_path)
    eng = make_engine("run.epochs=1000")
    eng.send(C.Pause())
    app = DeeptuiApp(eng)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: "paused" in text_of(app, "#header"), what="paused")
        for _ in range(3):
            await pilot.press("ctrl+p")
            await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
            await pilot.pause(0.3)  # its commands listed
            await _type(app, ["enter", "enter", "enter"], [0.0, 0.0, 0.0])
            await pilot.pause(0.3)
            for _ in range(6):  # the first command may have opened a dialog
                if isinstance(app.screen, Dashboard) or not app.is_running:
                    break
                await pilot.press("escape")
        assert app.is_running and eng.alive
        await pilot.press("q")
    assert not eng.alive


# ---- a property: any key sequence, at any speed --------------------------------------------

# Bounded in `make test`; DEEPTUI_KEY_EXAMPLES=500 for a long search (with --timeout 1800).
KEY_EXAMPLES = int(os.environ.get("DEEPTUI_KEY_EXAMPLES", "12"))
# From a burst of keys in one read of the terminal (0) to a person's pace (0.3 s).
DELAYS = [0.0, 0.0, 0.005, 0.02, 0.1, 0.3]
PALETTE_KEYS = ["ctrl+p", "enter", "escape"]


async def _type(app, keys: list[str], delays: list[float]) -> None:
    """Keys as a terminal delivers them: each key event queued at once, then `delay` before the
    next (Pilot.press would wait for the app to be idle after each key, never typing ahead)."""
    import asyncio

    from textual import events

    for key, delay in zip(keys, delays):
        if not app.is_running:
            return
        event = events.Key(key, key if len(key) == 1 else None)
        event.set_sender(app)
        app._driver.send_message(event)
        await asyncio.sleep(delay)


def test_any_key_sequence_at_any_speed_leaves_the_app_up_and_true_to_the_engine(tmp_path_factory, monkeypatch):
    import asyncio

    from hypothesis import HealthCheck, Phase, given, seed, settings
    from hypothesis import strategies as st

    from deeptui.engine.build import build_engine
    from tests.conftest import tiny_config

    work = tmp_path_factory.mktemp("keys")
    monkeypatch.chdir(work)  # the export dialog may copy the logs into a folder typed here

    async def scenario(keys: list[str], delays: list[float], size: tuple[int, int]) -> None:
        cfg = tiny_config("run.epochs=1000", "log.interval=2", "run.on_nan='pause'", "log.system_seconds=0")
        eng = build_engine(cfg, data_root=work / "data", log_dir=work / "runs")
        eng.send(C.Pause())  # a paused run keeps the CPU for the keys; p in the sequence may resume it
        app = DeeptuiApp(eng, timing={"repeats": 1, "sizes": (32, 16, 16)})
        try:
            async with app.run_test(size=size) as pilot:
                await until(pilot, lambda: app.view.state in ("running", "paused"), timeout=60, what="the run")
                await _type(app, keys, delays)
                await pilot.pause(0.1)
                if not app.is_running:  # the palette's Quit: an ending the user chose
                    return
                for _ in range(8):  # close whatever palette or dialog is open
                    if isinstance(app.screen, Dashboard):
                        break
                    await pilot.press("escape")
                    await pilot.pause(0.05)
                assert isinstance(app.screen, Dashboard) and app.is_running, app.screen_stack
                assert eng.alive
                eng.send(C.Pause())  # then nothing changes: the screen must come to show the engine
                await until(
                    pilot,
                    lambda: (
                        eng.state == "paused"
                        and "paused" in text_of(app, "#header")
                        and (app.view.optimizer, app.view.mode) == (eng.train.optimizer, eng.train.mode)
                    ),
                    timeout=30,
                    what="the screen shows the engine's state, optimizer and mode",
                )
                await pilot.press("q")
        finally:
            if eng.alive:
                eng.shutdown(timeout=30)
        assert app.return_code in (0, None) and not eng.alive

    @settings(
        max_examples=KEY_EXAMPLES,
        deadline=None,
        database=None,
        derandomize="DEEPTUI_KEY_SEED" not in os.environ,
        suppress_health_check=list(HealthCheck),
        # shrinking replays whole app sessions for minutes: the failing sequence is printed as found
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    @given(
        keys=st.lists(st.sampled_from(PALETTE_KEYS * 3 + KEYS), min_size=1, max_size=40),
        delays=st.lists(st.sampled_from(DELAYS), min_size=40, max_size=40),
        size=st.sampled_from([(120, 36), (80, 24)]),  # below 80x24 the dashboard asks for a larger terminal
    )
    def prop(keys, delays, size):
        asyncio.run(scenario(keys, delays, size))

    if "DEEPTUI_KEY_SEED" in os.environ:  # other sequences than make test's fixed ones
        prop = seed(int(os.environ["DEEPTUI_KEY_SEED"]))(prop)
    prop()
