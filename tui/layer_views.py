"""The d key's per-layer views and the train-mode test curve's legend, for the dashboard's lower
plot: which statistics of the latest LayerStats it shows, in which colour, under which title."""

from __future__ import annotations

from .plots import COLORS, DEPTH_VIEWS
from .view import RunView


def train_mode_tests(view: RunView) -> tuple[str, ...]:
    """The legend entry of the test set evaluated in train mode, when there is one."""
    return ("test_train",) if view.eval_mode != "eval" or view.curves.test_acc_train else ()


def depth_profile(view: RunView, depth: str) -> list[tuple[tuple, tuple[int, int, int]]]:
    """(values per layer, colour) of the watched run's latest LayerStats for the view `depth`."""
    stats = view.layers
    return [(getattr(stats, depth), COLORS["train"])] if stats is not None else []


def depth_title(view: RunView, depth: str) -> str:
    name, log = DEPTH_VIEWS[depth]
    step = f" at step {view.layers.step}" if view.layers is not None else ""
    return f"{name} per layer{step}" + (" (log y)" if log else "") + " · x: depth"
