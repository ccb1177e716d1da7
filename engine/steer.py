"""OwnTrainer: the settings a user steers (engine.surface.Steerable) over a model and an optimizer
that the user's own loop trains (deeptui.watch): the optimizer's parameter groups, the named
modules' requires_grad, the model's train/eval mode; a switch among the optimizers the user named.
Each change is one method, told to the run by `on_change`; the loop's own objects are changed in
place, so the names the loop holds keep working (but for a switched optimizer: `run.optimizer`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import models
from .errors import CheckpointError, ConfigError
from .metrics import Settings
from .registry import OPTIMIZERS
from .state import TrainState
from .surface import Refused

# torch.optim classes by the name deeptui's registry gives them (SGD is refined by its momentum)
REGISTRY_NAME = {entry.torch_class: name for name, entry in reversed(OPTIMIZERS.items())}
SHOWN = ("momentum", "betas", "eps", "weight_decay", "alpha", "rho")  # hyperparameters worth a word


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    """What events call the optimizer: the registry's name for a torch.optim class (sgd,
    momentum, nesterov, adam, ...), else its class name in lower case (adamw, lion)."""
    cls = type(optimizer).__name__
    if cls == "SGD":
        group = optimizer.param_groups[0]
        return "nesterov" if group.get("nesterov") else ("momentum" if group.get("momentum") else "sgd")
    return REGISTRY_NAME.get(cls, cls.lower())


def as_float(value) -> float:
    return float(value.item() if isinstance(value, torch.Tensor) else value)


def _set(group: dict, key: str, value: float) -> None:
    if isinstance(group[key], torch.Tensor):  # a capturable optimizer's lr tensor: changed in place
        group[key].fill_(value)
    else:
        group[key] = value


class OwnTrainer:
    """engine.surface.Steerable for a watched loop: the handlers read the settings here and change
    them with one call each; a verb the loop cannot take raises Refused before changing anything."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        freeze=(),
        optimizers: dict | None = None,
        on_change: Callable[[], None] = lambda: None,
        on_warning: Callable[[str], None] = lambda message: None,
    ):
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"deeptui.watch(): the model is a {type(model).__name__}", fix="pass a torch.nn.Module")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(
                f"deeptui.watch(): the optimizer is a {type(optimizer).__name__}", fix="pass a torch.optim.Optimizer"
            )
        self.model, self.optimizer = model, optimizer
        self.on_change, self.on_warning = on_change, on_warning
        self.freeze = tuple([freeze] if isinstance(freeze, str) else freeze)
        missing = models.missing_modules(model, self.freeze)
        if missing:
            top = ", ".join(n for n, _ in model.named_children()) or "none"
            raise ConfigError(
                f"deeptui.watch(freeze=...): the model has no module {missing[0]!r}",
                fix=f"name modules it has (top level: {top}; dotted names reach inside)",
            )
        self.has_features = models.has_features(model, self.freeze)
        self.freeze_key = "deeptui.watch(freeze=[...])"
        self.factories = dict(optimizers or {})
        self.no_choices = (  # why a switch cannot act without choices (an integration says its own)
            "no optimizers to switch between: name them, e.g. deeptui.watch(..., optimizers="
            "{'adam': lambda params: torch.optim.Adam(params, lr=1e-3)})"
        )
        self.choices = tuple(self.factories)
        self.train = TrainState(
            optimizer=optimizer_name(optimizer),
            base_lr=as_float(optimizer.param_groups[0]["lr"]),
            mode="train" if model.training else "eval",
        )
        self.eval_mode = "eval"  # the loop evaluates its own test set, in whatever mode it chooses
        self.mode_set = False  # the user chose the mode: it is kept at every step boundary
        self.last_loss: float | None = None
        self._warned = False

    # ---- reading --------------------------------------------------------------------------

    @property
    def frozen(self) -> bool:
        return models.is_frozen(self.model, self.freeze)

    def settings(self) -> Settings:
        t = self.train
        return Settings(lr=t.base_lr, optimizer=t.optimizer, frozen=self.frozen, mode=t.mode, eval_mode=self.eval_mode)

    def describe_optimizer(self) -> str:
        """e.g. 'lr=0.01 momentum=0.9', each group's lr when they differ."""
        groups = self.optimizer.param_groups
        lrs = [as_float(g["lr"]) for g in groups]
        parts = [f"lr={lrs[0]:.3g}"] if len(set(lrs)) == 1 else [f"lr[{i}]={lr:.3g}" for i, lr in enumerate(lrs)]
        for key in SHOWN:
            value = groups[0].get(key)
            if isinstance(value, tuple):
                parts.append(f"{key}=({', '.join(f'{x:g}' for x in value)})")
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and value:
                parts.append(f"{key}={value:g}")
        if groups[0].get("nesterov"):
            parts.append("nesterov")
        return " ".join(parts)

    def freeze_label(self) -> str:
        return models.freeze_label(self.freeze)

    def model_label(self) -> str:
        return type(self.model).__name__

    def sync_note(self, optimizer: str) -> str:
        return ""  # the loop's step is the loop's: deeptui adds no sync to it

    def finite(self) -> bool:
        return models.all_finite(self.model) and (self.last_loss is None or math.isfinite(self.last_loss))

    # ---- what the user steers: each change, then on_change ---------------------------------

    def switch_optimizer(self, name: str) -> None:
        """The optimizer the user's factory for `name` builds over the same parameter groups; its
        state starts fresh. The loop must step `run.optimizer` from then on (the one it holds
        says so, once, when it is stepped)."""
        if not self.factories:
            raise Refused(self.no_choices)
        if name not in self.factories:
            raise Refused(f"unknown optimizer {name!r}; this loop's choices: {', '.join(self.choices)}")
        groups = self.optimizer.param_groups
        params = list(groups[0]["params"]) if len(groups) == 1 else [{"params": g["params"]} for g in groups]
        optimizer = self.factories[name](params)  # built first: if this raises, nothing has changed
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise Refused(f"optimizers[{name!r}] returned a {type(optimizer).__name__}, not a torch optimizer")
        self._retire(self.optimizer)
        self.optimizer, self.train.optimizer = optimizer, name
        self.train.base_lr = as_float(optimizer.param_groups[0]["lr"])
        self.on_change()

    def _retire(self, old: torch.optim.Optimizer) -> None:
        """The optimizer switched away from says so, once, if the loop still steps it."""

        def stepped(optimizer, args, kwargs):
            if not self._warned:
                self._warned = True
                self.on_warning(
                    "the loop stepped the optimizer deeptui switched away from; step run.optimizer instead "
                    "(the one the last switch made)"
                )

        old.register_step_pre_hook(stepped)

    def set_frozen(self, frozen: bool, by_user: bool = True) -> int:
        n = models.set_frozen(self.model, frozen, self.freeze)
        if by_user:
            self.train.freeze_override = frozen
        self.on_change()
        return n

    def set_mode(self, mode: str) -> None:
        self.train.mode, self.mode_set = mode, True
        self.model.train(mode == "train")
        self.on_change()

    def set_eval_mode(self, mode: str) -> None:
        raise Refused("the loop evaluates its own test set (run.test(...)): the mode it does so in is its own")

    def set_lr(self, lr: float) -> None:
        """Every parameter group's lr, keeping their ratios to the first group's."""
        old = self.train.base_lr
        for g in self.optimizer.param_groups:
            now = as_float(g["lr"])
            _set(g, "lr", lr * now / old if old > 0 and now != old else lr)
        self.train.base_lr = lr
        self.on_change()

    # ---- at a step boundary ---------------------------------------------------------------

    def follow_loop(self, training: bool = True) -> None:
        """The settings the loop changed itself: a scheduler's lr (read, not told: it may change
        every step); after a training step, the model's mode (the user's choice, once made, is put
        back); after an evaluation, whose mode is the loop's own business, not the mode."""
        lr = self.optimizer.param_groups[0]["lr"]
        if not isinstance(lr, torch.Tensor):
            self.train.base_lr = lr
        want = self.train.mode == "train"
        if training and self.model.training != want:
            if self.mode_set:
                self.model.train(want)
            else:
                self.train.mode = "train" if self.model.training else "eval"
                self.on_change()

    # ---- a checkpoint's parts ---------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train": self.train.state_dict(),
            "frozen": self.frozen,
            "runner": {},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state()
                if torch.cuda.is_available() and torch.cuda.is_initialized()
                else None,
            },
        }

    def load_state_dict(self, payload: dict) -> None:
        """A checkpoint of this run back into the loop's own model and optimizer (in place)."""
        saved = str(payload["train"]["optimizer"])
        if saved != self.train.optimizer and saved not in self.factories:
            raise Refused(f"the checkpoint's optimizer is {saved}, which this loop cannot switch to")
        try:
            self.model.load_state_dict(payload["model"])
            if saved != self.train.optimizer:
                self.switch_optimizer(saved)
            self.optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            what = str(e)[:160]
            raise CheckpointError(f"the checkpoint does not fit this loop's model or optimizer ({what})") from None
        if self.has_features:
            models.set_frozen(self.model, bool(payload["frozen"]), self.freeze)
        self.train.load_state_dict(payload["train"])
        self.model.train(self.train.mode == "train")
        self.last_loss = None
        torch.set_rng_state(payload["rng"]["torch"])
