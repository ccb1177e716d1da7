"""Running a preset in this process: build the engine (or resume one), serve its control socket,
and hand it to the dashboard or the headless printer; compare series and landscape presets too."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from deeptui.engine import events as E
from deeptui.engine.compare import title, variants
from deeptui.engine.config import default_data_root, load_config
from deeptui.engine.errors import CheckpointError, RemoteError, SetupError
from deeptui.engine.remote.server import ControlServer
from deeptui.engine.remote.wire import SOCKET_NAME
from deeptui.engine.runlog import new_run_dir, write_config

from .headless import HeadlessPrinter, output_failure, run_headless
from .options import fail, find_preset, overrides, resume_config, wants_dashboard
from .runs import remember


def run(args) -> int:
    """`deeptui [PRESET] [flags]` in this process; the exit code. The dashboard comes up before torch
    has loaded and shows what is being loaded; the headless front end says it in a first line."""
    args.started_at = time.monotonic()  # the run's clock reads 0 here: loading counts, it never jumps back
    try:
        cfg = resume_config(args) if args.resume else load_config(find_preset(args.preset), overrides(args))
        if cfg.run.kind == "landscape":
            return run_landscape(cfg, args)
        if cfg.run.compare:
            return run_compare(cfg, args)
    except SetupError as e:
        return fail(str(e))
    if wants_dashboard(args):
        return run_launched_dashboard(args, cfg)
    printer = HeadlessPrinter(quiet=os.environ.get("RANK", "0") != "0")  # rank 0 speaks for the run
    printer.line(f"deeptui: starting {cfg.run.name}: importing torch, loading the data, building the model")
    if printer.closed:  # a full disk behind a redirect, a closed pipe: nothing was trained
        code, why = output_failure(printer.failure)
        return fail(f"stopped before the start: {why}", code)
    try:
        engine = start_engine(args, cfg, say=lambda text: print(f"deeptui: {text}", file=sys.stderr))
    except SetupError as e:
        return fail(str(e))
    if not engine.is_main:
        return run_headless(engine, printer)
    remember(engine.run_dir)  # ls and attach find it from any folder
    served: list = []

    def start_serving():  # `deeptui attach` works on every live run
        served.append(serve(engine))
        return served[-1]

    try:
        return run_headless(engine, printer, before_start=start_serving)
    finally:
        if served and isinstance(served[0], ControlServer):
            served[0].close()


def run_launched_dashboard(args, cfg) -> int:
    """The dashboard at once, over a Launch that builds the engine (and serves it) meanwhile."""
    from .app import run_dashboard
    from .launch import Launch

    servers: list[ControlServer] = []

    def build(stage):
        stage("importing torch ...")
        engine = start_engine(args, cfg, say=stage, stage=stage)
        remember(engine.run_dir)
        server = serve(engine, quiet=True)
        if isinstance(server, int):
            engine.shutdown("another process serves this run", timeout=30)
            raise RemoteError(
                f"{engine.run_dir}: another deeptui process serves this run", fix=f"deeptui attach {engine.run_dir}"
            )
        if server is not None:
            servers.append(server)
        return engine

    try:
        return run_dashboard(Launch(cfg, build, started_at=args.started_at))
    finally:
        for server in servers:
            server.close()


def start_engine(args, cfg, say=print, stage=lambda text: None):
    """Import torch, load the data, build the model: the engine of a run, or of a --resume from its
    newest finite checkpoint (the same run directory: step numbers and CSV rows continue)."""
    from deeptui.engine.build import build_in_thread
    from deeptui.engine.checkpoint import CheckpointFiles, load

    stage("loading the data and building the model ...")
    data_root = default_data_root(args.data_dir)
    started_at = getattr(args, "started_at", None)
    if not args.resume:
        run_dir = Path(args.run_dir) if args.run_dir else None
        return build_in_thread(cfg, data_root=data_root, run_dir=run_dir, started_at=started_at)
    target = Path(args.resume)
    ckpt = CheckpointFiles(target).for_resume() if target.is_dir() else target
    if ckpt is None or not ckpt.is_file():
        raise CheckpointError(
            f"{ckpt or target}: no checkpoint to resume from",
            fix="pass a run directory that has last.pt (saved with s, on quit, on signals, every log.checkpoint_every)",
        )
    state = load(ckpt, cfg)
    engine = build_in_thread(cfg, data_root=data_root, run_dir=ckpt.parent, resume=state, started_at=started_at)
    say(f"resuming from {ckpt} (step {state['train']['step']})")
    return engine


def serve(engine, quiet: bool = False) -> ControlServer | None | int:
    """Serve the run on <run_dir>/control.sock. Returns the server; None (with a warning) when
    the socket cannot be made, the run goes on without it; exit code 2 when another live process
    already serves this run directory."""
    try:
        return ControlServer(engine).start()
    except RemoteError as e:
        if (Path(engine.run_dir) / SOCKET_NAME).exists():
            engine.data.close()
            return fail(str(e)) if not quiet else 2
        engine.report.emit(E.Warning, message=f"{e}; the run goes on without 'deeptui attach'")
        return None


def run_compare(cfg, args) -> int:
    """The runs of run.compare one after another, each its own engine and run directory."""
    from deeptui.engine.build import build_in_thread

    runs = variants(cfg)  # every value is checked before the first run starts
    data_root = default_data_root(args.data_dir)
    if not wants_dashboard(args):
        for i, (label, one) in enumerate(runs, 1):
            print(f"deeptui: compare run {i}/{len(runs)}: {label}", flush=True)
            try:
                engine = build_in_thread(one, data_root=data_root, log_dir=one.log.dir)
                remember(engine.run_dir)
            except SetupError as e:
                return fail(str(e))
            server = serve(engine)  # `deeptui attach` reaches the live run
            try:
                code = run_headless(engine)
            finally:
                if isinstance(server, ControlServer):
                    server.close()
            if code != 0:
                return code
        return 0
    from .compare_app import run_compare_dashboard

    servers: list[ControlServer] = []  # the live run's; the app closes what is left on exit

    def make_engine(one):
        for server in servers:  # the run before has ended: its socket goes, and with it the last
            server.close()  # hold on its engine, model and on-device data set
        servers.clear()
        engine = build_in_thread(one, data_root=data_root, log_dir=one.log.dir)
        remember(engine.run_dir)
        server = serve(engine)
        if isinstance(server, ControlServer):
            servers.append(server)
        return engine

    return run_compare_dashboard(runs, make_engine, title(cfg), servers)


def run_landscape(cfg, args) -> int:
    """Optimizer paths on a quadratic: the landscape dashboard, or one line per path."""
    run_dir = new_run_dir(cfg.log.dir, cfg.run.name)
    remember(run_dir)
    write_config(run_dir, cfg.to_dict())
    if wants_dashboard(args):
        from deeptui.engine.landscape import from_config

        from .landscape_app import run_landscape_dashboard

        code = run_landscape_dashboard(from_config(cfg), run_dir, preset=cfg.run.name)
    else:
        from .landscape_headless import run_headless as landscape_headless

        code = landscape_headless(cfg, run_dir)
    print(f"run directory: {run_dir}")
    return code
