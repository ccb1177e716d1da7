"""What every command-line front end shares: the shipped presets and how a name finds one, the
flags that become --set overrides, the choice between dashboard and plain lines, the one-line
error. Imports no textual, rich or plotext."""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

from deeptui.engine.config import code_keys, load_config, parse_override
from deeptui.engine.errors import EXIT_SETUP, CheckpointError, ConfigError

# Shipped inside the package (deeptui/presets/ in a wheel; presets/ beside tui/ in a checkout).
PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
QUICKSTART = PRESETS_DIR / "quickstart.toml"


def fail(message: str, code: int = EXIT_SETUP) -> int:
    """Print the one-line reason on stderr (in a data-parallel run, rank 0 alone: each error once);
    return the exit code."""
    if os.environ.get("RANK", "0") != "0":
        return code
    one_line = printable(message.replace("\r", "\\r").replace("\n", "\\n"))  # user text may hold newlines
    try:
        print(f"deeptui: {one_line}", file=sys.stderr)
    except (BrokenPipeError, ValueError, AttributeError):  # nobody reads stderr: the exit code still tells
        pass
    return code


def printable(text: str) -> str:
    """Text for the terminal: a path's bytes that are not UTF-8 (kept by Python as surrogates)
    become U+FFFD instead of an encoding error."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def find_preset(name: str | None) -> str:
    """A preset path as given, or a shipped preset by name ('cifar_monster', 'quickstart.toml');
    no name: the quickstart. Raises ConfigError (with the closest shipped name) for neither."""
    if not name:
        return str(QUICKSTART)
    if Path(name).is_file():
        return name
    stem = name[: -len(".toml")] if name.endswith(".toml") else name
    if "/" not in name and (PRESETS_DIR / f"{stem}.toml").is_file():
        return str(PRESETS_DIR / f"{stem}.toml")
    shipped = shipped_presets()
    hint = difflib.get_close_matches(Path(stem).name, shipped, n=1, cutoff=0.6)
    raise ConfigError(
        f"{name}: preset file not found; fix: check the path"
        + (
            f", or did you mean the shipped preset '{hint[0]}'?"
            if hint
            else f", or name a shipped preset: {', '.join(shipped)}"
        )
    )


def shipped_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def overrides(args) -> list[str]:
    """--set values plus the flags that are preset keys (--epochs, --max-steps, --seed, --device,
    --log-dir or $DEEPTUI_LOG_DIR): the config then says what the run did (config.toml is true)."""
    out = list(args.overrides)
    for flag, key in (("epochs", "run.epochs"), ("max_steps", "run.max_steps"), ("seed", "run.seed")):
        if getattr(args, flag) is not None:
            out.append(f"{key}={getattr(args, flag)}")
    if args.device is not None:
        out.append(f"run.device={toml_string(args.device)}")
    log_dir = getattr(args, "log_dir", None) or os.environ.get("DEEPTUI_LOG_DIR")
    if log_dir:
        out.append(f"log.dir={toml_string(log_dir)}")
    return out


def toml_string(text: str) -> str:
    """A TOML basic string of `text`, a path's undecodable bytes (surrogates) kept as they are."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 32 or ord(c) == 127 else c for c in escaped) + '"'


def default_log_dir() -> str:
    """Where runs go and where ls and attach look, when --log-dir does not say: $DEEPTUI_LOG_DIR,
    else ./runs."""
    return os.environ.get("DEEPTUI_LOG_DIR") or "runs"


def resume_dir(args) -> Path:
    """The run directory of --resume: the directory given, or the one that holds the .pt given."""
    target = Path(args.resume)
    return target if target.is_dir() else target.parent


def resume_config(args):
    """The config a --resume runs with: the run's own resolved config.toml, or the preset given
    (which must be the same preset), with the flags' overrides. The run directory must be one
    deeptui made (it has config.toml); the code its config names runs only when the user names it
    too or passes --trust-run (a run directory may come from someone else)."""
    target, run_dir = Path(args.resume), resume_dir(args)
    if not target.exists() or not (run_dir / "config.toml").is_file():
        raise CheckpointError(
            f"{target}: no checkpoint to resume from (no such run directory, or it has no config.toml)",
            fix="pass a run directory that deeptui made (deeptui ls lists them)",
        )
    if args.preset:
        cfg = load_config(find_preset(args.preset), overrides(args))
    else:
        cfg = load_config(run_dir / "config.toml", overrides(args))
        if not getattr(args, "trust_run", False):
            refuse_code(cfg, run_dir, overrides(args))
    if cfg.run.compare or cfg.run.kind == "landscape":
        what = "run.compare: a series of runs" if cfg.run.compare else "run.kind = 'landscape': it has no checkpoints"
        raise ConfigError(
            f"{cfg.source}: --resume continues one training run, and {what}",
            fix="--resume one run directory of the series without the preset (deeptui ls lists them), or run "
            "the preset anew without --resume",
        )
    return cfg


def refuse_code(cfg, run_dir: Path, given: list[str]) -> None:
    """Opening a run is data, not code: a ConfigError for each code key (a factory, a command)
    that the run's config.toml names and the command line does not (--set KEY=...)."""
    named = {parse_override("--set", text)[0] for text in given}
    untrusted = {k: v for k, v in code_keys(cfg).items() if not any(k == n or k.startswith(n + ".") for n in named)}
    if untrusted:
        keys = ", ".join(f"{k} = {v!r}" for k, v in untrusted.items())
        raise ConfigError(
            f"{run_dir / 'config.toml'}: {keys}: --resume runs no code that a run directory names",
            fix=f"--trust-run if you trust {run_dir}, or name it yourself (the preset that made the run, "
            "or --set KEY=...)",
        )


def wants_dashboard(args) -> bool:
    """The dashboard needs a terminal both ways; --headless, a pipe, nohup or a closed stdin get
    plain lines."""
    try:
        return not args.headless and sys.stdout.isatty() and sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, AttributeError):  # a closed stream
        return False
