"""What every command-line front end shares: the shipped presets and how a name finds one, the
choice between dashboard and plain lines, the one-line error. Imports no textual, rich or plotext."""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

from deeptui.engine.errors import EXIT_SETUP, ConfigError

# Shipped inside the package (deeptui/presets/ in a wheel; presets/ beside tui/ in a checkout).
PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
QUICKSTART = PRESETS_DIR / "quickstart.toml"
LOG_NAME = "deeptui.log"  # in a run directory: what a process without a terminal printed (--detach, torchrun)


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


def default_log_dir() -> str:
    """Where runs go and where ls and attach look, when --log-dir does not say: $DEEPTUI_LOG_DIR,
    else ./runs."""
    return os.environ.get("DEEPTUI_LOG_DIR") or "runs"


def front_end(headless: bool) -> str:
    """ "dashboard" when it can be drawn: not --headless, and a terminal both ways; else "headless"
    (a pipe, nohup, a closed stdin). The one place that decides it."""
    try:
        tty = sys.stdout.isatty() and sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, AttributeError):  # a closed stream
        tty = False
    return "dashboard" if tty and not headless else "headless"
