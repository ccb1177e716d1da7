"""The few lines a run leaves in the terminal when the dashboard closes or a headless run ends,
and that `deeptui show --headless` prints: how it ended, its test errors, its speed, its files."""

from __future__ import annotations

from pathlib import Path

from .view import RunView, fmt_count, fmt_duration, fmt_number

CHECKPOINTS_SHOWN = 6


def summary_lines(view: RunView, run_dir: str | Path) -> list[str]:
    run_dir = Path(run_dir)
    v = view
    seconds = v.time_s
    speed = f", {v.samples_seen / seconds:,.0f} samples/s" if v.samples_seen and seconds > 0 else ""
    lines = [
        f"run {v.state}: {v.preset}, epoch {min(v.epoch, v.epochs) if v.epochs else v.epoch}"
        f"{'/' + str(v.epochs) if v.epochs else ''}, {v.step:,} steps, {fmt_count(v.samples_seen)} samples, "
        f"{fmt_duration(seconds)} wall{speed}"
    ]
    if v.best_test is not None:
        lines.append(f"test error: final {v.test_error_pct:.2f}%, best {v.best_test[0]:.2f}% (epoch {v.best_test[1]})")
    if v.train_loss:
        lines.append(f"train loss: final {fmt_number(v.last_loss)}")
    files = sorted(p.name for p in run_dir.glob("*.pt")) if run_dir.is_dir() else []
    if files:
        shown = ", ".join(files[:CHECKPOINTS_SHOWN]) + (" ..." if len(files) > CHECKPOINTS_SHOWN else "")
        lines.append(f"checkpoints: {shown}")
    lines.append(f"run directory: {run_dir}")
    return lines
