"""The d key's per-layer views and the train-mode test curve's legend, for the dashboard's lower
plot: which statistics of the latest LayerStats it shows, in which colour, under which title."""

from __future__ import annotations

from .plots import COLORS, DEPTH_VIEWS, depth_plot


class LayerViews:
    """Mixed into the app; it has `view` (a RunView) and `depth` (the LayerStats field shown, or "")."""

    def train_mode_tests(self) -> tuple[str, ...]:
        """The legend entry of the test set evaluated in train mode, when there is one."""
        return ("test_train",) if self.view.eval_mode != "eval" or self.view.curves.test_acc_train else ()

    def depth_profiles(self) -> list[tuple[tuple, tuple[int, int, int]]]:
        """(values per layer, colour) of each run the d key's view shows: here the live run."""
        stats = self.view.layers
        return [(getattr(stats, self.depth), COLORS["train"])] if stats is not None else []

    def depth_plot(self, width: int, height: int) -> str:
        return depth_plot(self.depth_profiles(), width, height, DEPTH_VIEWS[self.depth][1])

    def depth_title(self) -> str:
        name, log = DEPTH_VIEWS[self.depth]
        step = f" at step {self.view.layers.step}" if self.view.layers is not None else ""
        return f"{name} per layer{step}" + (" (log y)" if log else "") + " · x: depth"
