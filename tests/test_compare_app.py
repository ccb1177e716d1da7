"""The comparison dashboard with Pilot over real engines on tiny shapes data: the runs go one after
another in their own run directories, the overlay holds every run's curve, the header says which
run is live; q mid-series stops the live run and starts no other."""

from __future__ import annotations

import dataclasses
import gc
import weakref

import pytest

from deeptui.engine import commands as C
from deeptui.engine.build import build_engine
from deeptui.engine.compare import variants
from deeptui.engine.config import load_config
from deeptui.tui.compare_app import CompareApp
from tests.conftest import ROOT
from tests.pilot import text_of as text
from tests.pilot import until

pytestmark = pytest.mark.asyncio

PRESET = str(ROOT / "presets" / "compare_batch_size.toml")
TINY = [
    "data.dataset='shapes'",
    "data.train_size=200",
    "data.test_size=50",
    "data.normalize=false",
    "run.max_samples=200",  # one pass over the 200 samples for each batch size
    "log.interval_samples=40",  # a row every 40 samples: 2 steps of 20, and every step of 100
    'run.compare={ "data.batch_size" = [20, 100] }',
]


def make_app(tmp_path) -> CompareApp:
    cfg = load_config(PRESET, TINY)

    def make_engine(one):
        eng = build_engine(one, data_root=tmp_path / "data", log_dir=tmp_path / "runs")
        eng.send(C.Pause())  # each run waits for the test to look at it
        return eng

    return CompareApp(variants(cfg), make_engine, key="data.batch_size")


async def test_runs_one_after_another_and_overlays_their_curves(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(
            pilot,
            lambda: "run 1/2: batch_size=20" in text(app, "#header") and "paused" in text(app, "#header"),
            what="run 1 paused",
        )
        first = weakref.ref(app.session)
        assert "batch_size=20  ‖ paused" in text(app, "#runs")  # live and paused, the other waiting
        assert "batch_size=100 · waiting" in text(app, "#runs")
        await pilot.press("space")
        await until(
            pilot,
            lambda: "run 2/2: batch_size=100" in text(app, "#header") and "paused" in text(app, "#header"),
            what="run 2 paused",
        )
        assert "batch_size=20  ✓" in text(app, "#runs")
        gc.collect()
        assert first() is None  # the app let the finished run's engine, model and data go
        await pilot.press("p")
        await until(pilot, lambda: "finished" in text(app, "#header"), what="run 2 finished")
        await until(pilot, lambda: "batch_size=100 ✓" in text(app, "#runs"), what="runs panel")

        # the overlay: one series per run against samples seen, both named in its legend
        curves = dict(app.curves())
        assert list(curves) == ["batch_size=20", "batch_size=100"]
        assert curves["batch_size=20"].x == [40, 80, 120, 160, 200]  # every 2 steps of 20 samples
        assert curves["batch_size=100"].x == [100, 200]  # a curve, not one point: every step
        assert max(curves["batch_size=100"].x) == max(curves["batch_size=20"].x)
        legend_text = str(app.screen.query_one("#compare").border_subtitle)
        assert legend_text.startswith("batch_size ") and "⠤ 20[" in legend_text and "• 100[" in legend_text
        assert "samples seen" in str(app.screen.query_one("#compare").border_title)
        assert "waiting" not in text(app, "#compare") and "200" in text(app, "#compare")  # x ticks
        await pilot.press("q")
    assert app.exit_code() == 0 and app.states == ["finished", "finished"]
    dirs = sorted(p.name.rsplit("-", 2)[0] for p in (tmp_path / "runs").iterdir())
    assert dirs == ["compare_batch_size-batch_size100", "compare_batch_size-batch_size20"]
    assert len(app.run_dirs) == 2
    assert all((d / "metrics.csv").exists() and (d / "last.pt").exists() for d in app.run_dirs)


async def test_quit_mid_series_stops_the_live_run_and_starts_no_other(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(
            pilot, lambda: "run 1/2" in text(app, "#header") and "paused" in text(app, "#header"), what="run 1 paused"
        )
        await pilot.press("q")
    first = app.session
    assert not first.alive and first.final_state == "stopped"
    assert (first.run_dir / "last.pt").exists() and (first.run_dir / "metrics.csv").exists()
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [first.run_dir.name]
    assert app.index == 0 and app.exit_code() == 0


async def test_a_run_that_cannot_start_ends_the_series_with_exit_1(tmp_path):
    from deeptui.engine.config import ConfigError

    app = make_app(tmp_path)
    real = app.make_engine

    def second_fails(one):
        if one.data.batch_size == 100:
            raise ConfigError("batch_size 100: no such luck; fix: none")
        return real(one)

    app.make_engine = second_fails
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "paused" in text(app, "#header"), what="run 1 paused")
        await pilot.press("space")
        await until(pilot, lambda: "batch_size=100 ✖ failed" in text(app, "#runs"), what="run 2 failed")
        assert "run 1/2" in text(app, "#header") and app.index == 0
        await pilot.press("q")
    assert app.states == ["finished", "failed"] and app.exit_code() == 1
    assert len(list((tmp_path / "runs").iterdir())) == 1


async def test_a_finished_run_of_the_series_is_let_go(monkeypatch, tmp_path):
    """Bug: a compare series kept every finished run's engine, model and on-device data set (about
    176 MiB of CIFAR-10 each) until the dashboard exited: each run's control server, kept for the
    exit, held its engine. The dashboard is stood in for by what it does with make_engine (the
    app itself keeps no finished engine: test_runs_one_after_another_and_overlays_their_curves)."""
    from deeptui.tui import compare_app, runner
    from deeptui.tui.cli import build_parser
    from deeptui.tui.request import resolve

    let_go = []

    def dashboard(runs, make_engine, key, servers):
        first = make_engine(runs[0][1])
        first.start()
        assert first.wait_finished(60)
        first = weakref.ref(first)
        second = make_engine(runs[1][1])  # the next run is built once the live one has ended
        gc.collect()
        let_go.append(first() is None)
        second.start()
        assert second.wait_finished(60)
        for server in servers:
            server.close()
        return 0

    monkeypatch.setattr(compare_app, "run_compare_dashboard", dashboard)
    argv = [PRESET, "--log-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path)]
    req = resolve(build_parser().parse_args(argv + [f"--set={o}" for o in TINY]))
    assert runner.run(dataclasses.replace(req, front="dashboard")) == 0
    assert let_go == [True]
