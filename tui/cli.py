"""`deeptui`: the command line. Parses the arguments and hands them to the front end that does the
work; imports only what that front end needs (a headless run never loads textual).

Exit codes (engine.errors): 0 finished, 1 failed while running, 2 could not start (one line on
stderr naming the file, the key and the fix), 128+N when stopped by signal N (130 Ctrl+C, 143
SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

SUBCOMMANDS = ("bench", "attach", "ls", "export")


def deeptui_version() -> str:
    try:
        return version("deeptui")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deeptui",
        description="Run, watch and steer PyTorch training from the terminal. "
        "Other commands: 'deeptui bench' (batch-vs-loop timing), 'deeptui attach [RUN_DIR]' "
        "(dashboard on a running run), 'deeptui ls' (list runs), 'deeptui export RUN_DIR --tensorboard' "
        "(a run's CSV files as TensorBoard event files).",
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
        metavar="RUN_DIR",
        help="continue a run from its checkpoint (a run directory or a checkpoint.pt path)",
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
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    if command == "bench":
        from .bench import bench_main

        return bench_main(argv[1:])
    if command == "attach":
        from .attach import attach_main

        return attach_main(argv[1:])
    if command == "ls":
        from .runs import ls_main

        return ls_main(argv[1:])
    if command == "export":
        from .export import export_main

        return export_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.detach:
        from .detach import launch_detached

        return launch_detached(args, argv)
    if args.nproc is not None:
        from .nproc import launch_distributed

        return launch_distributed(args, argv)
    from .runner import run

    return run(args)
