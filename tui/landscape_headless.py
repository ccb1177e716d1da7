"""`deeptui presets/landscape.toml` without a terminal: every path run to the end, one line per
path, trajectories.csv in the run directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from deeptui.engine.landscape import from_config


def run_headless(cfg, run_dir: str | Path, out: Callable[[str], Any] = print) -> int:
    """Every path for landscape.steps steps; writes run_dir/trajectories.csv; one line per path."""
    run = from_config(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    q = run.quad
    out(
        f"landscape: eigenvalues {q.eigenvalues[0]:g}, {q.eigenvalues[1]:g} at {q.angle_deg:g} deg, "
        f"start ({run.start[0]:g}, {run.start[1]:g}) loss {float(q.loss(run.start)):.4g}; "
        f"SGD is stable for lr < {q.stability_limit():.4g}"
    )
    run.run()
    width = max(len(lbl) for lbl in run.labels)
    for t in run.trajectories:
        step, x, y, loss = t.last
        if t.diverged:
            verdict = f"diverged at step {step}"
        else:
            verdict = "converged" if run.converged(t) else "not converged"
        out(
            f"{t.label:<{width}}  step {step:>4}  x {x:+.4e}  y {y:+.4e}  loss {loss:.3e}  "
            f"distance {t.distance():.2e}  {verdict}"
        )
    out(f"wrote {run.write_csv(run_dir / 'trajectories.csv')}")
    return 0
