"""The command line resolved once: `resolve(args)` turns the parsed flags into one typed Request (the
config with every override applied as values, `--log-dir` written into it so that config.toml is
true, the data root, the run directory, what to resume from, which kind of run and which front
end); everything below the command line reads the Request and parses nothing again. Imports no
textual, rich or plotext."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deeptui.engine.config import Config, code_keys, default_data_root, load_config, parse_override
from deeptui.engine.errors import CheckpointError, ConfigError
from deeptui.engine.runlog import RunLock

from .options import find_preset, front_end
from .runs import find_run

Kind = Literal["plain", "compare", "landscape"]  # a training run, a run.compare series, optimizer paths
Front = Literal["dashboard", "headless"]

# The flags that are preset keys: their values go into the config as --set's do.
FLAG_KEYS = {"epochs": "run.epochs", "max_steps": "run.max_steps", "seed": "run.seed", "device": "run.device"}


@dataclass(frozen=True)
class Request:
    """What `deeptui [PRESET] [flags]` asks for, resolved."""

    cfg: Config  # every --set and flag applied; log.dir is where the run directory goes
    kind: Kind
    front: Front  # the dashboard needs a terminal both ways, and rank 0 of a data-parallel run
    data_root: Path
    run_dir: Path | None = None  # made before (by --detach or --nproc's launcher), or the one resumed
    resume: Path | None = None  # the run directory (or .pt file of one) whose checkpoint the engine loads
    detach: bool = False
    nproc: int | None = None
    argv: tuple[str, ...] = ()  # the arguments as typed, for --detach and --nproc to start again
    started_at: float = 0.0  # time.monotonic() at launch: the run's clock reads 0 there
    rank: int = 0  # this process's rank in a data-parallel run (torchrun's RANK), 0 alone

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve(args, argv: list[str] = ()) -> Request:
    """The Request of parsed arguments; a SetupError (exit 2, one line) for anything that cannot
    run: a bad preset or value, a run to resume that deeptui did not make or whose code is not
    trusted, a compare or landscape preset given --resume."""
    started_at = time.monotonic()
    rank = int(os.environ.get("RANK", "0") or 0)
    resume = resume_target(args.resume, getattr(args, "log_dir", None)) if args.resume else None
    src = find_preset(args.preset) if args.preset or resume is None else run_dir_of(resume) / "config.toml"
    values = flag_values(args, str(src))
    if resume is not None:
        if rank == 0:  # a live run first: its lock says so, whether or not it has a checkpoint yet
            RunLock.check_free(run_dir_of(resume))
        cfg = resume_config(args, resume, values)
    else:
        cfg = load_config(find_preset(args.preset), values)
    kind: Kind = "landscape" if cfg.run.kind == "landscape" else "compare" if cfg.run.compare else "plain"
    front: Front = "dashboard" if rank == 0 and front_end(args.headless) == "dashboard" else "headless"
    return Request(
        cfg=cfg,
        kind=kind,
        front=front,
        data_root=default_data_root(args.data_dir),
        run_dir=Path(args.run_dir) if args.run_dir else (run_dir_of(resume) if resume else None),
        resume=resume,
        detach=args.detach,
        nproc=args.nproc,
        argv=tuple(argv),
        started_at=started_at,
        rank=rank,
    )


def flag_values(args, src: str) -> list[tuple[str, Any]]:
    """(dotted key, value) of every --set (read as TOML; errors name `src`), then of the flags
    that are preset keys (--epochs, --max-steps, --seed, --device, --log-dir or $DEEPTUI_LOG_DIR),
    which win."""
    out = [parse_override(src, text) for text in args.overrides]
    out += [(key, getattr(args, flag)) for flag, key in FLAG_KEYS.items() if getattr(args, flag) is not None]
    log_dir = getattr(args, "log_dir", None) or os.environ.get("DEEPTUI_LOG_DIR")
    if log_dir:
        out.append(("log.dir", log_dir))
    return out


def resume_target(given: str, log_dir: str | None) -> Path:
    """--resume's argument: a run directory, a .pt file of one, or a run's name (or a unique
    prefix of it) as `deeptui ls` prints it."""
    path = Path(given)
    if path.exists():
        return path
    return find_run(given, Path(log_dir) if log_dir else None)


def run_dir_of(target: Path) -> Path:
    """The run directory of --resume: the directory given, or the one that holds the .pt given."""
    return target if target.is_dir() else target.parent


def resume_config(args, target: Path, values: list[tuple[str, Any]]) -> Config:
    """The config a --resume runs with: the run's own resolved config.toml, or the preset given
    (which must be the same preset), with the flags' values. The run directory must be one
    deeptui made (it has config.toml); the code its config names runs only when the user names it
    too or passes --trust-run (a run directory may come from someone else)."""
    run_dir = run_dir_of(target)
    if not (run_dir / "config.toml").is_file():
        raise CheckpointError(
            f"{target}: no checkpoint to resume from (no such run directory, or it has no config.toml)",
            fix="pass a run directory that deeptui made, or its name (deeptui ls lists them)",
        )
    if args.preset:
        cfg = load_config(find_preset(args.preset), values)
    else:
        cfg = load_config(run_dir / "config.toml", values)
        if not getattr(args, "trust_run", False):
            refuse_code(cfg, run_dir, {key for key, _ in values})
    if cfg.run.compare or cfg.run.kind == "landscape":
        what = "run.compare: a series of runs" if cfg.run.compare else "run.kind = 'landscape': it has no checkpoints"
        raise ConfigError(
            f"{cfg.source}: --resume continues one training run, and {what}",
            fix="--resume one run directory of the series without the preset (deeptui ls lists them), or run "
            "the preset anew without --resume",
        )
    return cfg


def refuse_code(cfg: Config, run_dir: Path, named: set[str]) -> None:
    """Opening a run is data, not code: a ConfigError for each code key (a factory, a command)
    that the run's config.toml names and the command line does not (--set KEY=...)."""
    untrusted = {k: v for k, v in code_keys(cfg).items() if not any(k == n or k.startswith(n + ".") for n in named)}
    if untrusted:
        keys = ", ".join(f"{k} = {v!r}" for k, v in untrusted.items())
        raise ConfigError(
            f"{run_dir / 'config.toml'}: {keys}: --resume runs no code that a run directory names",
            fix=f"--trust-run if you trust {run_dir}, or name it yourself (the preset that made the run, "
            "or --set KEY=...)",
        )
