"""`deeptui PRESET --detach`: the run in a background process of its own session (no controlling
terminal, so closing the terminal sends it nothing), writing to <run_dir>/deeptui.log; it serves
its control socket like every run, for `deeptui attach` and `deeptui ls`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from deeptui.engine.errors import RemoteError, SetupError
from deeptui.engine.remote.wire import SOCKET_NAME, connect
from deeptui.engine.runlog import new_run_dir, open_run_file

from .options import LOG_NAME, fail
from .request import Request
from .runs import remember


def launch_detached(req: Request, wait_s: float = 120.0) -> int:
    """Start the run in a background process, wait until its control socket answers, print the
    run directory. Setup errors (bad preset, missing data) still come back here with exit 2."""
    if req.kind == "landscape":
        return fail("--detach runs training presets; a landscape run takes seconds: run it without --detach")
    try:
        if req.resume is not None:
            run_dir = req.run_dir  # the request checked it: a run directory deeptui made, its code trusted
        else:
            run_dir = new_run_dir(req.cfg.log.dir, req.cfg.run.name)
            remember(run_dir)
        run_dir = run_dir.resolve()
        log = open_run_file(run_dir, LOG_NAME)  # never through a link a shared folder planted
    except SetupError as e:
        return fail(str(e))
    argv = req.argv
    child = [a for a in argv if a != "--detach"] + ["--headless", "--run-dir", str(run_dir)]
    with log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deeptui", *child],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sock = run_dir / SOCKET_NAME
    print(
        f"deeptui: started in the background (pid {proc.pid}), run directory {run_dir}; waiting up to "
        f"{wait_s:.0f}s for its control socket {sock.name}, which opens once torch is imported, the data "
        f"loaded and the model built (its output: {run_dir / LOG_NAME})",
        flush=True,
    )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            tail = _tail(run_dir / LOG_NAME, 5)
            print(tail, file=sys.stderr, end="" if tail.endswith("\n") else "\n")
            return fail(f"the detached run ended at once (exit {code}); its log: {run_dir / LOG_NAME}", code or 1)
        if sock.exists():
            try:
                connect(sock, timeout=2.0).close()
                break
            except RemoteError:
                pass
        time.sleep(0.1)
    else:
        return fail(
            f"the detached run (pid {proc.pid}) did not open {sock} within {wait_s:.0f}s; "
            f"its log: {run_dir / LOG_NAME}",
            1,
        )
    print(f"run directory: {run_dir}")
    print(
        f"deeptui: running in the background (pid {proc.pid}); watch and steer it with "
        f"'deeptui attach {run_dir}', list runs with 'deeptui ls'"
    )
    return 0


def _tail(path: Path, n: int) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-n:])
    except OSError:
        return ""
