"""The learning-rate schedule ([schedule] lr): the lr of each training step as a pure function of
the step, from optimizer.lr, and the steps where it changes by a step that a plot should mark.
No torch here; the Trainer applies it before each step until the user sets the lr by hand."""

from __future__ import annotations

import math

from .config import Config


class LrSchedule:
    """constant, step (x gamma every N epochs), cosine (to min_ratio x lr at the run's last step)
    or warmup_cosine (linear from 0 over the warm-up steps, then cosine over the rest)."""

    def __init__(self, cfg: Config, steps_per_epoch: int, total_steps: int):
        s = cfg.schedule
        self.kind, self.peak = s.lr, cfg.optimizer.lr
        self.per_epoch = max(1, steps_per_epoch)
        self.total = max(1, total_steps)
        self.every, self.gamma = s.lr_step_epochs * self.per_epoch, s.lr_gamma
        self.warmup = min(s.lr_warmup_steps, self.total - 1) if self.kind == "warmup_cosine" else 0
        self.floor = s.lr_min_ratio

    @property
    def active(self) -> bool:
        return self.kind != "constant"

    def factor(self, step: int) -> float:
        """The lr of the step after `step` steps, as a fraction of optimizer.lr."""
        if self.kind == "step":
            return self.gamma ** (step // self.every)
        if self.kind in ("cosine", "warmup_cosine"):
            if step < self.warmup:
                return (step + 1) / (self.warmup + 1)
            span = max(1, self.total - 1 - self.warmup)
            progress = min(1.0, (step - self.warmup) / span)
            return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    def lr(self, step: int) -> float:
        return self.peak * self.factor(step)

    def milestone(self, step: int) -> str:
        """What changes at this step, for the log and a marker on the plot ("" for most steps)."""
        if self.kind == "step" and step and step % self.every == 0:
            return f"lr {self.lr(step - 1):.3g} -> {self.lr(step):.3g} at epoch {step // self.per_epoch + 1} ({self})"
        if self.warmup and step == self.warmup:
            return f"warm-up done at lr {self.lr(step):.3g}; cosine from here ({self})"
        return ""

    def __str__(self) -> str:
        if self.kind == "step":
            return f"schedule: step, x{self.gamma:g} every {self.every // self.per_epoch} epochs"
        if self.kind in ("cosine", "warmup_cosine"):
            warm = f"warm-up {self.warmup} steps, " if self.warmup else ""
            return f"schedule: {self.kind}, {warm}to {self.floor:g} x lr at step {self.total}"
        return "schedule: constant"
