"""Modal dialogs of the dashboard: pick an optimizer, react to a non-finite loss, export the logs,
and quit an attached dashboard (detach or stop the run); the command palette; each closes once."""

from __future__ import annotations

import math
import shutil
import textwrap
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.await_complete import AwaitComplete
from textual.binding import Binding
from textual.command import CommandPalette
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.theme import ThemeProvider
from textual.widgets import Button, Input, Label, OptionList
from textual.widgets.option_list import Option


class DismissOnce:
    """A screen that closes once. Keys typed ahead (two Enters in one read of the terminal) are
    still queued when the first has closed it; a second dismiss would answer twice and pop the
    screen under it: ScreenStackError over the dashboard, or another dialog closed unseen."""

    def dismiss(self, result=None) -> AwaitComplete:
        if self.app.screen is not self:
            return AwaitComplete.nothing()
        return super().dismiss(result)


class Palette(DismissOnce, CommandPalette):
    """Textual's command palette, closed once: a selection that arrives after it has closed (a
    second Enter typed ahead) neither closes another screen nor runs its command a second time."""

    @on(OptionList.OptionSelected)
    @on(Input.Submitted)
    @on(Button.Pressed)
    def _typed_ahead(self, event) -> None:
        if self.app.screen is not self:
            event.prevent_default()  # CommandPalette's own handlers would dismiss and run it again
            event.stop()


class PaletteOnce:
    """For an App: Ctrl+P and the palette's Theme command open the palette that closes once
    (Palette), not Textual's own."""

    def action_command_palette(self) -> None:
        if self.use_command_palette and not CommandPalette.is_open(self):
            self.push_screen(Palette(id="--command-palette"))

    def search_themes(self) -> None:
        self.push_screen(Palette(providers=[ThemeProvider], placeholder="Search for themes…"))


class OptimizerScreen(DismissOnce, ModalScreen[str | None]):
    """The preset's optimizer choices first, then every other optimizer deeptui knows.
    Dismisses with the chosen name, or None on escape."""

    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, choices: tuple, all_names: tuple, current: str):
        super().__init__()
        self.choices, self.all_names, self.current = tuple(choices), tuple(all_names), current

    def compose(self) -> ComposeResult:
        options: list = []
        for name in self.choices:
            options.append(Option(name + ("  (current)" if name == self.current else ""), id=name))
        others = [n for n in self.all_names if n not in self.choices]
        if others:
            options.append(None)  # a separator: below it, optimizers outside the preset's list
            for name in others:
                options.append(Option(name + ("  (current)" if name == self.current else ""), id=name))
        with Vertical(classes="dialog"):
            yield Label("Switch optimizer (the preset's choices, then the others)", classes="dialog-title")
            yield OptionList(*options, id="optimizers")
            yield Label("enter: switch · esc: cancel", classes="dialog-help")

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        if self.current:
            try:
                ol.highlighted = ol.get_option_index(self.current)
            except Exception:
                pass

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)


