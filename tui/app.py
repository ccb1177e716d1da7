"""DeeptuiApp: the dashboard over a training session (engine.session.Session) that steers it.

Commands go in through the SessionController; everything on screen comes from the events read back
(the state the engine reports, never the state a key asked for). The keys are actions.DASHBOARD;
each is handled by an `action_<id>` method here (or RunApp's for the views). It never waits on the
training thread.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable

from deeptui.engine import commands as C
from deeptui.engine.config import OPTIMIZERS
from deeptui.engine.errors import SetupError, exit_code
from deeptui.engine.session import Session
from deeptui.engine.state import RunState

from . import actions
from .dialogs import NumberScreen, OptimizerScreen, QuitScreen
from .hangup import go_on_detached, silence_terminal
from .launch import Launch
from .options import fail
from .run_app import RunApp
from .summary import summary_lines
from .view import RunView

EVAL_ORDER = ("eval", "both", "train")  # what M cycles through


def on_exit_signals(handler: Callable[[int], None], signals=(signal.SIGTERM, signal.SIGHUP)) -> None:
    """SIGTERM and SIGHUP (the SSH session dropped) call handler(signum) on the app's loop."""
    loop = asyncio.get_running_loop()
    for sig in signals:
        try:
            loop.add_signal_handler(sig, handler, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no loop support
            pass


class DeeptuiApp(RunApp):
    """Watch and steer one training session."""

    ACTIONS = actions.DASHBOARD
    BINDINGS = actions.bindings(actions.DASHBOARD)
    DETACH_ON_HANGUP = True  # a compare series, whose next runs the dashboard starts, stops instead

    def __init__(
        self,
        session: Session,
        *,
        clock: Callable[[], float] = time.monotonic,
        timing: dict | None = None,
        handle_signals: bool = False,
        shutdown_timeout: float = 30.0,
        attached: bool = False,
    ):
        super().__init__(session, clock=clock, attached=attached)
        # A run in another process (deeptui attach): q asks stop or detach; signals only detach.
        self.stop_on_quit = not attached
        # The lecture takes the median of 51; 11 keep the pause short (about 4 s on 2 CPU cores).
        self.timing_kwargs = dict(timing) if timing is not None else {"repeats": 11}
        self.handle_signals = handle_signals
        self.shutdown_timeout = shutdown_timeout
        self.signal_exit = 0  # 128+N when a signal ended the app
        self.resumed_on_detach = False  # the quit dialog resumed a paused run before detaching
        self.hung_up = False  # the terminal closed and the run goes on detached (run.on_hangup)
        self._shutdown_done = False

    # ---- lifecycle ----------------------------------------------------------------------

    def on_mount(self) -> None:
        """The signals; RunApp's on_mount (Textual calls each class's handler) starts the session."""
        if self.handle_signals and self.detaches_on_hangup:
            on_exit_signals(self._on_signal, (signal.SIGTERM,))
            loop = asyncio.get_running_loop()
            signal.signal(signal.SIGHUP, lambda signum, frame: self._on_hangup(loop))  # at once, not at the next tick
        elif self.handle_signals:
            on_exit_signals(self._on_signal)

    @property
    def detaches_on_hangup(self) -> bool:
        """run.on_hangup = "detach": a closed terminal leaves this process's run training."""
        return self.DETACH_ON_HANGUP and not self.attached and self.session.cfg.run.on_hangup == "detach"

    def _on_hangup(self, loop) -> None:
        """The terminal closed (SIGHUP): its file descriptors go to /dev/null before anything else
        writes there, and the app ends leaving the run to train (run_dashboard goes on detached)."""
        silence_terminal()
        self.hung_up, self.stop_on_quit = True, False
        loop.call_soon_threadsafe(self.exit, 0)

    def _on_signal(self, sig: int) -> None:
        self.signal_exit = 128 + int(sig)
        self.stop_session(f"signal {signal.Signals(sig).name}")
        self.exit(return_code=self.signal_exit)

    def on_unmount(self) -> None:
        self.stop_session("quit")

    def stop_session(self, reason: str) -> bool:
        """Stop the engine at its next step boundary and wait for it (flushes logs, saves a
        checkpoint); an attached dashboard that only detaches leaves the run going. Idempotent."""
        if self._shutdown_done:
            return True
        self._shutdown_done = True
        if not self.stop_on_quit:
            self.session.detach()  # the run goes on in its own process
            return True
        if self.attached:
            reason = f"{reason} from an attached dashboard"
        if self.started and self.session.alive:
            return bool(self.session.shutdown(reason, timeout=self.shutdown_timeout))
        return True

    def poll(self) -> None:
        if isinstance(self.session, Launch) and self.session.ready.is_set():
            self._hand_over(self.session)
        super().poll()

    def _hand_over(self, launch: Launch) -> None:
        """The engine is built: watch it from now on (commands sent meanwhile go to it), or end
        with the setup error (run_dashboard prints it: exit 2)."""
        if launch.engine is None:
            self.exit(return_code=2)
            return
        engine = launch.engine
        engine.interactive = True
        for cmd in launch.pending:
            engine.send(cmd)
        view = RunView(preset=engine.cfg.run.name, batch_size=engine.cfg.data.batch_size)
        self.switch_session(engine, view, keep_clock=True)  # one clock from launch: the engine's goes on
        engine.start()
        self.refresh_bindings()

    def exit_code(self) -> int:
        return self.signal_exit or super().exit_code()

    # ---- the steering actions (actions.DASHBOARD): each sends one command ------------------

    def send(self, cmd: C.Command, follow: str = "") -> int:
        return self.controller.send(cmd, follow)

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

    def action_lr_up(self) -> None:
        self.send(C.ScaleLearningRate(factor=2.0))

    def action_lr_down(self) -> None:
        self.send(C.ScaleLearningRate(factor=0.5))

    def action_set_lr(self) -> None:
        def chosen(lr: float | None) -> None:
            if lr is not None:
                self.send(C.SetLearningRate(lr=lr))

        self.push_screen(NumberScreen("Set the learning rate", self.view.lr or 0.01), chosen)

    def action_time_batch(self) -> None:
        self.notify("timing batch vs loop; training waits for it", title="timing")
        self.send(C.RunTiming(**self.timing_kwargs))

    def time_when_idle(self) -> None:
        """run.auto_timing: the batch-vs-loop timing once, while the run is paused (it never holds
        up a step; a command, e.g. resume, cuts it short and it runs at the next pause)."""
        if self.session.cfg.run.auto_timing and not self.attached and self.controller.auto_timing == "due":
            self.controller.auto_timing = "sent"
            self.send(C.RunTiming(**self.timing_kwargs), follow="auto_timing")

    def action_save(self) -> None:
        self.send(C.SaveCheckpoint())

    def action_export(self) -> None:
        if self.session.alive:
            self.send(C.FlushLogs(), follow="export")  # the dialog opens once the files are flushed
        else:
            super().action_export()

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

    def nan_choice(self, choice: str | None) -> None:
        self.nan_open = False
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


def run_dashboard(session: Session, attached: bool = False, make_app: Callable[..., DeeptuiApp] | None = None) -> int:
    """Run the dashboard (DeeptuiApp, or what `make_app` makes: `deeptui run`'s) over a session;
    print the run directory on exit.
    0: the run finished or the user stopped it (or detached); 1: it failed; 128+N: ended by signal N."""
    app = (make_app or DeeptuiApp)(session, handle_signals=True, attached=attached)
    try:
        app.run()
    finally:
        stopped = app.stop_session("quit")
    if app.hung_up:
        return go_on_detached(session, app.session)
    if isinstance(session, Launch) and session.engine is not None and app.session is session:
        # q while loading: the engine was built and stopped before the dashboard watched it
        app.switch_session(session.engine, RunView(preset=session.cfg.run.name))
    app.catch_up()
    if isinstance(session, Launch):
        if session.error is not None:
            return (
                fail(str(session.error))
                if isinstance(session.error, SetupError)
                else fail(f"could not start: {type(session.error).__name__}: {session.error}", 1)
            )
        if session.engine is None:  # quit before the build ended
            return fail(session.stopped_while_starting(), app.exit_code())
        session = session.engine
    for line in summary_lines(app.view, session.run_dir):
        print(line)
    if attached and not app.stop_on_quit:
        if session.final_state:
            return exit_code(session.final_state, session.bad_input)
        if app.view.state == RunState.PAUSED and not app.resumed_on_detach:
            print(f"deeptui: detached; the run stays paused: deeptui attach {session.run_dir} to resume it")
        else:
            print(f"deeptui: detached; the run goes on: deeptui attach {session.run_dir}")
        return 0
    if not stopped:
        print("deeptui: the training thread did not stop in time; the logs may be incomplete", file=sys.stderr)
        return 1
    return app.exit_code()
