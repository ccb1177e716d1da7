"""`deeptui PRESET --nproc N`: data-parallel training on N processes of this machine. torchrun's
launcher starts N ranks of `python -m deeptui ...` and ends them all when one dies; every rank
builds its own engine (engine.distributed). Multi-node: run torchrun yourself."""

from __future__ import annotations

import os
import signal
import sys

from deeptui.engine.errors import EXIT_FAILED, SIGNAL_EXIT, ConfigError, SetupError

from .options import fail
from .request import Request
from .runner import run


def _without_nproc(argv) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def check_nproc(req: Request) -> None:
    """--nproc N that this machine cannot run, refused before any process starts: more ranks
    than GPUs on CUDA (each rank takes one), or than CPU cores on the CPU."""
    import torch

    n = req.nproc
    if n < 1:
        raise ConfigError(f"--nproc {n}: needs at least 1 process", fix="--nproc 2")
    spec = req.cfg.run.device
    cuda = spec.startswith("cuda") or (spec == "auto" and torch.cuda.is_available())
    if cuda:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n > gpus:
            raise ConfigError(
                f"--nproc {n}: this machine has {gpus} GPU(s), one per process",
                fix=f"--nproc {max(gpus, 1)} or --device cpu",
            )
    elif n > (os.cpu_count() or 1):
        cores = os.cpu_count() or 1
        raise ConfigError(
            f"--nproc {n}: this machine has {cores} CPU core(s); more processes than cores only wait for each other",
            fix=f"--nproc {cores} or fewer",
        )


def launch_distributed(req: Request) -> int:
    try:
        check_nproc(req)
    except SetupError as e:
        return fail(str(e))
    if req.nproc == 1:
        return run(req)
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    # The launcher's own log lines say again, at length, what deeptui says in one line.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)

    launch = get_args_parser().parse_args(
        [
            "--standalone",
            "--nproc-per-node",
            str(req.nproc),
            "--max-restarts",
            "0",
            "--module",
            "deeptui",
            *_without_nproc(req.argv),
        ]
    )
    try:
        torchrun(launch)
    except SignalException as e:  # Ctrl+C / SIGTERM to the launcher: the ranks got it too
        print(f"deeptui: stopped by {signal.Signals(e.sigval).name}; every rank saved its checkpoint", file=sys.stderr)
        return SIGNAL_EXIT.get(e.sigval, 128 + int(e.sigval))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        how = f"signal {failure.signal_name()}" if failure.signal_name() != "<N/A>" else f"exit code {failure.exitcode}"
        code = failure.exitcode if failure.exitcode in (1, 2, 129, 130, 143) else EXIT_FAILED
        if code != 2:  # exit 2: rank 0 already printed the one-line reason
            print(f"deeptui: worker rank {rank} ended with {how}; the run was stopped on every rank", file=sys.stderr)
        return code
    return 0
