"""Optimizer paths on a 2-D anisotropic quadratic, with the real torch.optim classes.

f(p) = 0.5 p^T A p with A = R diag(eigenvalues) R^T: the minimum is at (0, 0). Plain SGD is stable
only for lr < 2 / max eigenvalue; past it the stiff direction oscillates with growing amplitude.
Momentum and Adam show their own paths from the same start. `run.kind = "landscape"` presets.
"""
from __future__ import annotations

import csv
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from engine.config import OPTIMIZERS, ConfigError

DIVERGED_LOSS = 1e6  # a path whose loss passes this (or is not finite) stops stepping
CONVERGED_FRACTION = 1e-2  # run_headless: converged = within 1% of the start's distance to the minimum

# Keys each optimizer accepts in a path table, with defaults (lr is required everywhere).
_KEYS: dict[str, dict[str, Any]] = {
    "sgd": {"weight_decay": 0.0},
    "momentum": {"momentum": 0.9, "weight_decay": 0.0},
    "nesterov": {"momentum": 0.9, "weight_decay": 0.0},
    "adam": {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
    "adamax": {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
    "nadam": {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
    "adagrad": {"eps": 1e-10, "weight_decay": 0.0},
    "adadelta": {"rho": 0.9, "eps": 1e-6, "weight_decay": 0.0},
    "rmsprop": {"alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0},
    "lbfgs": {"max_iter": 4},
}
assert set(_KEYS) == set(OPTIMIZERS)


def _make_optimizer(name: str, params, hyper: dict) -> torch.optim.Optimizer:
    h = dict(hyper)
    if name == "sgd":
        return torch.optim.SGD(params, **h)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(params, nesterov=(name == "nesterov"), **h)
    if "betas" in h:
        h["betas"] = tuple(h["betas"])
    cls = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax, "nadam": torch.optim.NAdam,
           "adagrad": torch.optim.Adagrad, "adadelta": torch.optim.Adadelta,
           "rmsprop": torch.optim.RMSprop, "lbfgs": torch.optim.LBFGS}[name]
    return cls(params, **h)


class Quadratic:
    """f(p) = 0.5 p^T A p, A = R diag(eigenvalues) R^T, R the rotation by angle_deg."""

    minimum = (0.0, 0.0)

    def __init__(self, eigenvalues=(1.0, 39.0), angle_deg: float = 30.0):
        self.eigenvalues = (float(eigenvalues[0]), float(eigenvalues[1]))
        self.angle_deg = float(angle_deg)
        t = math.radians(self.angle_deg)
        self.R = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]],
                              dtype=torch.float64)
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
    return [top / factor ** k for k in range(n)]


@dataclass
class PathSpec:
    label: str  # e.g. "sgd lr=0.05", "momentum 0.5 lr=0.05", "adam lr=0.1"
    optimizer: str  # a name from engine.config.OPTIMIZERS
    hyper: dict = field(default_factory=dict)  # keyword arguments of the torch optimizer, lr included


def _label(name: str, hyper: dict) -> str:
    lr = f"lr={hyper['lr']:g}"
    if name in ("momentum", "nesterov"):
        return f"{name} {hyper['momentum']:g} {lr}"
    return f"{name} {lr}"


class Trajectory:
    """One optimizer on its own copy of the start point; step() is one real optimizer step."""

    def __init__(self, spec: PathSpec, quad: Quadratic, start):
        self.spec = spec
        self.quad = quad
        self.start = (float(start[0]), float(start[1]))
        self.param = torch.nn.Parameter(torch.tensor(self.start, dtype=torch.float64))
        self.optimizer = _make_optimizer(spec.optimizer, [self.param], spec.hyper)
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


# ---------------------------------------------------------------- preset validation

def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_hyper(src: str, key: str, name: str, k: str, v: Any) -> Any:
    """One path value, checked; returns it in the form torch wants."""
    def bad(want: str, example: str) -> ConfigError:
        return ConfigError(f"{src}: {key}.{k} = {v!r} for {name}; fix: {want}, e.g. {k} = {example}")

    if k == "lr":
        if not _num(v) or v <= 0:
            raise bad("a learning rate > 0", "1e-2")
        return float(v)
    if k == "betas":
        if not (isinstance(v, list) and len(v) == 2 and all(_num(b) and 0 <= b < 1 for b in v)):
            raise bad("two numbers in [0, 1)", "[0.9, 0.999]")
        return [float(b) for b in v]
    if k == "eps":
        if not _num(v) or v <= 0:
            raise bad("a number > 0", "1e-8")
        return float(v)
    if k == "momentum":
        low_ok = name == "rmsprop"  # SGD momentum 0 would be plain sgd: say so
        if not _num(v) or not (0 <= v < 1) or (v == 0 and not low_ok):
            raise bad("a number in (0, 1) (or optimizer = \"sgd\" for none)", "0.9")
        return float(v)
    if k in ("rho", "alpha"):
        if not _num(v) or not (0 <= v <= 1):
            raise bad("a number in [0, 1]", "0.9")
        return float(v)
    if k == "weight_decay":
        if not _num(v) or v < 0:
            raise bad("a number >= 0", "0.0")
        return float(v)
    if k == "max_iter":
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise bad("an integer >= 1", "4")
        return v
    raise AssertionError(k)  # pragma: no cover - _KEYS and this function list the same keys


