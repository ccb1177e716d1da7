"""`deeptui PRESET --nproc N`: data-parallel training on N processes of this machine. torchrun's
launcher starts N ranks of `python -m deeptui ...` and ends them all when one dies; every rank
builds its own engine (engine.distributed). Multi-node: run torchrun yourself."""

from __future__ import annotations

import sys

from deeptui.engine.errors import EXIT_FAILED

from .options import fail
from .runner import run


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
    if args.nproc < 1:
        return fail(f"--nproc {args.nproc}: needs at least 1 process; fix: --nproc 2")
    if args.nproc == 1:
        return run(args)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    launch = get_args_parser().parse_args(
        [
            "--standalone",
            "--nproc-per-node",
            str(args.nproc),
            "--max-restarts",
            "0",
            "--module",
            "deeptui",
            *_without_nproc(argv),
        ]
    )
    try:
        torchrun(launch)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        how = f"signal {failure.signal_name()}" if failure.signal_name() != "<N/A>" else f"exit code {failure.exitcode}"
        code = failure.exitcode if failure.exitcode in (1, 2, 129, 130, 143) else EXIT_FAILED
        if code != 2:  # exit 2: rank 0 already printed the one-line reason
            print(f"deeptui: worker rank {rank} ended with {how}; the run was stopped on every rank", file=sys.stderr)
        return code
    return 0
