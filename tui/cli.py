"""`deeptui` command line: run a preset (dashboard or headless), `deeptui bench`.

Exit codes: 0 finished, 1 failed while running, 2 could not start (one line on stderr naming
the file, the key and the fix), 128+N when stopped by signal N (130 Ctrl+C, 143 SIGTERM,
129 SIGHUP).
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from engine import events as E

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "presets" / "quickstart.toml"
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
# Headless output is read in batches, at most this often: every wake-up of the printing thread
# preempts one of torch's threads, and on a small CPU machine the whole team then waits for it.
PRINT_SECONDS = 0.5


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deeptui",
        description="Run, watch and steer PyTorch training from the terminal. "
                    "Other commands: 'deeptui bench' (batch-vs-loop timing), 'deeptui attach [RUN_DIR]' "
                    "(dashboard on a running run), 'deeptui ls' (list runs).")
    p.add_argument("preset", nargs="?", help="preset TOML file (default: the quickstart preset)")
    p.add_argument("--headless", action="store_true", help="plain progress lines instead of the dashboard")
    p.add_argument("--epochs", type=int, help="override run.epochs")
    p.add_argument("--max-steps", type=int, help="override run.max_steps")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides run.device)")
    p.add_argument("--data-dir", help="data root (default: $PYTORCH_DATA_DIR, else ./data)")
    p.add_argument("--log-dir", help="where run directories go (overrides log.dir)")
    p.add_argument("--seed", type=int, help="override run.seed")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a run from its checkpoint (a run directory or a checkpoint.pt path)")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="data-parallel training on N processes of this machine (torchrun's machinery; "
                        "gloo on CPU, nccl on CUDA); rank 0 shows the dashboard")
    p.add_argument("--detach", action="store_true",
                   help="run in the background, independent of this terminal; prints the run directory "
                        "(then: deeptui attach, deeptui ls)")
    p.add_argument("--run-dir", help=argparse.SUPPRESS)  # set by --detach: the run directory it made
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="set any preset key by its dotted path, value read as TOML (repeatable)")
    return p


def fail(message: str, code: int = 2) -> int:
    print(f"deeptui: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from engine.timing import bench_main
        return bench_main(argv[1:])
    if argv and argv[0] in ("attach", "ls"):
        from tui.remote_cli import main as remote_main
        return remote_main(argv)
    args = build_parser().parse_args(argv)
    if args.detach:
        from tui.remote_cli import launch_detached
        return launch_detached(args, argv)
    if args.nproc is not None:
        return launch_distributed(args, argv)
    return run(args)


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch_distributed(args, argv: list[str]) -> int:
    """`deeptui PRESET --nproc N`: torchrun's launcher starts N ranks of `python -m tui.cli ...`
    on this machine; it ends them all when one dies. Multi-node: run torchrun yourself."""
    if args.nproc < 1:
        return fail(f"--nproc {args.nproc}: needs at least 1 process; fix: --nproc 2")
    if args.nproc == 1:
        return run(args)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run as torchrun

    launch = get_args_parser().parse_args(
        ["--standalone", "--nproc-per-node", str(args.nproc), "--max-restarts", "0",
         "--module", "tui.cli", *_without_nproc(argv)])
    try:
        torchrun(launch)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        how = (f"signal {failure.signal_name()}" if failure.signal_name() != "<N/A>"
               else f"exit code {failure.exitcode}")
        code = failure.exitcode if failure.exitcode in (1, 2, 129, 130, 143) else 1
        if code != 2:  # exit 2: rank 0 already printed the one-line reason
            print(f"deeptui: worker rank {rank} ended with {how}; the run was stopped on every rank",
                  file=sys.stderr)
        return code
    return 0


def wants_dashboard(args) -> bool:
    """The dashboard needs a terminal both ways; --headless, a pipe or nohup get plain lines."""
    return not args.headless and sys.stdout.isatty() and sys.stdin.isatty()


def _overrides(args) -> list[str]:
    out = list(args.overrides)
    for flag, key in (("epochs", "run.epochs"), ("max_steps", "run.max_steps"), ("seed", "run.seed")):
        if getattr(args, flag) is not None:
            out.append(f"{key}={getattr(args, flag)}")
    if args.device is not None:
        out.append(f'run.device="{args.device}"')
    return out


def setup_errors() -> tuple:
    """Every error that means 'the run could not start' (exit 2)."""
    from engine.config import ConfigError
    from engine.data import DataError
    from engine.engine import CheckpointError, DeviceError
    from engine.models import WeightsError
    from engine.runlog import RunDirError
    return ConfigError, DataError, DeviceError, WeightsError, RunDirError, CheckpointError


def run(args) -> int:
    from engine.config import load_config
    from engine.data import default_data_root
    from engine.engine import Engine

    try:
        if args.resume:
            engine = resume_engine(args)
        else:
            cfg = load_config(args.preset or str(QUICKSTART), _overrides(args))
            if cfg.run.kind == "landscape":
                return run_landscape(cfg, args)
            if cfg.run.compare:
                return run_compare(cfg, args)
            engine = Engine.create_in_thread(cfg, data_root=default_data_root(args.data_dir), log_dir=args.log_dir,
                                   run_dir=Path(args.run_dir) if args.run_dir else None)
    except setup_errors() as e:
        return fail(str(e))
    if engine.dist is not None and not engine.is_main:
        return run_headless(engine, HeadlessPrinter(quiet=True))  # rank 0 speaks for the run
    from tui.remote_cli import start_control_server
    server = start_control_server(engine)  # `deeptui attach` works on every live run
    if isinstance(server, int):
        return server
    try:
        if not wants_dashboard(args):
            return run_headless(engine)
        from tui.app import run_dashboard
        engine.interactive = True
        return run_dashboard(engine)
    finally:
        if server is not None:
            server.close()


def resume_engine(args):
    """The run's own resolved config (or the preset given, which must be the same preset), its
    checkpoint, and the same run directory: step numbers and CSV rows continue."""
    from engine.config import load_config
    from engine.data import default_data_root
    from engine.engine import CheckpointError, Engine, load_checkpoint

    target = Path(args.resume)
    ckpt = target / "checkpoint.pt" if target.is_dir() else target
    run_dir = ckpt.parent
    if not ckpt.is_file():
        raise CheckpointError(f"{ckpt}: no checkpoint to resume from; fix: pass a run directory that "
                              "has checkpoint.pt (saved with s, on quit, on signals, every log.checkpoint_every)")
    if args.preset:
        cfg = load_config(args.preset, _overrides(args))
    else:
        cfg = load_config(run_dir / "config.toml", _overrides(args))
    state = load_checkpoint(ckpt, cfg)
    return Engine.create_in_thread(cfg, data_root=default_data_root(args.data_dir), run_dir=run_dir, resume=state)


def compare_headless(cfg, args) -> int:
    """The compared runs one after another, with plain lines; stops at the first that fails or
    is interrupted (its exit code is returned)."""
    from engine.compare import variants
    from engine.data import default_data_root
    from engine.engine import Engine

    runs = variants(cfg)
    for i, (label, one) in enumerate(runs, 1):
        print(f"deeptui: compare run {i}/{len(runs)}: {label}", flush=True)
        try:
            engine = Engine.create_in_thread(one, data_root=default_data_root(args.data_dir), log_dir=args.log_dir)
        except setup_errors() as e:
            return fail(str(e))
        from tui.remote_cli import start_control_server
        server = start_control_server(engine)  # `deeptui attach` reaches the live run
        try:
            code = run_headless(engine)
        finally:
            if server is not None and not isinstance(server, int):
                server.close()
        if code != 0:
            return code
    return 0


def run_compare(cfg, args) -> int:
    from engine.compare import variants

    variants(cfg)  # every value is checked before the first run starts
    if not wants_dashboard(args):
        return compare_headless(cfg, args)
    from tui.compare_app import run_compare_dashboard
    return run_compare_dashboard(cfg, args)


def run_landscape(cfg, args) -> int:
    from engine.landscape import run_headless as landscape_headless
    from engine.runlog import new_run_dir, write_config

    run_dir = new_run_dir(args.log_dir or cfg.log.dir, cfg.run.name)
    write_config(run_dir, cfg.to_dict())
    if wants_dashboard(args):
        from engine.landscape import from_config
        from tui.landscape_app import run_landscape_dashboard
        code = run_landscape_dashboard(from_config(cfg), run_dir, preset=cfg.run.name)
    else:
        code = landscape_headless(cfg, run_dir)
    print(f"run directory: {run_dir}")
    return code


class HeadlessPrinter:
    """Plain progress lines from the engine's events (for nohup, CI, pipes)."""

    def __init__(self, out=None, quiet: bool = False):
        self.out = out or sys.stdout
        self.quiet = quiet
        self.steps_per_epoch = 0
        self.epochs = 0

    def line(self, text: str) -> None:
        if self.quiet:
            return
        print(text, file=self.out, flush=True)

    def handle(self, ev: E.Event) -> None:
        if isinstance(ev, E.RunStarted):
            self.steps_per_epoch, self.epochs = ev.steps_per_epoch, ev.epochs
            self.line(f"deeptui: {'resumed' if ev.resumed else 'started'} {ev.preset} on {ev.device}: "
                      f"{ev.model} ({ev.parameters:,} parameters), {ev.epochs} epochs x "
                      f"{ev.steps_per_epoch} steps; run directory {ev.run_dir}")
        elif isinstance(ev, E.StepMetrics):
            self.line(f"epoch {ev.epoch}/{self.epochs} step {ev.step} loss {ev.loss:.4f} "
                      f"acc {100 * ev.accuracy:.1f}% lr {ev.lr:.3g} {ev.optimizer} "
                      f"{ev.samples_per_s:,.0f} samples/s")
        elif isinstance(ev, E.EpochEnd):
            self.line(f"epoch {ev.epoch} test loss {ev.test_loss:.4f} test error {ev.test_error_pct:.2f}%")
        elif isinstance(ev, E.CommandApplied):
            self.line(f"applied {ev.command}: {ev.detail}")
        elif isinstance(ev, E.CommandRejected):
            self.line(f"rejected {ev.command}: {ev.reason}")
        elif isinstance(ev, E.ScheduleAction):
            self.line(f"schedule: {ev.detail}")
        elif isinstance(ev, E.TimingResult):
            self.line(f"timing: {ev.device} batch vs. loop speed ratio {ev.ratio:.1f}")
        elif isinstance(ev, E.Warning):
            self.line(f"warning: {ev.message}")
        elif isinstance(ev, E.CheckpointSaved):
            self.line(f"checkpoint saved: {ev.path}")
        elif isinstance(ev, E.RunError):
            self.line(f"error: {ev.message}" + (f"; fix: {ev.fix}" if ev.fix else ""))
        elif isinstance(ev, E.Finished):
            self.line(f"deeptui: {ev.state}" + (f" ({ev.reason})" if ev.reason else "")
                      + f"; run directory {ev.run_dir}")


