"""The quit dialog of an attached dashboard: the run lives in another process, so quitting may
mean "stop the run" or only "detach" (the default: enter, d or q again)."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


class QuitScreen(ModalScreen[str | None]):
    """Dismisses with 'detach', 'stop', or None (stay)."""

    DEFAULT_CSS = "QuitScreen { align: center middle; }"
    BINDINGS = [Binding("escape", "dismiss(None)", "stay"),
                Binding("q,d", "dismiss('detach')", "detach"),
                Binding("s", "dismiss('stop')", "stop the run")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="quit-dialog"):
            yield Label("Quit the dashboard: detach or stop the run?", classes="dialog-title")
            yield OptionList(
                Option("Detach: the run goes on (deeptui attach to come back)", id="detach"),
                Option("Stop the run: checkpoint, flush the logs, end it", id="stop"),
                id="quit-options",
            )
            yield Label("enter/d/q: detach · s: stop the run · esc: stay", classes="dialog-help")

    def on_mount(self) -> None:
        self.query_one(OptionList).highlighted = 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)
