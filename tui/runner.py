"""Running a preset in this process: build the engine (or resume one), serve its control socket,
and hand it to the dashboard or the headless printer; compare series and landscape presets too."""

from __future__ import annotations

import sys
from pathlib import Path

from deeptui.engine.build import build_in_thread
from deeptui.engine.checkpoint import FILE_NAME, load
from deeptui.engine.compare import title, variants
from deeptui.engine.config import load_config
from deeptui.engine.data import default_data_root
from deeptui.engine.errors import CheckpointError, RemoteError, SetupError
from deeptui.engine.remote.server import ControlServer
from deeptui.engine.remote.wire import SOCKET_NAME
from deeptui.engine.runlog import new_run_dir, write_config

from .headless import HeadlessPrinter, run_headless
from .options import fail, find_preset, overrides, wants_dashboard


def run(args) -> int:
    """`deeptui [PRESET] [flags]` in this process; the exit code."""
    try:
        if args.resume:
            engine = resume_engine(args)
        else:
            cfg = load_config(find_preset(args.preset), overrides(args))
            if cfg.run.kind == "landscape":
                return run_landscape(cfg, args)
            if cfg.run.compare:
                return run_compare(cfg, args)
            engine = build_in_thread(
                cfg,
                data_root=default_data_root(args.data_dir),
                log_dir=args.log_dir,
                run_dir=Path(args.run_dir) if args.run_dir else None,
            )
    except SetupError as e:
        return fail(str(e))
    if not engine.is_main:
        return run_headless(engine, HeadlessPrinter(quiet=True))  # rank 0 speaks for the run
    server = serve(engine)  # `deeptui attach` works on every live run
    if isinstance(server, int):
        return server
    try:
        if not wants_dashboard(args):
            return run_headless(engine)
        from .app import run_dashboard

        engine.interactive = True
        return run_dashboard(engine)
    finally:
        if server is not None:
            server.close()


def serve(engine) -> ControlServer | None | int:
    """Serve the run on <run_dir>/control.sock. Returns the server; None (with a warning) when
    the socket cannot be made, the run goes on without it; exit code 2 when another live process
    already serves this run directory."""
    try:
        return ControlServer(engine).start()
    except RemoteError as e:
        if (Path(engine.run_dir) / SOCKET_NAME).exists():
            engine.data.close()
            return fail(str(e))
        print(f"deeptui: warning: {e}; the run goes on without 'deeptui attach'", file=sys.stderr)
        return None


def resume_engine(args):
    """The run's own resolved config (or the preset given, which must be the same preset), its
    checkpoint, and the same run directory: step numbers and CSV rows continue."""
    target = Path(args.resume)
    ckpt = target / FILE_NAME if target.is_dir() else target
    run_dir = ckpt.parent
    if not ckpt.is_file():
        raise CheckpointError(
            f"{ckpt}: no checkpoint to resume from; fix: pass a run directory that "
            "has checkpoint.pt (saved with s, on quit, on signals, every log.checkpoint_every)"
        )
    preset = find_preset(args.preset) if args.preset else run_dir / "config.toml"
    cfg = load_config(preset, overrides(args))
    return build_in_thread(cfg, data_root=default_data_root(args.data_dir), run_dir=run_dir, resume=load(ckpt, cfg))


def run_compare(cfg, args) -> int:
    """The runs of run.compare one after another, each its own engine and run directory."""
    runs = variants(cfg)  # every value is checked before the first run starts
    data_root = default_data_root(args.data_dir)
    if not wants_dashboard(args):
        for i, (label, one) in enumerate(runs, 1):
            print(f"deeptui: compare run {i}/{len(runs)}: {label}", flush=True)
            try:
                engine = build_in_thread(one, data_root=data_root, log_dir=args.log_dir)
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

    servers: list[ControlServer] = []

    def make_engine(one):
        engine = build_in_thread(one, data_root=data_root, log_dir=args.log_dir)
        server = serve(engine)
        if isinstance(server, ControlServer):
            servers.append(server)
        return engine

    return run_compare_dashboard(runs, make_engine, title(cfg), servers)


def run_landscape(cfg, args) -> int:
    """Optimizer paths on a quadratic: the landscape dashboard, or one line per path."""
    run_dir = new_run_dir(args.log_dir or cfg.log.dir, cfg.run.name)
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
