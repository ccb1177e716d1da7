"""Optimizer paths on a 2-D anisotropic quadratic, with the real torch.optim classes.

f(p) = 0.5 p^T A p with A = R diag(eigenvalues) R^T: the minimum is at (0, 0). Plain SGD is stable
only for lr < 2 / max eigenvalue; past it the stiff direction oscillates with growing amplitude.
Momentum and Adam show their own paths from the same start. `run.kind = "landscape"` presets;
the front ends draw or print them.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

from . import registry
from .config import PathSpec, check_landscape, path_specs

DIVERGED_LOSS = 1e6  # a path whose loss passes this (or is not finite) stops stepping
CONVERGED_FRACTION = 1e-2  # converged = within 1% of the start's distance to the minimum


class Quadratic:
    """f(p) = 0.5 p^T A p, A = R diag(eigenvalues) R^T, R the rotation by angle_deg."""

    minimum = (0.0, 0.0)

    def __init__(self, eigenvalues=(1.0, 39.0), angle_deg: float = 30.0):
        self.eigenvalues = (float(eigenvalues[0]), float(eigenvalues[1]))
        self.angle_deg = float(angle_deg)
        t = math.radians(self.angle_deg)
        self.R = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=torch.float64)
        self.A = self.R @ torch.diag(torch.tensor(self.eigenvalues, dtype=torch.float64)) @ self.R.T

    def loss(self, p) -> torch.Tensor:
        """The loss at p (a 2-element tensor, or a pair of numbers); differentiable."""
        p = torch.as_tensor(p, dtype=torch.float64)
        return 0.5 * p @ self.A @ p

    def stability_limit(self) -> float:
        """Plain SGD converges for 0 < lr < 2 / largest eigenvalue."""
        return 2.0 / max(self.eigenvalues)

    def contours(self, levels, n_points: int = 64) -> list[tuple[list[float], list[float]]]:
        """One closed ellipse (xs, ys) per loss level, for drawing contour lines."""
        lines = []
        l1, l2 = self.eigenvalues
        ts = torch.linspace(0.0, 2 * math.pi, n_points, dtype=torch.float64)
        for level in levels:
            # in the eigenbasis, 0.5 (l1 u^2 + l2 v^2) = level is an axis-aligned ellipse
            u = math.sqrt(2 * level / l1) * torch.cos(ts)
            v = math.sqrt(2 * level / l2) * torch.sin(ts)
            xy = self.R @ torch.stack([u, v])
            lines.append((xy[0].tolist(), xy[1].tolist()))
        return lines


def levels_below(top: float, n: int = 8, factor: float = 4.0) -> list[float]:
    """n loss levels from `top` down, each `factor` times lower: contours evenly spread in log."""
    return [top / factor**k for k in range(n)]


class Trajectory:
    """One optimizer on its own copy of the start point; step() is one real optimizer step."""

    def __init__(self, spec: PathSpec, quad: Quadratic, start):
        self.spec = spec
        self.quad = quad
        self.start = (float(start[0]), float(start[1]))
        self.param = torch.nn.Parameter(torch.tensor(self.start, dtype=torch.float64))
        self.optimizer = registry.build(spec.optimizer, [self.param], **spec.hyper)
        self.steps = 0
        self.diverged = False
        self.points: list[tuple[int, float, float, float]] = []  # (step, x, y, loss)
        self._record()

    @property
    def label(self) -> str:
        return self.spec.label

    def _closure(self) -> torch.Tensor:
        self.optimizer.zero_grad()
        loss = self.quad.loss(self.param)
        loss.backward()
        return loss

    def _record(self) -> None:
        with torch.no_grad():
            loss = float(self.quad.loss(self.param))
        x, y = (float(v) for v in self.param.detach())
        self.points.append((self.steps, x, y, loss))
        if not math.isfinite(loss) or loss > DIVERGED_LOSS:
            self.diverged = True

    def step(self) -> bool:
        """One optimizer step (LBFGS: one step of max_iter inner iterations). False if diverged."""
        if self.diverged:
            return False
        self.optimizer.step(self._closure)  # every torch optimizer accepts a closure
        self.steps += 1
        self._record()
        return True

    @property
    def last(self) -> tuple[int, float, float, float]:
        return self.points[-1]

    def distance(self) -> float:
        """Distance from the last point to the minimum."""
        _, x, y, _ = self.points[-1]
        return math.hypot(x - self.quad.minimum[0], y - self.quad.minimum[1])


class LandscapeRun:
    """All paths of a landscape preset; `current` is the highlighted path that step_current() moves."""

    def __init__(self, quad: Quadratic, specs: list[PathSpec], start, steps: int = 100):
        self.quad = quad
        self.specs = list(specs)
        self.start = (float(start[0]), float(start[1]))
        self.steps = steps  # the preset's steps per path, for run_headless and the dashboard
        self.current = 0
        self.reset()

    def reset(self) -> None:
        """Every path back to the start point with a fresh optimizer."""
        self.trajectories = [Trajectory(s, self.quad, self.start) for s in self.specs]

    @property
    def labels(self) -> list[str]:
        return [t.label for t in self.trajectories]

    @property
    def current_trajectory(self) -> Trajectory:
        return self.trajectories[self.current]

    def next_optimizer(self) -> Trajectory:
        """Highlight the next path (wrapping round) and return it."""
        self.current = (self.current + 1) % len(self.trajectories)
        return self.current_trajectory

    def previous_optimizer(self) -> Trajectory:
        self.current = (self.current - 1) % len(self.trajectories)
        return self.current_trajectory

    def step_current(self, n: int = 1) -> None:
        for _ in range(n):
            self.current_trajectory.step()

    def step_all(self, n: int = 1) -> None:
        for _ in range(n):
            for t in self.trajectories:
                t.step()

    def run(self, steps: int | None = None) -> None:
        """Step every path `steps` times (default: the preset's landscape.steps)."""
        self.step_all(self.steps if steps is None else steps)

    def converged(self, t: Trajectory) -> bool:
        """Within CONVERGED_FRACTION of the start's distance to the minimum."""
        start_dist = math.hypot(self.start[0] - self.quad.minimum[0], self.start[1] - self.quad.minimum[1])
        return not t.diverged and t.distance() <= CONVERGED_FRACTION * start_dist

    def done(self) -> bool:
        """Every path has made landscape.steps steps or diverged."""
        return all(t.diverged or t.steps >= self.steps for t in self.trajectories)

    def contours(self, n: int = 8, n_points: int = 64):
        """Contour ellipses from the start point's level down, for the plot's background."""
        return self.quad.contours(levels_below(float(self.quad.loss(self.start)), n), n_points)

    def write_csv(self, path: str | Path) -> Path:
        """All points of all paths; a directory gets trajectories.csv inside it."""
        path = Path(path)
        if path.is_dir():
            path = path / "trajectories.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["optimizer", "step", "x", "y", "loss"])
            for t in self.trajectories:
                for step, x, y, loss in t.points:
                    w.writerow([t.label, step, repr(x), repr(y), repr(loss)])
        return path


def from_config(cfg) -> LandscapeRun:
    check_landscape(cfg)
    ls = cfg.landscape
    torch.manual_seed(cfg.run.seed)  # the paths are deterministic; this only keeps runs alike
    return LandscapeRun(Quadratic(ls.eigenvalues, ls.angle_deg), path_specs(cfg), ls.start, ls.steps)
