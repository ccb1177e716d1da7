"""One action table (issue 21 item 7): each app's keys, footer, palette and `?` help come from its
table in tui/actions.py, and so do README's key tables; show, compare and landscape list only their
own actions; the palette has each entry once; the help is grouped, filterable, centred and scrolls
at 80x24."""

from __future__ import annotations

import re

import pytest
from textual.widgets import Input

from deeptui.engine.history import HistorySession
from deeptui.tui import actions
from deeptui.tui.app import DeeptuiApp
from deeptui.tui.compare_app import CompareApp
from deeptui.tui.dialogs import HelpScreen
from deeptui.tui.landscape_app import LandscapeApp
from deeptui.tui.show import OneRunApp, ShowApp
from tests.conftest import ROOT
from tests.pilot import until
from tests.test_show import fake_run

APPS = [(DeeptuiApp, "DASHBOARD"), (CompareApp, "DASHBOARD"), (OneRunApp, "SHOW_ONE"), (ShowApp, "SHOW_MANY")]
APPS += [(LandscapeApp, "LANDSCAPE")]


def test_readme_key_tables_are_the_action_tables():
    readme = (ROOT / "README.md").read_text()
    found = dict(re.findall(r"<!-- keys: (\w+) -->\n(.*?)\n<!-- /keys -->", readme, re.S))
    assert set(found) == {"DASHBOARD", "SHOW_ONE", "SHOW_MANY", "LANDSCAPE"}
    for name, table in found.items():
        assert table == actions.markdown_table(getattr(actions, name)), (
            f"README's {name} key table is not tui/actions.py's; print it with: python -m deeptui.tui.actions {name}"
        )


@pytest.mark.parametrize("app,table", APPS, ids=[a.__name__ for a, _ in APPS])
def test_each_app_binds_its_table_and_handles_every_action(app, table):
    table = getattr(actions, table)
    bound = {b.action for b in app._merge_bindings().key_to_bindings.values() for b in b}
    assert {a.id for a in table} <= bound  # every action has its keys
    assert all(callable(getattr(app, f"action_{a.id}", None)) for a in table)  # and its handler
    ours = {a.id for a in table} | {"quit", "help_quit"}  # Textual's ctrl+q, ctrl+c
    assert bound <= ours, f"{app.__name__} binds actions that are not its own: {bound - ours}"


def test_show_and_landscape_have_no_steering_keys_and_landscape_no_o():
    for app in (OneRunApp, ShowApp, LandscapeApp):
        keys = set(app._merge_bindings().key_to_bindings)
        assert not keys & {"o", "O", "f", "m", "M", "plus", "minus", "L", "t"}, (app.__name__, keys)


def test_the_footer_shows_the_keys_that_were_hidden():
    shown = {b.key for b in actions.bindings(actions.DASHBOARD) if b.show}
    assert {"d", "M", "L", "ctrl+s"} <= {k for keys in shown for k in keys.split(",")}


async def test_the_palette_lists_each_action_once_and_nothing_blank(tmp_path):
    app = OneRunApp(HistorySession(fake_run(tmp_path / "run", 0.05)))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.view.finished, what="the run read")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert len(titles) == len(set(titles)) and "Maximize" not in titles and "Minimize" not in titles
        assert set(titles) == {a.title for a in actions.SHOW_ONE} | {"Theme"}
        await pilot.press("q")


async def test_the_palette_shows_each_help_as_written(tmp_path):
    """Bug: the palette read its entries' help as markup: `+: learning rate x2 (overrides  lr)`,
    its `[schedule]` eaten; the zoom keys `]` and `[` likewise."""
    from textual.command import CommandPalette
    from textual.widgets import OptionList

    from tests.test_snapshots import script
    from tests.test_space import app_of

    app = app_of(script())
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.view.step > 0, what="the run read")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
        await pilot.press(*"lear")
        options = app.screen.query_one(OptionList)

        def shown() -> str:
            return "\n".join(str(options.get_option_at_index(i).prompt) for i in range(options.option_count))

        await until(pilot, lambda: "learning rate x2" in shown(), what="the lr entries")
        assert "(overrides [schedule] lr)" in shown(), shown()
        await pilot.press("escape")
        await pilot.press("q")


async def test_the_help_is_grouped_filterable_centred_and_scrolls_at_80x24(make_engine):
    eng = make_engine("run.epochs=50")
    app = DeeptuiApp(eng)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.state.live and app.view.step > 0, what="running")
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help")
        help_ = app.screen
        groups = [str(g.render()) for g in help_.query(".help-group")]
        assert groups == ["Steer", "View", "Files"]
        box = help_.query_one("#help-dialog").region
        assert abs(box.x - (80 - box.right)) <= 1 and box.bottom <= 24  # centred, on the screen
        assert help_.query_one("#help-list").max_scroll_y > 0  # 17 keys at 80x24: it scrolls
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(help_.focused, Input), what="the filter")
        await pilot.press("l", "r")
        shown = [str(w.render()) for w in help_.query(".dialog-text") if w.display]
        assert shown and all("lr" in line.lower() for line in shown) and len(shown) == 3
        assert [str(g.render()) for g in help_.query(".help-group") if g.display] == ["Steer"]
        await pilot.press("escape")  # clears the filter
        assert len([w for w in help_.query(".dialog-text") if w.display]) == len(actions.DASHBOARD)
        await pilot.press("escape")  # closes
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), what="closed")
        await pilot.press("q")
