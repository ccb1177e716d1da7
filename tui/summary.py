"""The few lines a run leaves in the terminal when the dashboard closes or a headless run ends,
and that `deeptui show --headless` prints: how it ended, its test errors, its speed, its files.
A pure function of the fold of the run's events (RunView), whichever front end made it."""

from __future__ import annotations

from pathlib import Path

from .view import RunView, fmt_count, fmt_duration, fmt_number

CHECKPOINTS_SHOWN = 6


def summary_lines(view: RunView, run_dir: str | Path) -> list[str]:
    run_dir = Path(run_dir)
    v = view
    speed = f", {v.average_samples_per_s:,.0f} samples/s" if v.average_samples_per_s > 0 else ""
    final_word = "final" if v.finished else "latest"  # a run left going (detached) has no final value yet
    lines = [
        f"run {v.state}: {v.preset}, epoch {min(v.epoch, v.epochs) if v.epochs else v.epoch}"
        f"{'/' + str(v.epochs) if v.epochs else ''}, {v.step:,} steps, {fmt_count(v.curves.samples_seen)} samples, "
        f"{fmt_duration(v.time_s)} wall{speed}"
    ]
    for mode, how in (("eval", ""), ("train", " in train mode")):
        final, best = v.curves.final_test(mode), v.curves.best_test(mode)
        if final is not None:
            best_text = f", best {best.test_error_pct:.2f}% (epoch {best.epoch})" if best is not None else ""
            lines.append(f"test error{how}: {final_word} {final.test_error_pct:.2f}%{best_text}")
    if v.curves.train_loss:
        lines.append(f"train loss: {final_word} {fmt_number(v.curves.last_loss)}")
    files = sorted(p.name for p in run_dir.glob("*.pt")) if run_dir.is_dir() else []
    if files:
        shown = ", ".join(files[:CHECKPOINTS_SHOWN]) + (" ..." if len(files) > CHECKPOINTS_SHOWN else "")
        lines.append(f"checkpoints: {shown}")
    lines.append(f"run directory: {run_dir}")
    return lines
