"""`deeptui`: the command line. Parses the arguments and hands them to the front end that does the
work; imports only what that front end needs (a headless run never loads textual).

Exit codes (engine.errors): 0 finished, 1 failed while running, 2 could not start (one line on
stderr naming the file, the key and the fix), 128+N when stopped by signal N (130 Ctrl+C, 143
SIGTERM, 129 SIGHUP; 141 a closed output), 74 when the output could not be written.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

from deeptui.engine.errors import EXIT_FAILED, SetupError

from . import guard
from .options import fail
from .request import resolve


def deeptui_version() -> str:
    try:
        return version("deeptui")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deeptui",
        description="Run, watch and steer PyTorch training from the terminal. "
        "Other commands: 'deeptui bench' (batch-vs-loop timing), 'deeptui attach [RUN]' "
        "(dashboard on a running run), 'deeptui show [RUN ...]' (runs that have ended; default: the newest), "
        "'deeptui ls' (list runs), 'deeptui export RUN --tensorboard' (a run's history as TensorBoard event "
        "files), 'deeptui run SCRIPT.py [ARGS...]' (your own loop that calls deeptui.watch, with the "
        "dashboard), 'deeptui send RUN COMMAND [VALUE]' (one command to a live run). RUN: a run directory, "
        "or a run's name (or a unique prefix of it) as deeptui ls prints it.",
    )
    p.add_argument(
        "preset",
        nargs="?",
        help="preset TOML file, or the name of a shipped preset such as cifar_monster (default: the quickstart preset)",
    )
    p.add_argument("--version", action="version", version=f"deeptui {deeptui_version()}")
    p.add_argument("--headless", action="store_true", help="plain progress lines instead of the dashboard")
    p.add_argument("--epochs", type=int, help="override run.epochs")
    p.add_argument("--max-steps", type=int, help="override run.max_steps")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides run.device)")
    p.add_argument("--data-dir", help="data root (default: $PYTORCH_DATA_DIR, else ./data)")
    p.add_argument("--log-dir", help="where run directories go (overrides log.dir)")
    p.add_argument("--seed", type=int, help="override run.seed")
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a run from its newest finite checkpoint (a run directory, a .pt file of one, or a run's "
        "name or unique prefix from deeptui ls)",
    )
    p.add_argument(
        "--trust-run",
        action="store_true",
        help="with --resume: run the code the run directory's config.toml names (model.factory, "
        "data.factory, run.notify_command); without it, deeptui refuses a run directory that names code",
    )
    p.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="data-parallel training on N processes of this machine (torchrun's machinery; "
        "gloo on CPU, nccl on CUDA); rank 0 shows the dashboard",
    )
    p.add_argument(
        "--detach",
        action="store_true",
        help="run in the background, independent of this terminal; prints the run directory "
        "(then: deeptui attach, deeptui ls)",
    )
    p.add_argument("--run-dir", help=argparse.SUPPRESS)  # set by --detach: the run directory it made
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any preset key by its dotted path, value read as TOML (repeatable)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """The command line, behind one guard: whatever happens, one line and an exit code (0, 1, 2,
    128+N for signal N), never a traceback. A bug's traceback goes to a file the line names."""
    argv = list(sys.argv[1:] if argv is None else argv)
    early = guard.stop_on_early_signals()  # until a front end installs its own handlers
    try:
        return dispatch(argv)
    except guard.Interrupted as e:
        return guard.interrupted(e.signum)
    except KeyboardInterrupt:
        return guard.interrupted(signal.SIGINT)
    except SetupError as e:
        return fail(str(e))
    except RecursionError:
        return fail("the input is nested too deeply; fix: a preset or --set value of plain tables and arrays")
    except MemoryError:
        return fail("out of memory while starting; fix: a smaller model or data set (e.g. --set data.train_size=N)")
    except BrokenPipeError:
        guard.quiet_stdout()
        return 128 + signal.SIGPIPE
    except Exception as e:  # a bug: say so in one line, keep the details
        return fail(guard.internal_error(e), EXIT_FAILED)
    finally:
        guard.restore(early)


# ---- subcommands: `deeptui NAME ...` -> a function of the rest of the arguments, imported only
# when called (a headless run never loads textual). To add one: a function here, registered
# under its name; its module parses its own arguments and returns the exit code.

SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {}


def subcommand(name: str):
    def register(fn: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
        SUBCOMMANDS[name] = fn
        return fn

    return register


@subcommand("bench")
def _bench(argv: list[str]) -> int:
    from .bench import bench_main

    return bench_main(argv)


@subcommand("attach")
def _attach(argv: list[str]) -> int:
    from .attach import attach_main

    return attach_main(argv)


@subcommand("ls")
def _ls(argv: list[str]) -> int:
    from .runs import ls_main

    return ls_main(argv)


@subcommand("show")
def _show(argv: list[str]) -> int:
    from .show import show_main

    return show_main(argv)


@subcommand("export")
def _export(argv: list[str]) -> int:
    from .export import export_main

    return export_main(argv)


@subcommand("run")
def _run_script(argv: list[str]) -> int:  # a script of your own that calls deeptui.watch()
    from .run_script import run_main

    return run_main(argv)


@subcommand("send")
def _send(argv: list[str]) -> int:  # one command to a live run, for scripts and agents
    from .send import send_main

    return send_main(argv)


def dispatch(argv: list[str]) -> int:
    """A subcommand by its name; else a preset run: the arguments resolved once into a Request,
    then where it runs (a background process, torchrun's ranks, this process) and, in the
    process that runs it, runner's table picks the front end."""
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    req = resolve(args, argv)
    if req.detach:
        from .detach import launch_detached

        return launch_detached(req)
    if req.nproc is not None:
        from .nproc import launch_distributed

        return launch_distributed(req)
    from .runner import run

    return run(req)


def entry() -> None:
    """The `deeptui` command and `python -m deeptui`: main(), then its exit code."""
    guard.leave(main())
