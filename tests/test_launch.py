"""The dashboard comes up before torch has loaded: it says what is being loaded, keeps the keys
pressed meanwhile, then hands over to the engine; a setup error still ends in one line, exit 2."""

from __future__ import annotations

import threading

import pytest
from textual.app import App

from deeptui.engine import events as E
from deeptui.engine.errors import DataError
from deeptui.tui.app import DeeptuiApp, run_dashboard
from deeptui.tui.launch import Launch
from tests.conftest import tiny_config
from tests.pilot import text_of, until


@pytest.mark.asyncio
async def test_the_dashboard_shows_the_loading_then_the_run(make_engine):
    release = threading.Event()

    def build(stage):
        stage("importing torch ...")
        release.wait(30)  # a slow import: the screen must be up and say so meanwhile
        return make_engine("run.epochs=50")

    launch = Launch(tiny_config(), build)
    app = DeeptuiApp(launch)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "importing torch" in text_of(app, "#header"), what="the loading state")
        assert "starting" in text_of(app, "#header")
        await pilot.press("p")  # pressed while loading: applied once the engine runs
        release.set()
        await until(pilot, lambda: app.session is launch.engine, what="the hand-over")
        await until(pilot, lambda: "paused" in text_of(app, "#header"), what="the pause pressed while loading")
        assert any(isinstance(e, E.CommandApplied) and e.command == "Pause" for e in launch.engine.events.read(0)[0])
        await pilot.press("q")
    assert not launch.engine.alive


def test_a_setup_error_while_loading_is_one_line_and_exit_2(capsys, monkeypatch):
    def build(stage):
        stage("loading the data ...")
        raise DataError("/data/cifar-10-batches-py: CIFAR-10 files missing; fix: download them")

    launch = Launch(tiny_config(), build)
    monkeypatch.setattr(DeeptuiApp, "run", lambda self, **kw: App.run(self, headless=True, size=(100, 30)))
    assert run_dashboard(launch) == 2
    err = capsys.readouterr().err
    assert err == "deeptui: /data/cifar-10-batches-py: CIFAR-10 files missing; fix: download them\n"