def print_events(session, printer: HeadlessPrinter, until=lambda: False) -> None:
    """Hand every event of a session (an Engine or a RemoteSession) to the printer until the
    session ends or `until()` says so."""
    cursor = 0
    while not until():
        events, cursor = session.events.read(cursor)
        for ev in events:
            printer.handle(ev)
        if not session.alive:
            for ev in session.events.read(cursor)[0]:  # what came in while it was ending
                printer.handle(ev)
            return
        session.wait_finished(PRINT_SECONDS)  # batch what comes in; the run's end wakes it at once


def run_headless(engine, printer: HeadlessPrinter | None = None) -> int:
    """Run the engine in its thread; print its events; stop cleanly on SIGINT/SIGTERM/SIGHUP."""
    from engine.commands import Stop

    printer = printer or HeadlessPrinter()
    caught: list[int] = []

    def on_signal(signum, frame):
        if not caught:
            caught.append(signum)
            engine.send(Stop(reason=f"signal {signal.Signals(signum).name}"))

    old = {s: signal.signal(s, on_signal) for s in SIGNAL_EXIT}
    try:
        engine.start()
        print_events(engine, printer)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if caught:
        return SIGNAL_EXIT[caught[0]]
    return {"finished": 0, "stopped": 0}.get(engine.final_state, 1)


if __name__ == "__main__":
    sys.exit(main())