def path_specs(cfg) -> list[PathSpec]:
    """landscape.paths as PathSpecs; any bad table raises ConfigError naming the key and the fix."""
    src = cfg.source
    paths = cfg.landscape.paths
    if not paths:
        raise ConfigError(f"{src}: landscape.paths is empty; fix: add at least one path, e.g. "
                          "paths = [ { optimizer = \"sgd\", lr = 1e-2 } ]")
    specs: list[PathSpec] = []
    for i, table in enumerate(paths):
        key = f"landscape.paths[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{src}: {key} = {table!r} is not a table; fix: write it as "
                              "{ optimizer = \"sgd\", lr = 1e-2 }")
        name = table.get("optimizer")
        if name is None:
            raise ConfigError(f"{src}: {key} has no optimizer; fix: add optimizer = \"sgd\" "
                              "(one of " + ", ".join(OPTIMIZERS) + ")")
        if name not in OPTIMIZERS:
            hint = difflib.get_close_matches(str(name), OPTIMIZERS, n=1)
            raise ConfigError(f"{src}: {key}.optimizer = {name!r} is not an optimizer; fix: use one of "
                              + ", ".join(OPTIMIZERS) + (f" (did you mean '{hint[0]}'?)" if hint else ""))
        allowed = ["optimizer", "lr", *_KEYS[name]]
        for k in table:
            if k not in allowed:
                hint = difflib.get_close_matches(k, allowed, n=1, cutoff=0.6)
                extra = f"did you mean '{hint[0]}'? " if hint else ""
                if k == "momentum" and name == "sgd":
                    extra = "for momentum use optimizer = \"momentum\"; "
                raise ConfigError(f"{src}: unknown key {key}.{k} for optimizer '{name}'; fix: {extra}"
                                  f"'{name}' takes " + ", ".join(allowed[1:]))
        if "lr" not in table:
            raise ConfigError(f"{src}: {key} has no lr; fix: add lr = 1e-2 (the learning rate)")
        hyper = {k: _check_hyper(src, key, name, k, table[k]) for k in allowed[1:] if k in table}
        hyper = {**_KEYS[name], **hyper}  # defaults for what the table leaves out
        label = _label(name, hyper)
        n_same = sum(s.label == label or s.label.startswith(label + " #") for s in specs)
        if n_same:  # the label is the CSV's key: keep it unique
            label = f"{label} #{n_same + 1}"
        specs.append(PathSpec(label=label, optimizer=name, hyper=hyper))
    return specs


def check_landscape(cfg) -> None:
    """Everything from_config checks, without building the paths (for the CLI's --check)."""
    src, ls = cfg.source, cfg.landscape
    ev = ls.eigenvalues
    if not (len(ev) == 2 and all(_num(e) and e > 0 for e in ev)):
        raise ConfigError(f"{src}: landscape.eigenvalues = {ev!r}; fix: two curvatures > 0, e.g. [1.0, 39.0]")
    if not (len(ls.start) == 2 and all(_num(s) for s in ls.start)):
        raise ConfigError(f"{src}: landscape.start = {ls.start!r}; fix: a point [x, y], e.g. [-1.5, 1.0]")
    if not math.isfinite(ls.angle_deg):
        raise ConfigError(f"{src}: landscape.angle_deg = {ls.angle_deg!r}; fix: an angle in degrees, e.g. 30")
    path_specs(cfg)


def from_config(cfg) -> LandscapeRun:
    check_landscape(cfg)
    ls = cfg.landscape
    torch.manual_seed(cfg.run.seed)  # the paths are deterministic; this only keeps runs alike
    return LandscapeRun(Quadratic(ls.eigenvalues, ls.angle_deg), path_specs(cfg), ls.start, ls.steps)


def run_headless(cfg, run_dir: str | Path, out: Callable[[str], Any] = print) -> int:
    """Every path for landscape.steps steps; writes run_dir/trajectories.csv; one line per path."""
    run = from_config(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    q = run.quad
    start_loss = float(q.loss(run.start))
    start_dist = math.hypot(run.start[0] - q.minimum[0], run.start[1] - q.minimum[1])
    out(f"landscape: eigenvalues {q.eigenvalues[0]:g}, {q.eigenvalues[1]:g} at {q.angle_deg:g} deg, "
        f"start ({run.start[0]:g}, {run.start[1]:g}) loss {start_loss:.4g}; "
        f"SGD is stable for lr < {q.stability_limit():.4g}")
    run.run()
    width = max(len(lbl) for lbl in run.labels)
    for t in run.trajectories:
        step, x, y, loss = t.last
        if t.diverged:
            verdict = f"diverged at step {step}"
        elif t.distance() <= CONVERGED_FRACTION * start_dist:
            verdict = "converged"
        else:
            verdict = "not converged"
        out(f"{t.label:<{width}}  step {step:>4}  x {x:+.4e}  y {y:+.4e}  loss {loss:.3e}  "
            f"distance {t.distance():.2e}  {verdict}")
    path = run.write_csv(run_dir / "trajectories.csv")
    out(f"wrote {path}")
    return 0
