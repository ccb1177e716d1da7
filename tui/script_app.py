"""The dashboard of `deeptui run`: DeeptuiApp over the script's run, with the script's own output
(stdout and stderr, its last lines) in a side panel instead of the batch-vs-loop panel."""

from __future__ import annotations

import functools
from collections.abc import Callable

from rich.text import Text
from textual.css.query import NoMatches

from . import panels
from .app import DeeptuiApp, run_dashboard
from .dashboard import Panel


class ScriptApp(DeeptuiApp):
    """DeeptuiApp with an output panel: `output(n)` gives the script's last n lines."""

    def __init__(self, session, *, output: Callable[[int], list[str]], **kw):
        self.output = output
        super().__init__(session, **kw)

    def panels(self) -> list[Panel]:
        return [
            Panel("run", lambda: panels.run_panel(self.view), "run"),
            Panel("output", self.output_panel, "script output"),
        ]

    def output_panel(self) -> Text:
        """As many of the script's last lines as the panel has rows, each cut at its width."""
        rows = 20
        if self.dashboard is not None:
            try:
                rows = self.dashboard.query_one("#output").content_size.height or rows
            except NoMatches:
                pass
        return Text("\n".join(self.output(rows)) or "(no output yet)", no_wrap=True, overflow="ellipsis")


def run_script_dashboard(session, output: Callable[[int], list[str]]) -> int:
    """run_dashboard with ScriptApp: q stops the run; the run directory and summary on exit."""
    return run_dashboard(session, make_app=functools.partial(ScriptApp, output=output))
