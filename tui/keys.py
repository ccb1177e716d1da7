"""The dashboard's keys, command palette and dialog choices: what each one sends to the engine,
and why a key that cannot act now (the run ended, no features to freeze) says so instead of
doing nothing."""

from __future__ import annotations

import os
from pathlib import Path

from textual.app import SystemCommand
from textual.binding import Binding
from textual.command import CommandPalette
from textual.screen import Screen
from textual.theme import ThemeProvider

from deeptui.engine import commands as C
from deeptui.engine.config import OPTIMIZERS
from deeptui.engine.state import RunState

from .dashboard import Dashboard
from .dialogs import ExportScreen, HelpScreen, NumberScreen, OptimizerScreen, Palette, QuitScreen
from .plots import DEPTH_VIEWS

# Actions that send a command to the engine: they cannot act once the run has ended.
STEERING = {
    "pause",
    "next_optimizer",
    "pick_optimizer",
    "freeze",
    "mode",
    "eval_mode",
    "lr",
    "set_lr",
    "time_batch",
    "save",
}
EVAL_ORDER = ("eval", "both", "train")  # what M cycles through


class Steering:
    """Key bindings and actions of DeeptuiApp (a mixin: the app provides session, view, send)."""

    # Footer order: quit first, so that it shows even on a narrow terminal.
    KEYS = [
        Binding("q", "quit", "quit", tooltip="stop the run, flush the logs and quit"),
        Binding("p", "pause", "pause", tooltip="pause or resume training (also space)"),
        Binding("space", "pause", "pause/resume", show=False),
        Binding("o", "next_optimizer", "optim", tooltip="next optimizer in the preset's list"),
        Binding("O", "pick_optimizer", "pick", key_display="O", tooltip="pick an optimizer from a list"),
        Binding("f", "freeze", "freeze", tooltip="freeze or unfreeze the pretrained features"),
        Binding("m", "mode", "mode", tooltip="run training steps in train or eval mode"),
        Binding("M", "eval_mode", "test mode", key_display="M", show=False),
        Binding("plus", "lr(2.0)", "lr", key_display="+/-", tooltip="learning rate x2 (+) or x0.5 (-)"),
        Binding("minus", "lr(0.5)", "lr÷2", key_display="-", show=False),
        Binding("L", "set_lr", "lr=", key_display="L", show=False, tooltip="set the learning rate to a typed value"),
        Binding("t", "time_batch", "time", tooltip="run the batch-vs-loop timing"),
        Binding("s", "save", "save", tooltip="save a checkpoint"),
        Binding("e", "export", "csv", tooltip="flush the CSV logs and show or copy them"),
        Binding("l", "log_scale", "log", tooltip="toggle the loss plot's log scale"),
        Binding("question_mark,f1", "help", "keys", key_display="?", tooltip="every key, what it does"),
        Binding("ctrl+s", "screenshot", "shot", show=False, tooltip="save an SVG screenshot in the run directory"),
        Binding("d", "depth", "layers", show=False),
    ]
    # Titles and help for the command palette, by action.
    COMMANDS_HELP = {
        "pause": ("Pause / resume training", "p or space"),
        "next_optimizer": ("Next optimizer", "o: the next optimizer in the preset's list"),
        "pick_optimizer": ("Pick optimizer ...", "O: choose any optimizer from a list"),
        "freeze": ("Freeze / unfreeze features", "f: requires_grad on the pretrained features"),
        "mode": ("Train / eval mode", "m: run training steps in train or eval mode"),
        "eval_mode": ("Test in eval / both / train mode", "M: evaluate the test set in eval mode, both, or train mode"),
        "lr(2.0)": ("Learning rate x2", "+"),
        "lr(0.5)": ("Learning rate x0.5", "-"),
        "set_lr": ("Set learning rate ...", "L: type a value"),
        "time_batch": ("Batch-vs-loop timing", "t: time the batched product against the loop"),
        "save": ("Save checkpoint", "s"),
        "export": ("Export logs as CSV", "e: flush the CSV logs; show or copy them with the config and checkpoints"),
        "log_scale": ("Toggle log scale", "l: the loss plot's y axis"),
        "depth": ("Layers by depth", "d: gradient norm, update/weight, weight norm, activations per layer; accuracy"),
        "screenshot": ("Screenshot of the dashboard", "ctrl+s: an SVG file in the run directory"),
        "help": ("Keys", "? or F1: every key, what it does"),
        "quit": ("Quit", "q: stop the run, flush the logs, print the run directory"),
    }

    def why_not(self, action: str) -> str | None:
        """Why `action` cannot act now, or None when it can."""
        v = self.view
        if action in STEERING and (v.finished or (self._started and not self.session.alive)):
            return f"the run has {v.state if v.state.ended else 'ended'}"
        if action == "freeze" and v.has_features is False:
            return "this model has no pretrained features"
        return None

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in STEERING:
            return None if self.why_not(action) else True
        return True

    def on_key(self, event) -> None:
        """A key whose binding is switched off now says why instead of doing nothing."""
        if not isinstance(self.screen, Dashboard):
            return
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            reason = self.why_not(binding.action.split("(")[0])
            if reason:
                self.say_why(binding.description, reason)
                event.stop()
                return

    def action_command_palette(self) -> None:
        """Ctrl+P: the palette that closes once (dialogs.Palette), not Textual's own."""
        if self.use_command_palette and not CommandPalette.is_open(self):
            self.push_screen(Palette(id="--command-palette"))

    def search_themes(self) -> None:
        """The palette's Theme command, in the palette that closes once."""
        self.push_screen(Palette(providers=[ThemeProvider], placeholder="Search for themes…"))

    def get_system_commands(self, screen: Screen):
        yield from super().get_system_commands(screen)
        for action, (title, help_text) in self.COMMANDS_HELP.items():
            yield SystemCommand(title, help_text, lambda a=action: self.invoke(a))

    async def invoke(self, action: str) -> None:
        """Run an action from the command palette, saying why when it cannot act."""
        reason = self.why_not(action.split("(")[0])
        if reason:
            self.say_why(self.COMMANDS_HELP.get(action, (action,))[0], reason)
            return
        await self.run_action(action)

    def say_why(self, what: str, reason: str) -> None:
        self.notify(reason, title=what, severity="warning")
        self.view.note(f"{what}: {reason}")
        self.refresh_view(False)

    # ---- the actions --------------------------------------------------------------------

    def action_pause(self) -> None:
        v = self.view
        state = v.state_before_timing if v.state == RunState.TIMING else v.state  # a timing ends where it began
        self.send(C.Resume() if state == RunState.PAUSED else C.Pause())

    def action_next_optimizer(self) -> None:
        self.send(C.SwitchOptimizer())

    def action_pick_optimizer(self) -> None:
        def chosen(name: str | None) -> None:
            if name:
                self.send(C.SwitchOptimizer(name=name))

        choices = self.view.optimizer_choices or tuple(self.session.cfg.optimizer.choices)
        self.push_screen(OptimizerScreen(choices, OPTIMIZERS, self.view.optimizer), chosen)

    def action_freeze(self) -> None:
        self.send(C.SetFrozen(frozen=not self.view.frozen))

    def action_mode(self) -> None:
        self.send(C.SetMode(mode="eval" if self.view.mode == "train" else "train"))

    def action_eval_mode(self) -> None:
        current = self.view.eval_mode if self.view.eval_mode in EVAL_ORDER else "eval"
        self.send(C.SetEvalMode(mode=EVAL_ORDER[(EVAL_ORDER.index(current) + 1) % len(EVAL_ORDER)]))

    def action_depth(self) -> None:
        views = ["", *DEPTH_VIEWS]
        self.depth = views[(views.index(self.depth) + 1) % len(views)]

    def action_lr(self, factor: float) -> None:
        self.send(C.ScaleLearningRate(factor=float(factor)))

    def action_set_lr(self) -> None:
        def chosen(lr: float | None) -> None:
            if lr is not None:
                self.send(C.SetLearningRate(lr=lr))

        self.push_screen(NumberScreen("Set the learning rate", self.view.lr or 0.01), chosen)

    def action_help(self) -> None:
        """Every key of this app that can act now (a finished run's steering keys are left out)."""
        keys, seen = [], set()
        for bindings in self._bindings.key_to_bindings.values():
            for b in bindings:
                action = b.action.split("(")[0]
                if b.action in seen or self.check_action(action, ()) is False or self.why_not(action):
                    continue
                seen.add(b.action)
                keys.append((b.key_display or b.key, b.tooltip or b.description))
        self.push_screen(HelpScreen(keys))

    def deliver_screenshot(self, filename=None, path=None, time_format=None) -> str | None:
        """Textual's screenshot (ctrl+s, and the palette's), saved in the run directory rather
        than in ~/Downloads, which a server seldom has."""
        try:
            saved = self.save_screenshot(filename, path or str(self.session.run_dir), time_format)
            os.chmod(saved, 0o600)  # a run file like the others
        except OSError as e:
            self.notify(f"could not save the screenshot: {e}", title="screenshot", severity="error")
            return None
        self.notify(saved, title="screenshot saved")
        self.view.note(f"screenshot saved: {saved}", "")
        return saved

    def action_time_batch(self) -> None:
        self.notify("timing batch vs loop; training waits for it", title="timing")
        self.send(C.RunTiming(**self.timing_kwargs))

    def time_when_idle(self) -> None:
        """run.auto_timing: the batch-vs-loop timing once, while the run is paused (it never holds
        up a step; a command, e.g. resume, cuts it short and it runs at the next pause)."""
        if self.session.cfg.run.auto_timing and not self.attached and self._auto_timing == "due":
            self._auto_timing = "sent"
            self.send(C.RunTiming(**self.timing_kwargs), follow="auto_timing")

    def action_save(self) -> None:
        self.send(C.SaveCheckpoint())

    def action_export(self) -> None:
        if self.session.alive:
            self.send(C.FlushLogs(), follow="export")
        else:  # the engine closed (and so flushed) the files when the run ended
            self.push_screen(ExportScreen(self.log_files()))

    def log_files(self) -> list[Path]:
        """What e shows and copies: the CSV logs, the resolved config and the checkpoints."""
        run_dir = Path(self.session.run_dir)
        files = [run_dir / name for name in ("metrics.csv", "events.csv", "config.toml")]
        return files + sorted(run_dir.glob("*.pt"))

    def action_log_scale(self) -> None:
        self.log_scale = not self.log_scale

    # ---- what the dialogs' choices send -------------------------------------------------

    async def action_quit(self) -> None:
        if self.attached and self.session.alive:
            self.push_screen(QuitScreen(paused=self.view.state == RunState.PAUSED), self._quit_choice)
            return
        self.exit(return_code=0)

    def _quit_choice(self, choice: str | None) -> None:
        if choice == "resume_detach":
            self.send(C.Resume())
            self.resumed_on_detach = True
            choice = "detach"
        if choice in ("detach", "stop"):
            self.stop_on_quit = choice == "stop"
            self.exit(return_code=0)

    def _nan_choice(self, choice: str | None) -> None:
        self._nan_open = False
        target = self.view.rewind_target()  # the newest good checkpoint, whichever kind
        which = target.which if target is not None else "last"
        if choice == "rewind_lr10":
            self.send(C.RestoreCheckpoint(which=which, lr_scale=0.1), follow="resume")
        elif choice == "rewind":
            self.send(C.RestoreCheckpoint(which=which), follow="resume")
        elif choice == "rewind_typed" and target is not None:

            def rewind_with(lr: float | None) -> None:
                if lr is not None:
                    self.send(C.RestoreCheckpoint(which=which, lr=lr), follow="resume")

            title = f"Learning rate after rewinding to {which} (step {target.step})"
            self.push_screen(NumberScreen(title, target.lr / 10), rewind_with)
        elif choice == "stop":
            self.send(C.Stop(reason="stopped after a non-finite loss"))
