"""The Trainer: the model and what trains it (optimizer, step runner, counters, freeze, modes,
learning rate). Each setting a user steers is changed by one method here; `state_dict()` and
`load_state_dict()` are a checkpoint's model, optimizer, counters and random numbers."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from . import models, registry
from .config import Config
from .errors import CheckpointError
from .metrics import Settings
from .optim import describe, ensure_momentum_buffers, keep_built_settings, make_optimizer, match_layouts, set_base_lr
from .registry import NAMES
from .schedule import LrSchedule
from .state import TrainState
from .step import StepRunner
from .surface import Refused


class Trainer:
    """engine.surface.Steerable: a command handler reads the settings here and changes them with
    one call each; `on_change` tells the run (a StateChanged) after every change."""

    def __init__(
        self,
        cfg: Config,
        model: torch.nn.Module,
        device: torch.device,
        distributed: bool = False,
        on_change: Callable[[], None] = lambda: None,
    ):
        self.cfg, self.device, self.on_change = cfg, device, on_change
        self.distributed = distributed
        self.model = model.to(device)
        self.freeze = tuple(cfg.model.freeze)  # what freezing acts on; empty: the features
        self.has_features = models.has_features(model, self.freeze)
        self.freeze_key = "model.freeze"
        self.choices = tuple(cfg.optimizer.choices) or (cfg.optimizer.name,)
        self.train = TrainState(optimizer=cfg.optimizer.name, base_lr=cfg.optimizer.lr)
        self.eval_mode = cfg.run.eval_mode  # the test set's mode: eval, train or both (the M key)
        self.last_loss: float | None = None  # the last interval's training loss (checkpoints check it)
        if self.has_features and cfg.schedule.freeze_features_epochs > 0:
            models.set_frozen(self.model, True, self.freeze)
        self.runner = StepRunner(
            self.model,
            device,
            cfg.perf,
            distributed=distributed,
            loss_reduction=cfg.optimizer.loss_reduction,
            clip=cfg.optimizer.clip_grad_norm,
        )
        self.schedule = LrSchedule(cfg, 1, 1)  # the run's length comes with plan_lr
        self.on_schedule: Callable[[str], None] = lambda detail: None
        self.optimizer = self.make_optimizer(self.train.optimizer)

    def plan_lr(self, steps_per_epoch: int, max_steps: int, on_schedule: Callable[[str], None]) -> None:
        """[schedule] lr over this run's length; `on_schedule(detail)` tells where it changes by a step."""
        total = self.cfg.run.epochs * steps_per_epoch
        self.schedule = LrSchedule(self.cfg, steps_per_epoch, min(total, max_steps) if max_steps else total)
        self.on_schedule = on_schedule
        if self.follows_schedule:
            self.train.base_lr = self.schedule.lr(self.train.step)
            set_base_lr(self.optimizer, self.train.base_lr)

    # ---- reading --------------------------------------------------------------------------

    @property
    def frozen(self) -> bool:
        return models.is_frozen(self.model, self.freeze)

    @property
    def follows_schedule(self) -> bool:
        """[schedule] lr sets the lr (it is not constant, and the user has not set the lr by hand)."""
        return self.schedule.active and not self.train.lr_override

    def settings(self) -> Settings:
        t = self.train
        schedule = self.schedule.kind if self.follows_schedule else ""
        return Settings(t.base_lr, t.optimizer, self.frozen, t.mode, eval_mode=self.eval_mode, lr_schedule=schedule)

    def make_optimizer(self, name: str) -> torch.optim.Optimizer:
        cfg, perf = self.cfg, self.cfg.perf
        return make_optimizer(
            name, self.model, cfg.optimizer, self.train.base_lr, self.device.type, perf.fused, perf.foreach
        )

    def describe_optimizer(self) -> str:
        text = describe(self.train.optimizer, self.cfg.optimizer, self.optimizer)
        return text + (f" clip={self.runner.clip:g}" if self.runner.clip else "")

    def freeze_label(self) -> str:
        return models.freeze_label(self.freeze)

    def model_label(self) -> str:
        return models.label(self.cfg.model, self.model)

    def finite(self) -> bool:
        """Every floating-point weight and buffer finite (one host read), and the last loss."""
        return models.all_finite(self.model) and (self.last_loss is None or math.isfinite(self.last_loss))

    def sync_note(self, optimizer: str) -> str:
        return self.runner.sync_note(self.optimizer, optimizer)

    # ---- what the user steers: each change, then on_change ---------------------------------

    def switch_optimizer(self, name: str) -> None:
        """A new optimizer `name`; its state starts fresh. Refused: a name deeptui does not know,
        LBFGS in a data-parallel run, momentum or nesterov with optimizer.momentum = 0."""
        if name not in NAMES:
            raise Refused(f"unknown optimizer {name!r}")
        if name == "lbfgs" and self.distributed:
            raise Refused("LBFGS is not supported in a data-parallel run (its line search is per rank)")
        if name in ("momentum", "nesterov") and self.cfg.optimizer.momentum == 0:
            raise Refused(f"{name} needs optimizer.momentum > 0 (the preset sets 0)")
        optimizer = self.make_optimizer(name)  # built first: if this raises, nothing has changed
        self.optimizer, self.train.optimizer = optimizer, name
        self.on_change()

    def set_frozen(self, frozen: bool, by_user: bool = True) -> int:
        """Freeze or unfreeze; by the user, the schedule no longer acts. The parameters changed."""
        n = models.set_frozen(self.model, frozen, self.freeze)
        if by_user:
            self.train.freeze_override = frozen
        self.on_change()
        return n

    def set_mode(self, mode: str) -> None:
        self.train.mode = mode
        self.model.train(mode == "train")
        self.on_change()

    def set_eval_mode(self, mode: str) -> None:
        self.eval_mode = mode
        self.on_change()

    def set_lr(self, lr: float) -> None:
        """The user's lr: from now on [schedule] lr no longer acts."""
        self.train.base_lr = lr
        self.train.lr_override = True
        set_base_lr(self.optimizer, lr)
        self.on_change()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.follows_schedule:
            self.follow_schedule()
        loss, logits = self.runner.step(self.optimizer, x, y, frozen=self.frozen, lbfgs=self.train.optimizer == "lbfgs")
        self.train.samples_seen += y.shape[0]
        return loss, logits

    def follow_schedule(self) -> None:
        """The scheduled lr of the coming step (host floats in the param groups: no sync)."""
        lr = self.schedule.lr(self.train.step)
        if lr != self.train.base_lr:
            self.train.base_lr = lr
            set_base_lr(self.optimizer, lr)
        milestone = self.schedule.milestone(self.train.step)
        if milestone:
            self.on_schedule(milestone)

    # ---- a checkpoint's parts ---------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train": self.train.state_dict(),
            "frozen": self.frozen,
            "runner": self.runner.state_dict(),  # the gradient scaler's scale
            # the run's own GPU only: a checkpoint must resume on a machine with fewer GPUs
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            },
        }

    def load_state_dict(self, payload: dict, run_dir: Path, changed: set[str] = frozenset()) -> None:
        """Take a checkpoint's state back, then the keys a resume `changed` (apply_resume_changes).
        All or nothing: a RestoreCheckpoint that is refused must leave the run as it was, so every
        part that can refuse (the weights' names and shapes, the optimizer state loaded into a new
        optimizer, the counters, the random state) is checked before anything is assigned; one
        that does not fit raises CheckpointError."""
        check_weights(self.model, payload["model"], run_dir)
        train = TrainState(optimizer="", base_lr=0.0)  # the saved counters, read here first
        train.load_state_dict(payload["train"])
        frozen = bool(payload["frozen"])
        optimizer = self.make_optimizer(train.optimizer)
        try:
            optimizer.load_state_dict(payload["optimizer"])
            check_optimizer_state(optimizer, train.optimizer)
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            raise CheckpointError(
                f"{run_dir}: the checkpoint's optimizer state does not fit ({str(e)[:120]}); "
                "fix: resume with the run's own optimizer settings"
            ) from None
        keep_built_settings(optimizer)  # fused/foreach as built here, not as saved
        match_layouts(optimizer)  # buffers in the weights' layout (perf.channels_last changed)
        ensure_momentum_buffers(optimizer)  # a checkpoint of an older deeptui may lack some
        rng = payload["rng"]
        if rng["torch"].dtype != torch.uint8 or rng["torch"].shape != torch.get_rng_state().shape:
            raise CheckpointError(f"{run_dir}: the checkpoint's random state is damaged", fix="use another checkpoint")
        # nothing refuses past here but the gradient scaler's own load, which goes first
        self.runner.load_state_dict(payload.get("runner") or {})  # older checkpoints have none
        self.model.load_state_dict(payload["model"])
        if self.has_features:
            models.set_frozen(self.model, frozen, self.freeze)
        self.train.load_state_dict(payload["train"])
        self.optimizer = optimizer
        self.model.train(self.train.mode == "train")
        self.last_loss = None  # the restored model has not been measured yet
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.apply_resume_changes(changed)

    def apply_resume_changes(self, keys: set[str]) -> None:
        """A resume's new settings take effect: the optimizer's name or hyperparameters (it then
        starts fresh), its learning rate (kept state); the rest (epochs, log, perf) is read from
        the config as the run goes."""
        if "optimizer.lr" in keys:
            self.train.base_lr = self.cfg.optimizer.lr
        if any(k.startswith("optimizer.") and k not in ("optimizer.lr", "optimizer.choices") for k in keys):
            self.train.optimizer = self.cfg.optimizer.name
            self.optimizer = self.make_optimizer(self.train.optimizer)
        elif "optimizer.lr" in keys:
            set_base_lr(self.optimizer, self.train.base_lr)


def check_weights(model: torch.nn.Module, weights: dict, run_dir: Path) -> None:
    """The checkpoint's weights have this model's names and shapes (what load_state_dict would
    refuse, found before it changes anything)."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    wrong = [k for k in own if k in weights and weights[k].shape != own[k].shape]
    if not (missing or unexpected or wrong):
        return
    if wrong:
        k = wrong[0]
        what = f"size mismatch for {k}: {tuple(weights[k].shape)} saved, {tuple(own[k].shape)} here"
    else:
        what = f"missing key {missing[0]}" if missing else f"unexpected key {unexpected[0]}"
    raise CheckpointError(
        f"{run_dir}: the checkpoint's weights do not fit this model ({what})",
        fix="resume with the run's own [model] settings",
    )


def check_optimizer_state(optimizer: torch.optim.Optimizer, name: str) -> None:
    """Each per-parameter buffer (momentum, Adam's moments) has its parameter's shape: torch's
    load_state_dict does not check it, and a step would fail on it later (LBFGS keeps flat
    vectors of all parameters instead)."""
    if registry.OPTIMIZERS[name].one_group:
        return
    for p, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != p.shape:
                raise ValueError(f"{key} is {tuple(value.shape)} for a parameter of {tuple(p.shape)}")