class NanScreen(DismissOnce, ModalScreen[str | None]):
    """Shown when the engine paused itself on a non-finite training loss. The ways out that can
    act: rewinding needs a good checkpoint, the newest of any kind (last, epoch N, best: none is
    ever written with a non-finite model). Dismisses with 'rewind_lr10', 'rewind_typed',
    'rewind', 'stop' or None (stay paused)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "stay paused")]

    def __init__(self, message: str, good):
        super().__init__()
        self.message, self.good = message, good  # good: the view's Checkpoint to go back to, or None

    def compose(self) -> ComposeResult:
        options = []
        if self.good is not None:
            step, lr = self.good.step, self.good.lr
            at = f"{Path(self.good.path).name} (step {step})"
            options += [
                Option(f"Rewind to {at}, lr {lr:.3g} / 10 = {lr / 10:.3g}, and resume", id="rewind_lr10"),
                Option(f"Rewind to {at} with a learning rate you type, and resume ...", id="rewind_typed"),
                Option(f"Rewind to {at} as it was (lr {lr:.3g}) and resume", id="rewind"),
            ]
        options += [
            Option("Stop the run (the checkpoints keep the last good model)", id="stop"),
            Option("Stay paused", id="stay"),
        ]
        with Vertical(classes="dialog", id="nan-dialog"):
            yield Label("Non-finite training loss: the run is paused", classes="dialog-title")
            yield Label(self.message, classes="dialog-text")
            if self.good is None:
                yield Label("No good checkpoint yet, so there is nothing to rewind to.", classes="dialog-text")
            yield OptionList(*options, id="nan-options")
            yield Label("enter: choose · esc: stay paused", classes="dialog-help")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(None if event.option.id == "stay" else event.option.id)


class NumberScreen(DismissOnce, ModalScreen[float | None]):
    """Asks for a positive number (a learning rate); dismisses with it, or None on escape."""

    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, title: str, current: float):
        super().__init__()
        self.title_text, self.current = title, current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="number-dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Input(value=f"{self.current:g}", placeholder="e.g. 1e-3", id="number")
            yield Label("enter: apply · esc: cancel", id="number-help", classes="dialog-help")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            value = float(event.value.strip())
        except ValueError:
            value = math.nan
        if not (value > 0 and math.isfinite(value)):
            self.query_one("#number-help", Label).update(
                f"{event.value.strip()!r} is not a positive number; try e.g. 1e-3 · esc: cancel"
            )
            return
        self.dismiss(value)


class ExportScreen(DismissOnce, ModalScreen[None]):
    """Shows where the CSV logs are and copies them to a directory the user types."""

    BINDINGS = [Binding("escape", "dismiss(None)", "close")]

    def __init__(self, files: list[Path]):
        super().__init__()
        self.files = files

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="export-dialog"):
            yield Label("Logs flushed; the run's files are:", classes="dialog-title")
            for f in self.files:
                yield Label(str(f), classes="dialog-text path")
            yield Input(placeholder="copy to directory (enter copies, esc closes)", id="copy-to")
            yield Label("", id="export-result", classes="dialog-help")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        target = event.value.strip()
        if not target:
            self.dismiss(None)
            return
        dest = Path(target).expanduser()
        try:
            dest.mkdir(parents=True, exist_ok=True)
            copied = [shutil.copy2(f, dest / f.name) for f in self.files if f.exists()]
        except OSError as exc:
            self.query_one("#export-result", Label).update(f"could not copy: {exc}")
            return
        self.app.notify(f"copied {len(copied)} file(s) to {dest}", title="export")
        self.dismiss(None)


class HelpScreen(DismissOnce, ModalScreen[None]):
    """Every key of the app by group, and what it does (dimmed, with why, when it cannot act now);
    `/` filters as you type, as lazygit's help does (escape clears the filter, then closes); the
    list scrolls when it does not fit, centred on the screen."""

    DEFAULT_CSS = "HelpScreen { align: center middle; }"
    BINDINGS = [
        Binding("escape", "close", "close"),
        Binding("slash", "filter", "filter"),
        Binding("question_mark,f1,q", "dismiss(None)", "close", show=False),
    ]

    def __init__(self, entries: list[tuple[str, str, str, str]]):
        """entries: (group, keys, what it does, why it cannot act now or "")."""
        super().__init__()
        self.entries = entries

    def compose(self) -> ComposeResult:
        width = max(len(k) for _, k, _, _ in self.entries)
        room = max(20, min(84, int(0.96 * self.app.size.width)) - 9 - width)  # the text beside the keys
        with Vertical(classes="dialog", id="help-dialog"):
            yield Label("Keys (ctrl+p: the same as commands)", classes="dialog-title")
            yield Input(placeholder="/ to filter: a key or a word", id="help-filter")
            with VerticalScroll(id="help-list"):
                for group in dict.fromkeys(g for g, _, _, _ in self.entries):
                    yield Label(group, classes="help-group", name=group)
                    for g, keys, what, why in self.entries:
                        if g == group:
                            said = textwrap.wrap(what + (f"  ({why})" if why else ""), room) or [""]
                            text = f"{keys:>{width}}  " + ("\n" + " " * (width + 2)).join(said)
                            classes = "dialog-text" + (" -unavailable" if why else "")
                            yield Label(text, classes=classes, name=group, markup=False)
            yield Label("/: filter · esc: close", classes="dialog-help")

    def on_mount(self) -> None:
        self.query_one("#help-list").focus()  # the filter waits for /

    def action_filter(self) -> None:
        self.query_one("#help-filter", Input).focus()

    def action_close(self) -> None:
        box = self.query_one("#help-filter", Input)
        if box.value:
            box.value = ""  # the first escape clears the filter
            return
        self.dismiss(None)

    def on_input_changed(self, event: Input.Changed) -> None:
        """Only the lines (and their groups' titles) that hold what is typed."""
        event.stop()
        word = event.value.lstrip("/").strip().lower()  # the / that opened the filter may arrive in it
        shown: set[str] = set()
        for label in self.query(".dialog-text"):
            label.display = not word or word in " ".join(str(label.render()).split()).lower()
            if label.display:
                shown.add(label.name or "")
        for title in self.query(".help-group"):
            title.display = title.name in shown

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#help-list").focus()


class QuitScreen(DismissOnce, ModalScreen[str | None]):
    """q on a dashboard attached to a run in another process: quitting may mean "stop the run" or
    only "detach" (the default: enter, d or q again). A paused run is offered a resume first, so it
    does not wait for nobody. Dismisses with 'detach', 'resume_detach', 'stop' or None."""

    DEFAULT_CSS = "QuitScreen { align: center middle; }"
    BINDINGS = [
        Binding("escape", "dismiss(None)", "stay"),
        Binding("q,d", "dismiss('detach')", "detach"),
        Binding("s", "dismiss('stop')", "stop the run"),
    ]

    def __init__(self, paused: bool = False):
        super().__init__()
        self.paused = paused

    def compose(self) -> ComposeResult:
        options = [Option("Detach: the run goes on (deeptui attach to come back)", id="detach")]
        if self.paused:  # detach stays the default (enter, d, q); resuming first is one step away
            options = [
                Option("Detach and leave it paused (deeptui attach to come back)", id="detach"),
                Option("Resume the run, then detach", id="resume_detach"),
            ]
        options.append(Option("Stop the run: checkpoint, flush the logs, end it", id="stop"))
        with Vertical(classes="dialog", id="quit-dialog"):
            title = "The run is paused: resume it before you detach?" if self.paused else "Detach or stop the run?"
            yield Label(f"Quit the dashboard. {title}", classes="dialog-title")
            yield OptionList(*options, id="quit-options")
            yield Label("enter: choose · d/q: detach · s: stop the run · esc: stay", classes="dialog-help")

    def on_mount(self) -> None:
        self.query_one(OptionList).highlighted = 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)
