"""The deeptui dashboard: a Textual app over a training *session*.

A session is anything with the Engine's surface: `send(cmd)`, `events` (with
`read(cursor) -> (events, cursor)`), `start()`, `shutdown(reason, timeout)`, `alive`,
`final_state`, `cfg`, `run_dir`. Commands go in through `send`; everything on screen comes from
the events read back (the state the engine reports, never the state a key asked for). The UI
polls the events a few times a second and never waits on the training thread.
"""
from __future__ import annotations

import asyncio
import math
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, RichLog, Static

from engine import commands as C
from engine import events as E
from engine.config import OPTIMIZERS

from .screens import ExportScreen, NanScreen, OptimizerScreen
from .view import RunView, accuracy_plot, fmt_count, fmt_duration, legend, loss_plot

MIN_WIDTH, MIN_HEIGHT = 80, 24
POLL_SECONDS = 0.25          # how often the UI reads the engine's events
FRAME_SECONDS = 1.0          # while running, redraw metrics (panels, plots) at most this often;
                             # state changes and command answers are drawn at the next poll
PLOT_MIN_SECONDS = 1.0       # while running, rebuild the plots at most this often,
PLOT_CPU_SHARE = 0.01        # and let their rebuilds take at most this share of the time:
                             # plotext takes ~15 ms for both on a laptop-class core, and on a small
                             # CPU machine every millisecond of the UI is taken from training
ROUTINE = (E.StepMetrics, E.EpochEnd)  # events that can wait for the next frame
STATE_STYLE = {"running": "bold green", "paused": "bold yellow", "timing": "bold cyan",
               "finished": "bold blue", "stopped": "bold magenta", "failed": "bold red",
               "starting": "dim"}
# Actions that send a command to the engine: they cannot act once the run has ended.
STEERING = {"pause", "next_optimizer", "pick_optimizer", "freeze", "mode", "lr", "timing", "save"}


class PlotView(Static):
    """A plotext plot rendered to text; rebuilt by the app only when its data or size changed."""

    def __init__(self, build: Callable[[int, int], str], **kw):
        super().__init__("", **kw)
        self._build = build
        self.built_size: tuple[int, int] | None = None
        self.built_version = -1

    def redraw(self, version: int) -> None:
        w, h = self.content_size.width, self.content_size.height
        if w < 10 or h < 4:
            return
        self.update(Text.from_ansi(self._build(w, h), no_wrap=True), layout=False)
        self.built_size, self.built_version = (w, h), version

    def stale(self, version: int) -> bool:
        return version != self.built_version or self.built_size != (
            self.content_size.width, self.content_size.height)


