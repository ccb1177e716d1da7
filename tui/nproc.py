"""`deeptui PRESET --nproc N`: data-parallel training on N processes of this machine. torchrun's
launcher starts N ranks of `python -m deeptui ...` and ends them all when one dies; every rank
builds its own engine (engine.distributed) in the run directory made here. In a terminal, rank 0
draws the dashboard and the others train silently (the Request's front end); the launcher's own
lines go to the run's deeptui.log. Multi-node: run torchrun yourself."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import sys

from deeptui.engine.errors import EXIT_FAILED, SIGNAL_EXIT, ConfigError, SetupError
from deeptui.engine.runlog import new_run_dir, open_run_file

from .options import LOG_NAME, fail
from .request import Request
from .runner import run
from .runs import remember


def _without(argv, *flags: str) -> list[str]:
    """argv without these flags (and their values, given apart or with =)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        elif not a.startswith(tuple(f"{f}=" for f in flags)):
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
    try:
        run_dir = req.run_dir or new_run_dir(req.cfg.log.dir, req.cfg.run.name)  # every rank's, made once here
        remember(run_dir)
        log = io.TextIOWrapper(open_run_file(run_dir, LOG_NAME), line_buffering=True)
    except SetupError as e:
        return fail(str(e))
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    # The launcher's own lines (its OMP_NUM_THREADS banner; at length, what deeptui says in one
    # line) go to the run's log, not over rank 0's dashboard.
    launcher_log = logging.getLogger("torch.distributed")
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s torchrun %(levelname)s %(message)s"))
    on_stderr, launcher_log.handlers = launcher_log.handlers, [handler]  # torch's own handler writes to stderr
    launcher_log.propagate = False
    ranks = _without(req.argv, "--nproc", "--run-dir")
    launch = get_args_parser().parse_args(
        [
            "--standalone",
            "--nproc-per-node",
            str(req.nproc),
            "--max-restarts",
            "0",
            "--module",
            "deeptui",
            *ranks,
            "--run-dir",
            str(run_dir),
        ]
    )
    resized = signal.signal(signal.SIGWINCH, _pass_resize) if req.front == "dashboard" else None
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
    finally:
        if resized is not None:
            signal.signal(signal.SIGWINCH, resized)
        launcher_log.handlers = on_stderr
        log.close()
    return 0


def _pass_resize(signum, frame) -> None:
    """The terminal's size changed: tell the ranks (rank 0 draws there, in a session of its own
    that the terminal does not signal)."""
    import psutil

    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            child.send_signal(signal.SIGWINCH)
