"""The landscape dashboard with Pilot: each key changes the LandscapeRun AND the panel; q writes
trajectories.csv; a snapshot at 100x30 (the paths are deterministic)."""

from __future__ import annotations

import csv

import pytest
from textual.widgets import Static

from deeptui.engine.config import load_config
from deeptui.engine.landscape import from_config
from deeptui.tui.landscape_app import LandscapeApp, clipped_polylines, landscape_plot
from tests.conftest import ROOT
from tests.pilot import until

PRESET = ROOT / "presets" / "landscape.toml"


def make_app(run_dir, cls=LandscapeApp) -> LandscapeApp:
    return cls(from_config(load_config(PRESET)), run_dir)


def panel(app) -> str:
    return str(app.query_one("#ls-paths", Static).render())


def path_lines(app) -> list[str]:
    """The panel's two lines per path, joined: '▶━ sgd lr=0.01 …   step   1 loss ...'."""
    lines = panel(app).splitlines()
    return [lines[i] + " " + lines[i + 1] for i in range(0, len(lines), 2)]


@pytest.mark.asyncio
async def test_keys_step_switch_run_and_quit(tmp_path):
    app = make_app(tmp_path)
    run = app.landscape
    async with app.run_test(size=(100, 30)) as pilot:
        assert "paused" in str(app.query_one("#ls-header", Static).render())
        assert [t.steps for t in run.trajectories] == [0] * 7

        # n and .: one step of the highlighted path only
        await pilot.press("n", "full_stop")
        assert [t.steps for t in run.trajectories] == [2, 0, 0, 0, 0, 0, 0]
        lines = path_lines(app)
        assert lines[0].startswith("▶") and "sgd lr=0.01" in lines[0] and "step   2" in lines[0]
        assert "step   0" in lines[1]

        # j / k (or the arrows): the highlight moves; n now steps that path
        await pilot.press("j")
        assert run.current == 1 and path_lines(app)[1].startswith("▶━ sgd lr=0.02")
        assert not path_lines(app)[0].startswith("▶")
        await pilot.press("n")
        assert [t.steps for t in run.trajectories][:2] == [2, 1]
        await pilot.press("k", "up")
        assert run.current == 6 and path_lines(app)[6].startswith("▶━ adam lr=0.1")

        # space: every path steps on its own; space again pauses
        await pilot.press("space")
        await until(pilot, lambda: min(t.steps for t in run.trajectories) >= 6, what="auto steps")
        await pilot.press("space")
        await pilot.pause()
        frozen = [t.steps for t in run.trajectories]
        await pilot.pause(0.3)
        assert [t.steps for t in run.trajectories] == frozen
        assert "paused" in str(app.query_one("#ls-header", Static).render())
        assert f"step {frozen[6]:>3}" in path_lines(app)[6]

        # r: back to the start
        await pilot.press("r")
        assert [t.steps for t in run.trajectories] == [0] * 7 and "step   0" in path_lines(app)[6]

        # p runs to the end: the unstable SGD path is marked diverged, the others stop at 250
        app.steps_per_tick = 50  # the test need not watch it
        await pilot.press("p")
        await until(pilot, lambda: run.done() and not app.running, timeout=20, what="all paths done")
        lines = path_lines(app)
        assert "sgd lr=0.053" in lines[4] and "diverged" in lines[4]
        assert "sgd lr=0.05 " in lines[3] and "converged" in lines[3]
        assert "done" in str(app.query_one("#ls-header", Static).render())

        # e: the CSV in the run directory, path shown
        await pilot.press("e")
        assert (tmp_path / "trajectories.csv").exists()
        assert str(tmp_path / "trajectories.csv") in str(app.query_one("#ls-note", Static).render())
        (tmp_path / "trajectories.csv").unlink()

        await pilot.press("down", "n")  # one more step past landscape.steps: still allowed by hand
        await pilot.press("q")
    assert app.return_code == 0
    rows = list(csv.DictReader(open(tmp_path / "trajectories.csv")))
    assert {r["optimizer"] for r in rows} == set(run.labels)
    assert max(int(r["step"]) for r in rows if r["optimizer"] == "sgd lr=0.01") == 251
    assert max(int(r["step"]) for r in rows if r["optimizer"] == "sgd lr=0.02") == 250


def test_a_diverged_path_is_clipped_to_the_view():
    run = from_config(load_config(PRESET))
    run.run()
    text = landscape_plot(run, 60, 26)  # would need gigabytes if the 1e7-far points reached plotext
    assert "x" in text
    box = (-1.0, 1.0, -1.0, 1.0)
    lines = clipped_polylines([(0.0, 0.0), (0.5, 0.5), (3e7, 1e7), (0.2, -0.2), (0.1, 0.0)], box)
    assert lines[0][0] == pytest.approx([0.0, 0.5, 1.0])  # cut where it leaves the box
    assert lines[0][1] == pytest.approx([0.0, 0.5, 0.5 + 0.5 * (1e7 - 0.5) / (3e7 - 0.5)])
    assert lines[-1][0][-2:] == [0.2, 0.1]  # the path comes back: a new polyline
    assert all(-1 - 1e-9 <= v <= 1 + 1e-9 for xs, ys in lines for v in xs + ys)


class QuietApp(LandscapeApp):
    """No toasts: they come and go on a timer, which would make the snapshot flaky."""

    def notify(self, *args, **kwargs) -> None:
        pass


def test_snapshot_100x30(snap_compare):
    app = make_app("/runs/landscape-20250101-000000", cls=QuietApp)
    app.landscape.run(40)
    app.landscape.current = 5  # the momentum path is highlighted

    async def settle(pilot):
        await pilot.pause(0.2)
        app.version += 1
        app.redraw()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=settle)


@pytest.mark.asyncio
async def test_the_landscapes_palette_and_its_theme_search_close_once(tmp_path):
    """Bug: the landscape's palette Theme command opened Textual's own palette, which a second
    Enter typed ahead closed twice (ScreenStackError); now both are the palette that closes once."""
    from deeptui.tui.dialogs import Palette

    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, Palette), what="the palette")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, Palette), what="the palette closed")
        app.search_themes()
        await until(pilot, lambda: isinstance(app.screen, Palette), what="the theme search")
        await pilot.press("enter", "enter", "enter")  # typed ahead: the first closes it
        await until(pilot, lambda: not isinstance(app.screen, Palette), what="the theme search closed")
        assert app.is_running and app.screen is app.screen_stack[0]