def on_exit_signals(handler: Callable[[int], None]) -> None:
    """SIGTERM and SIGHUP (the SSH session dropped) call handler(signum) on the app's loop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, handler, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no loop support
            pass


class Dashboard(Screen):
    """The one main screen; shows a size message instead of the dashboard below 80x24.
    A variant (the compare dashboard) changes only its plots, side panels and titles."""

    SIDE = ("run", "timing")  # the text panels beside the plots, top to bottom

    def plots(self, app) -> list[PlotView]:
        return [PlotView(lambda w, h: loss_plot(app.view, w, h, app.log_scale), id="loss"),
                PlotView(lambda w, h: accuracy_plot(app.view, w, h), id="accuracy")]

    def titles(self, app) -> dict[str, tuple[str, str]]:
        """widget id -> (border title, border subtitle)"""
        compact = self.has_class("-compact")
        return {"loss": ("loss · x: step", legend("train", "smoothed", "test", "optimizer", "freeze", "mode",
                                                  compact=compact)),
                "accuracy": ("accuracy %", legend("train", "test", compact=compact)),
                "run": ("run", ""), "timing": ("batch vs loop", ""), "log": ("events", "")}

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        with Vertical(id="body"):
            with Horizontal(id="main"):
                with Vertical(id="plots"):
                    yield from self.plots(self.app)
                with Vertical(id="side"):
                    for name in self.SIDE:
                        yield Static(id=name)
            yield Static(id="error")
            yield RichLog(id="log", max_lines=1000, wrap=False, markup=False, auto_scroll=True)
        yield Static(id="too-small")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        app: DeeptuiApp = self.app  # type: ignore[assignment]
        self._apply_titles()
        app._dash = self
        app.refresh_view(True)

    def _apply_titles(self) -> None:
        for name, (title, subtitle) in self.titles(self.app).items():
            widget = self.query_one(f"#{name}")
            widget.border_title, widget.border_subtitle = title, subtitle or None

    def on_resize(self, event) -> None:
        w, h = event.size.width, event.size.height
        small = w < MIN_WIDTH or h < MIN_HEIGHT
        self.set_class(small, "-too-small")
        self.set_class(w < 100 or h < 30, "-compact")
        self._apply_titles()  # shorter legends when compact
        if small:
            self.query_one("#too-small", Static).update(
                Text(f"deeptui needs a terminal of at least {MIN_WIDTH}x{MIN_HEIGHT}\n"
                     f"this one is {w}x{h}: please make it larger\n\nthe run goes on; q quits",
                     justify="center"))
        self.app.call_after_refresh(self.app.refresh_view, True)


class DeeptuiApp(App[int]):
    """Watch and steer one training session."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute, so subclasses elsewhere find it
    TITLE = "deeptui"
    ENABLE_COMMAND_PALETTE = True

    # Footer order: quit first, so that it shows even on a narrow terminal.
    BINDINGS = [
        Binding("q", "quit", "quit", tooltip="stop the run, flush the logs and quit"),
        Binding("p", "pause", "pause", tooltip="pause or resume training (also space)"),
        Binding("space", "pause", "pause/resume", show=False),
        Binding("o", "next_optimizer", "optim", tooltip="next optimizer in the preset's list"),
        Binding("O", "pick_optimizer", "pick", key_display="O", tooltip="pick an optimizer from a list"),
        Binding("f", "freeze", "freeze", tooltip="freeze or unfreeze the pretrained features"),
        Binding("m", "mode", "mode", tooltip="run training steps in train or eval mode"),
        Binding("plus", "lr(2.0)", "lr", key_display="+/-", tooltip="learning rate x2 (+) or x0.5 (-)"),
        Binding("minus", "lr(0.5)", "lr÷2", key_display="-", show=False),
        Binding("t", "timing", "time", tooltip="run the batch-vs-loop timing"),
        Binding("s", "save", "save", tooltip="save a checkpoint"),
        Binding("e", "export", "csv", tooltip="flush the CSV logs and show or copy them"),
        Binding("l", "log_scale", "log", tooltip="toggle the loss plot's log scale"),
    ]
    # Titles and help for the command palette, by action.
    COMMANDS_HELP = {
        "pause": ("Pause / resume training", "p or space"),
        "next_optimizer": ("Next optimizer", "o: the next optimizer in the preset's list"),
        "pick_optimizer": ("Pick optimizer ...", "O: choose any optimizer from a list"),
        "freeze": ("Freeze / unfreeze features", "f: requires_grad on the pretrained features"),
        "mode": ("Train / eval mode", "m: run training steps in train or eval mode"),
        "lr(2.0)": ("Learning rate x2", "+"),
        "lr(0.5)": ("Learning rate x0.5", "-"),
        "timing": ("Batch-vs-loop timing", "t: time the batched product against the loop"),
        "save": ("Save checkpoint", "s"),
        "export": ("Export logs as CSV", "e: flush metrics.csv and events.csv, copy them"),
        "log_scale": ("Toggle log scale", "l: the loss plot's y axis"),
        "quit": ("Quit", "q: stop the run, flush the logs, print the run directory"),
    }

    log_scale: reactive[bool] = reactive(False, init=False)
    """Whether the loss plot's y axis is logarithmic (view state only)."""

    def __init__(self, session, *, clock: Callable[[], float] = time.monotonic,
                 timing: dict | None = None, handle_signals: bool = False,
                 shutdown_timeout: float = 30.0, attached: bool = False):
        super().__init__()
        self.session = session
        # A run in another process (deeptui attach): q asks stop or detach; signals only detach.
        self.attached = attached
        self.stop_on_quit = not attached
        cfg = session.cfg
        self.view = RunView(preset=cfg.run.name, batch_size=cfg.data.batch_size)
        self.clock = clock
        # The lecture takes the median of 51; 11 keep the pause short (about 4 s on 2 CPU cores).
        self.timing_kwargs = dict(timing) if timing is not None else {"repeats": 11}
        self.handle_signals = handle_signals
        self.shutdown_timeout = shutdown_timeout
        self.signal_exit = 0          # 128+N when a signal ended the app
        self._cursor = 0
        self._event_clock = clock()   # local clock when the latest event was read
        self._log_shown = 0
        self._plots_at = -math.inf
        self._plots_cost = 0.0        # CPU seconds the last plot rebuild took
        self._drawn_at = -math.inf
        self._pending: dict[int, str] = {}   # command id -> what to do when it is applied
        self._nan_open = False
        self._started = False
        self._shutdown_done = False
        self._dash: Dashboard | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    def get_default_screen(self) -> Screen:
        return Dashboard()

    def on_mount(self) -> None:
        if self.session.cfg.run.timing_at_start and not self.attached:
            self._send(C.RunTiming(**self.timing_kwargs), "timing at start")
        self.session.start()
        self._started = True
        self.set_interval(POLL_SECONDS, self.poll)
        if self.handle_signals:
            on_exit_signals(self._on_signal)

    def _on_signal(self, sig: int) -> None:
        self.signal_exit = 128 + int(sig)
        self.stop_session(f"signal {signal.Signals(sig).name}")
        self.exit(return_code=self.signal_exit)

    def on_unmount(self) -> None:
        self.stop_session("quit")

    def stop_session(self, reason: str) -> bool:
        """Stop the engine at its next step boundary and wait for it (flushes logs, saves a
        checkpoint). Idempotent."""
        if self._shutdown_done:
            return True
        self._shutdown_done = True
        if not self.stop_on_quit:
            self.session.detach()  # the run goes on in its own process
            return True
        if self.attached:
            reason = f"{reason} from an attached dashboard"
        if self._started and self.session.alive:
            return bool(self.session.shutdown(reason, timeout=self.shutdown_timeout))
        return True

    # ---- reading events -----------------------------------------------------------------

    def poll(self) -> None:
        """Read new events, fold them into the view, redraw what changed."""
        events, self._cursor = self.session.events.read(self._cursor)
        urgent = False
        if events:
            self._event_clock = self.clock()
            first = self._cursor - len(events)
            replayed = getattr(self.session, "replayed", 0)  # an attached run's history
            for i, ev in enumerate(events):
                self.view.apply(ev)
                urgent = urgent or not isinstance(ev, ROUTINE)
                if first + i >= replayed:  # no toasts or dialogs for what happened before attach
                    self._react(ev)
            if first < replayed:
                self.refresh_bindings()  # keys follow the replayed state (finished, features, ...)
        # Every repaint costs the UI thread milliseconds, and on a small CPU machine that time
        # is taken from the training thread (the GIL): metrics are drawn once a second.
        if urgent or time.monotonic() - self._drawn_at >= FRAME_SECONDS:
            self.refresh_view(False)

    def _react(self, ev: E.Event) -> None:
        """What an event does beyond the view: toasts, follow-up commands, dialogs."""
        if isinstance(ev, E.CommandApplied):
            follow = self._pending.pop(ev.command_id, None)
            if follow == "resume":
                self._send(C.Resume(), "after restore")
            elif follow == "export":
                self.push_screen(ExportScreen(self._log_files()))
        elif isinstance(ev, E.CommandRejected):
            self._pending.pop(ev.command_id, None)
            self.notify(ev.reason, title=f"{ev.command} rejected", severity="warning", timeout=4)
        elif isinstance(ev, E.Warning):
            if ev.message.startswith("training loss is") and "paused" in ev.message and not self._nan_open:
                self._nan_open = True
                self.push_screen(NanScreen(ev.message), self._nan_choice)
            else:
                self.notify(ev.message, title="warning", severity="warning")
        elif isinstance(ev, E.RunError):
            self.notify(ev.message + (f"\nfix: {ev.fix}" if ev.fix else ""), title="run error",
                        severity="error", timeout=30)
        elif isinstance(ev, E.Finished):
            self.refresh_bindings()
            if ev.state != "failed":  # a failure already has its own message
                self.notify(f"run {ev.state}; the plots stay until you press q", title="deeptui")
        elif isinstance(ev, E.RunStarted):
            self.refresh_bindings()

    # ---- drawing ------------------------------------------------------------------------

    def elapsed(self) -> float:
        v = self.view
        if v.state in ("running", "timing") and not v.finished:
            return v.time_s + max(0.0, self.clock() - self._event_clock)
        return v.time_s

    def refresh_view(self, force_plots: bool = False) -> None:
        dash = self._dash
        if dash is None or not dash.is_mounted or dash.has_class("-too-small"):
            return
        self._drawn_at = time.monotonic()
        try:
            self._draw_panels(dash)
            self._draw_plots(dash, force_plots)
        except NoMatches:  # the screen is being torn down while the app exits
            pass

    def _draw_panels(self, dash: Screen) -> None:
        """Every text panel of this screen (a compare dashboard draws its own set)."""
        self._draw_header(dash)
        self._draw_run(dash)
        self._draw_timing(dash)
        self._draw_error(dash)
        self._draw_log(dash)

    def _set(self, widget: Static, content, layout: bool = False) -> None:
        """Update a panel only when its text changed; the panels have fixed sizes, so a repaint
        without a layout pass is enough (a layout pass of the whole screen costs milliseconds)."""
        key = content.plain if isinstance(content, Text) else str(content)
        if getattr(widget, "_deeptui_key", None) != key:
            widget._deeptui_key = key  # type: ignore[attr-defined]
            widget.update(content, layout=layout)

    def _draw_header(self, dash: Screen) -> None:
        v = self.view
        state = v.state
        t = Text.assemble(
            (" deeptui ", "bold reverse"), " ", (v.preset or "?", "bold"), "  ",
            (v.device or "…", ""), "  ", (f"● {state}", STATE_STYLE.get(state, "bold")),
            "  ", (fmt_duration(self.elapsed()), ""),
        )
        if v.reason and state in ("paused", "stopped", "failed"):
            t.append(f"  ({v.reason})", "dim")
        t.truncate(max(0, dash.size.width - 13))
        t.pad_right(max(0, dash.size.width - 13 - len(t)))
        t.append(" ^p commands", "dim")
        self._set(dash.query_one("#header", Static), t)

    def _draw_run(self, dash: Screen) -> None:
        v = self.view
        t = Text()
        ep_total = f"/{v.epochs}" if v.epochs else ""
        total = v.total_steps
        epoch = min(v.epoch, v.epochs) if v.epochs else v.epoch
        t.append(f"epoch {epoch}{ep_total}  step {v.step}" + (f"/{total}" if total else "") + "\n")
        bar_w = 18
        filled = int(round(v.progress * bar_w))
        t.append("█" * filled, "green")
        t.append("░" * (bar_w - filled), "dim")
        t.append(f" {100 * v.progress:3.0f}%\n")
        t.append(f"ETA {fmt_duration(v.eta_s())}  {v.samples_per_s:,.0f} samples/s\n")
        if v.model:
            t.append(f"{v.model} ", "bold")
            t.append(f"{fmt_count(v.parameters)} parameters\n", "dim")
        t.append(f"{v.optimizer or '…'}", "bold")
        t.append(f"  lr {v.lr:.4g}\n" if v.lr else "\n")
        params = " ".join(p for p in v.optimizer_params.split() if not p.startswith("lr="))
        if params:
            t.append(f"  {params}\n", "dim")
        feats = "n/a" if v.has_features is False else ("frozen" if v.frozen else "trainable")
        t.append("features ", "dim")
        t.append(feats, "bold cyan" if v.frozen else "")
        t.append("  mode ", "dim")
        t.append(v.mode + "\n", "bold yellow" if v.mode == "eval" else "")
        if v.train_loss:
            loss = f"{v.last_loss:.4f}" if math.isfinite(v.last_loss) else str(v.last_loss)
            t.append("loss ", "dim")
            t.append(f"{loss}", "" if math.isfinite(v.last_loss) else "bold red")
            t.append("  acc ", "dim")
            t.append(f"{100 * v.last_accuracy:.1f}%\n")
        if math.isfinite(v.test_error_pct):
            t.append("test error ", "dim")
            t.append(f"{v.test_error_pct:.2f}%\n")
        if v.device.startswith("cuda"):
            t.append("GPU memory ", "dim")
            t.append(f"{v.gpu_memory_mb:,.0f} MiB\n")
        t.rstrip()
        self._set(dash.query_one("#run", Static), t)

    def _draw_timing(self, dash: Screen) -> None:
        tr = self.view.timing
        if tr is None:
            busy = self.view.state == "timing"
            t = Text("timing ...\n" if busy else "press t to time\n", "dim")
            t.append("x @ w.T batched vs a loop", "dim")
        else:
            t = Text()
            t.append(f"{tr.ratio:.1f}x", "bold")
            t.append(" faster batched\n", "dim")
            t.append("batch ", "dim")
            t.append(f"{tr.batch_ms:6.1f} ms {tr.batch_gflops:4.0f} GFLOP/s\n")
            t.append("loop  ", "dim")
            t.append(f"{tr.loop_ms:6.1f} ms {tr.loop_gflops:4.0f} GFLOP/s")
        self._set(dash.query_one("#timing", Static), t)

    def _draw_error(self, dash: Screen) -> None:
        err = self.view.error
        w = dash.query_one("#error", Static)
        if err is None:
            w.display = False
            return
        t = Text("✖ run failed: ", "bold")
        t.append(err.message)
        if err.fix:
            t.append(f"\nfix: {err.fix}")
        self._set(w, t, layout=True)
        w.display = True

    def _draw_log(self, dash: Screen) -> None:
        lines = self.view.log
        if self._log_shown >= len(lines):
            return
        log = dash.query_one("#log", RichLog)
        for style, text in lines[self._log_shown:]:
            log.write(Text(text, style=style, no_wrap=True))
        self._log_shown = len(lines)

    def _draw_plots(self, dash: Screen, force: bool) -> None:
        version = self.view.points_version
        self._redraw_plots([(dash.query_one("#loss", PlotView), version),
                            (dash.query_one("#accuracy", PlotView), version)], force)

    def _redraw_plots(self, plots: list[tuple[PlotView, int]], force: bool) -> None:
        """Rebuild the plots whose data or size changed. While training runs, not within
        PLOT_MIN_SECONDS of the last rebuild, nor before the last rebuild's CPU time is within
        PLOT_CPU_SHARE of the time since it (a wide terminal or a slow core redraws less often)."""
        if not force and not any(p.stale(v) for p, v in plots):
            return
        now = time.monotonic()
        running = self.view.state == "running" and not self.view.finished
        wait = max(PLOT_MIN_SECONDS, self._plots_cost / PLOT_CPU_SHARE)
        if not force and running and now - self._plots_at < wait:
            return
        self._plots_at = now
        cpu = time.thread_time()  # CPU time: on a busy machine the wall time also counts waiting
        for p, v in plots:
            if force or p.stale(v):
                p.redraw(v)
        self._plots_cost = time.thread_time() - cpu

    def watch_log_scale(self, value: bool) -> None:
        try:
            self.query_one("#loss", PlotView).border_title = "loss (log y)" if value else "loss"
            self.query_one("#loss", PlotView).redraw(self.view.points_version)
        except Exception:
            pass

    # ---- keys ---------------------------------------------------------------------------

    def why_not(self, action: str) -> str | None:
        """Why `action` cannot act now, or None when it can."""
        v = self.view
        if action in STEERING and (v.finished or (self._started and not self.session.alive)):
            return f"the run has {v.state if v.state in ('finished', 'stopped', 'failed') else 'ended'}"
        if action == "freeze" and v.has_features is False:
            return "this model has no pretrained features"
        return None

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in STEERING or action == "freeze":
            return None if self.why_not(action) else True
        return True

    def on_key(self, event) -> None:
        """A key whose binding is switched off now says why instead of doing nothing."""
        if not isinstance(self.screen, Dashboard):
            return
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            name = binding.action.split("(")[0]
            reason = self.why_not(name)
            if reason:
                self.say_why(binding.description, reason)
                event.stop()
                return

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

    def _send(self, cmd: C.Command, note: str = "", follow: str = "") -> int:
        cid = self.session.send(cmd)
        if follow:
            self._pending[cid] = follow
        return cid

    def action_pause(self) -> None:
        if self.view.state == "paused":
            self._send(C.Resume())
        else:
            self._send(C.Pause())

    def action_next_optimizer(self) -> None:
        self._send(C.SwitchOptimizer())

    def action_pick_optimizer(self) -> None:
        def chosen(name: str | None) -> None:
            if name:
                self._send(C.SwitchOptimizer(name=name))

        choices = self.view.optimizer_choices or tuple(self.session.cfg.optimizer.choices)
        self.push_screen(OptimizerScreen(choices, OPTIMIZERS, self.view.optimizer), chosen)

    def action_freeze(self) -> None:
        self._send(C.SetFrozen(frozen=not self.view.frozen))

    def action_mode(self) -> None:
        self._send(C.SetMode(mode="eval" if self.view.mode == "train" else "train"))

    def action_lr(self, factor: float) -> None:
        self._send(C.ScaleLearningRate(factor=float(factor)))

    def action_timing(self) -> None:
        self.notify("timing batch vs loop; training waits for it", title="timing")
        self._send(C.RunTiming(**self.timing_kwargs))

    def action_save(self) -> None:
        self._send(C.SaveCheckpoint())

    def action_export(self) -> None:
        if self.session.alive:
            self._send(C.FlushLogs(), follow="export")
        else:  # the engine closed (and so flushed) the files when the run ended
            self.push_screen(ExportScreen(self._log_files()))

    def action_log_scale(self) -> None:
        self.log_scale = not self.log_scale

    async def action_quit(self) -> None:
        if self.attached and self.session.alive:
            from .quit_screen import QuitScreen

            self.push_screen(QuitScreen(), self._quit_choice)
            return
        self.exit(return_code=0)

    def _quit_choice(self, choice: str | None) -> None:
        if choice in ("detach", "stop"):
            self.stop_on_quit = choice == "stop"
            self.exit(return_code=0)

    def _nan_choice(self, choice: str | None) -> None:
        self._nan_open = False
        if choice == "resume":
            self._send(C.Resume())
        elif choice == "restore":
            self._send(C.RestoreCheckpoint(), follow="resume")
        elif choice == "halve":
            self._send(C.ScaleLearningRate(factor=0.5))
            self._send(C.Resume())

    def _log_files(self) -> list[Path]:
        run_dir = Path(self.session.run_dir)
        return [run_dir / "metrics.csv", run_dir / "events.csv"]


def run_dashboard(engine, attached: bool = False) -> int:
    """Run the dashboard over `engine` (or any session); print the run directory on exit.
    0: the run finished or the user stopped it (or detached); 1: it failed; 128+N: ended by signal N."""
    app = DeeptuiApp(engine, handle_signals=True, attached=attached)
    try:
        app.run()
    finally:
        stopped = app.stop_session("quit")
    print(f"run directory: {engine.run_dir}")
    if attached and not app.stop_on_quit:
        if engine.final_state:
            return {"finished": 0, "stopped": 0}.get(engine.final_state, 1)
        print(f"deeptui: detached; the run goes on: deeptui attach {engine.run_dir}")
        return 0
    if not stopped:
        print("deeptui: the training thread did not stop in time; the logs may be incomplete",
              file=sys.stderr)
        return 1
    if app.signal_exit:
        return app.signal_exit
    return {"finished": 0, "stopped": 0}.get(engine.final_state, 1)
