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


def test_q_while_a_long_build_runs_is_one_line_and_no_internal_error(capsys, monkeypatch, make_engine):
    """q before the build has ended: the app waits for it (an import cannot be cut short), then,
    past its wait (30 s), ends without it instead of failing on an engine that is not there."""
    release = threading.Event()

    def build(stage):
        stage("loading the data ...")
        release.wait(60)
        return make_engine("run.epochs=50")

    async def press_q(pilot):
        await until(pilot, lambda: "loading the data" in text_of(pilot.app, "#header"), what="the loading state")
        await pilot.press("q")

    def run(self, **kw):
        self.shutdown_timeout = 0.5  # the 30 s wait, shortened
        return App.run(self, headless=True, size=(100, 30), auto_pilot=press_q)

    launch = Launch(tiny_config(), build)
    monkeypatch.setattr(DeeptuiApp, "run", run)
    try:
        code = run_dashboard(launch)
    finally:
        release.set()
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.count("\n") == 1 and "stopped while starting" in err and "nothing was trained" in err, err
    launch.ready.wait(30)
    assert launch.engine is None or not launch.engine.alive  # built after the quit: never started
