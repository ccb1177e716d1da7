"""Running a Request in this process: one table from (kind of run, front end) to the function that
runs it (a training run, a compare series, optimizer paths; on the dashboard or as plain lines),
the engine each builds (a resumed one loads its own checkpoint), and its control socket while it
runs."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from deeptui.engine import events as E
from deeptui.engine.compare import title, variants
from deeptui.engine.errors import RemoteError, SetupError
from deeptui.engine.remote.server import ControlServer
from deeptui.engine.remote.wire import SOCKET_NAME
from deeptui.engine.runlog import new_run_dir, write_config

from .headless import HeadlessPrinter, output_failure, run_headless
from .options import fail
from .request import Request
from .runs import remember


def run(req: Request) -> int:
    """`deeptui [PRESET] [flags]` in this process; the exit code."""
    return FRONT_ENDS[req.kind, req.front](req)


@contextlib.contextmanager
def serving(engine) -> Iterator[ControlServer | None]:
    """The run's control socket (`deeptui attach`, `deeptui ls`) for the block, closed after it.
    Raises RemoteError when another live process serves this run directory; a socket that cannot
    be made is a warning among the run's events, and the run goes on without it."""
    try:
        server = ControlServer(engine).start()
    except RemoteError as e:
        if (Path(engine.run_dir) / SOCKET_NAME).exists():
            raise
        engine.report.emit(E.Warning, message=f"{e}; the run goes on without 'deeptui attach'")
        server = None
    try:
        yield server
    finally:
        if server is not None:
            server.close()


def start_engine(req: Request, say: Callable[[str], None] = print, stage: Callable[[str], None] = lambda text: None):
    """Import torch, load the data, build the model: the engine of the run, or of a --resume (the
    same run directory: step numbers and CSV rows continue)."""
    from deeptui.engine.build import build_in_thread

    stage("loading the data and building the model ...")
    return build_in_thread(
        req.cfg, data_root=req.data_root, run_dir=req.run_dir, resume=req.resume, started_at=req.started_at, say=say
    )


# ---- a training run ------------------------------------------------------------------------


def plain_headless(req: Request) -> int:
    """Plain lines; the headless front end says what it loads in a first line. The other ranks of
    a data-parallel run train silently and serve nothing."""
    printer = HeadlessPrinter(quiet=not req.is_main)  # rank 0 speaks for the run
    printer.line(f"deeptui: starting {req.cfg.run.name}: importing torch, loading the data, building the model")
    if printer.closed:  # a full disk behind a redirect, a closed pipe: nothing was trained
        code, why = output_failure(printer.failure)
        return fail(f"stopped before the start: {why}", code)
    try:
        engine = start_engine(req, say=lambda text: print(f"deeptui: {text}", file=sys.stderr))
    except SetupError as e:
        return fail(str(e))
    if not engine.is_main:
        return run_headless(engine, printer)
    remember(engine.run_dir)  # ls and attach find it from any folder
    try:
        return run_headless(engine, printer, serving=lambda: serving(engine))
    except RemoteError as e:  # another live process serves this run directory: it never started here
        engine.data.close()
        return fail(str(e))


def plain_dashboard(req: Request) -> int:
    """The dashboard at once, over a Launch that builds the engine (and serves it) meanwhile."""
    from .app import run_dashboard
    from .launch import Launch

    with contextlib.ExitStack() as servers:

        def build(stage):
            stage("importing torch ...")
            engine = start_engine(req, say=stage, stage=stage)
            remember(engine.run_dir)
            try:
                servers.enter_context(serving(engine))
            except RemoteError:
                engine.shutdown("another process serves this run", timeout=30)
                raise
            return engine

        return run_dashboard(Launch(req.cfg, build, started_at=req.started_at))


# ---- a compare series -------------------------------------------------------------------------


def compare_headless(req: Request) -> int:
    """The runs of run.compare one after another, each its own engine and run directory."""
    from deeptui.engine.build import build_in_thread

    runs = variants(req.cfg)  # every value is checked before the first run starts
    for i, (label, one) in enumerate(runs, 1):
        print(f"deeptui: compare run {i}/{len(runs)}: {label}", flush=True)
        try:
            engine = build_in_thread(one, data_root=req.data_root, log_dir=one.log.dir)
        except SetupError as e:
            return fail(str(e))
        remember(engine.run_dir)
        try:
            code = run_headless(engine, serving=lambda engine=engine: serving(engine))
        except RemoteError as e:
            engine.data.close()
            return fail(str(e))
        if code != 0:
            return code
    return 0


def compare_dashboard(req: Request) -> int:
    from deeptui.engine.build import build_in_thread

    from .compare_app import run_compare_dashboard

    runs = variants(req.cfg)
    servers: list[ControlServer] = []  # the live run's; the app closes what is left on exit

    def make_engine(one):
        for server in servers:  # the run before has ended: its socket goes, and with it the last
            server.close()  # hold on its engine, model and on-device data set
        servers.clear()
        engine = build_in_thread(one, data_root=req.data_root, log_dir=one.log.dir)
        remember(engine.run_dir)
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(serving(engine))
            if server is not None:
                servers.append(server)
            stack.pop_all()  # served until the next run, or the app's exit
        return engine

    return run_compare_dashboard(runs, make_engine, title(req.cfg), servers)


# ---- optimizer paths on a quadratic ---------------------------------------------------------


def landscape_run_dir(req: Request) -> Path:
    run_dir = new_run_dir(req.cfg.log.dir, req.cfg.run.name)
    remember(run_dir)
    write_config(run_dir, req.cfg.to_dict())
    return run_dir


def landscape_dashboard(req: Request) -> int:
    from deeptui.engine.landscape import from_config

    from .landscape_app import run_landscape_dashboard

    run_dir = landscape_run_dir(req)
    code = run_landscape_dashboard(from_config(req.cfg), run_dir, preset=req.cfg.run.name)
    print(f"run directory: {run_dir}")
    return code


def landscape_lines(req: Request) -> int:
    from .landscape_headless import run_headless as landscape_headless

    run_dir = landscape_run_dir(req)
    code = landscape_headless(req.cfg, run_dir)
    print(f"run directory: {run_dir}")
    return code


# (kind of run, front end) -> the function that runs it.
FRONT_ENDS: dict[tuple[str, str], Callable[[Request], int]] = {
    ("plain", "dashboard"): plain_dashboard,
    ("plain", "headless"): plain_headless,
    ("compare", "dashboard"): compare_dashboard,
    ("compare", "headless"): compare_headless,
    ("landscape", "dashboard"): landscape_dashboard,
    ("landscape", "headless"): landscape_lines,
}
