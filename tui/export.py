"""`deeptui export RUN_DIR --tensorboard`: an existing run's history (its events: metrics, events,
machine readings, one history after a rewind) and its config as TensorBoard event files, for runs
that did not set log.tensorboard. Imports no textual, rich or plotext."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from deeptui.engine.config import load_config
from deeptui.engine.errors import SetupError
from deeptui.engine.tensorboard import EVENT_FILES, export_run, require

from .options import fail
from .runs import find_run


def export_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="deeptui export",
        description="Convert a run directory's CSV files for another tool: --tensorboard writes TensorBoard "
        "event files (scalars for every metrics row, text for every event, the config as hparams).",
    )
    p.add_argument("run", metavar="RUN", help="a run directory, or a run's name (or unique prefix) from deeptui ls")
    p.add_argument("--log-dir", help="where to look for runs too (default: $DEEPTUI_LOG_DIR, else ./runs)")
    p.add_argument("--tensorboard", action="store_true", help="write TensorBoard event files")
    p.add_argument("--out", metavar="DIR", help="where the event files go (default: RUN_DIR itself)")
    args = p.parse_args(argv)
    if not args.tensorboard:
        return fail("deeptui export: say what to export; fix: add --tensorboard")
    try:
        given = Path(args.run)
        run_dir = given if given.is_dir() else find_run(args.run, Path(args.log_dir) if args.log_dir else None)
    except SetupError as e:
        return fail(str(e))
    if not (run_dir / "metrics.csv").is_file():
        return fail(f"{run_dir}: not a run directory (no metrics.csv); fix: pass a directory that deeptui ls lists")
    out = Path(args.out) if args.out else run_dir
    there = sorted(out.glob(EVENT_FILES)) if out.is_dir() else []
    if there:
        return fail(
            f"{out}: already holds TensorBoard event files ({there[0].name}); fix: pass --out DIR, "
            "or delete them to write them again"
        )
    try:
        require("deeptui export --tensorboard")
        config = load_config(run_dir / "config.toml").to_dict() if (run_dir / "config.toml").is_file() else {}
        out.mkdir(parents=True, exist_ok=True)
        bar = progress_bar(sys.stderr) if sys.stderr.isatty() else None
        tb = export_run(run_dir, out, config, progress=bar)
        if bar is not None:
            sys.stderr.write("\n")
    except SetupError as e:
        return fail(str(e))
    except OSError as e:
        return fail(f"{out}: cannot write the event files ({e.strerror or e}); fix: pass --out to a writable folder")
    print(f"wrote {tb.scalars} scalars and {tb.texts} event texts to {out}")
    print(f"open them with: tensorboard --logdir {out}", file=sys.stdout)
    return 0


def progress_bar(stream, width: int = 30):
    """progress(done, size) drawing '[#####     ]  45%  12/27 MiB  3 s' in place on a terminal."""
    start = time.monotonic()

    def show(done: int, size: int) -> None:
        share = done / size if size else 1.0
        bar = "#" * int(width * share)
        stream.write(
            f"\rexporting [{bar:<{width}}] {100 * share:3.0f}%  {done / 2**20:,.0f}/{size / 2**20:,.0f} MiB"
            f"  {time.monotonic() - start:.0f} s"
        )
        stream.flush()

    return show
