"""The one optimizer table: each name deeptui offers, its torch class and the hyperparameters it
takes, for training runs (from [optimizer]) and landscape paths (from each path's table) alike.

No torch import at module level: the config reads the names before torch has loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Shared defaults of the hyperparameters, where an entry does not set its own.
DEFAULTS: dict[str, Any] = {
    "momentum": 0.9,
    "weight_decay": 0.0,
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "rho": 0.9,
    "alpha": 0.99,
    "max_iter": 4,
}
# [optimizer] keys that feed a hyperparameter under another name.
PRESET_KEY = {"max_iter": "lbfgs_max_iter"}


@dataclass(frozen=True)
class OptimizerEntry:
    torch_class: str  # the class in torch.optim
    keys: tuple[str, ...]  # hyperparameters taken from the preset or a path table
    fixed: dict = field(default_factory=dict)  # always passed, e.g. nesterov=True
    defaults: dict = field(default_factory=dict)  # where this optimizer's default differs
    path_only: dict = field(default_factory=dict)  # more keys a landscape path may set (default)
    fused: bool = False  # torch has a fused (single-kernel) implementation
    one_group: bool = False  # takes one parameter group only (LBFGS)
    foreach: bool = True  # takes torch's foreach= (multi-tensor kernels); LBFGS does not

    def default(self, key: str) -> Any:
        return self.defaults.get(key, self.path_only.get(key, DEFAULTS.get(key)))


OPTIMIZERS: dict[str, OptimizerEntry] = {
    "sgd": OptimizerEntry("SGD", ("weight_decay",), fixed={"momentum": 0.0}, fused=True),
    "momentum": OptimizerEntry("SGD", ("momentum", "weight_decay"), fused=True),
    "nesterov": OptimizerEntry("SGD", ("momentum", "weight_decay"), fixed={"nesterov": True}, fused=True),
    "adam": OptimizerEntry("Adam", ("betas", "eps", "weight_decay"), fused=True),
    # decoupled weight decay (Loshchilov & Hutter): optimizer.weight_decay shrinks the weights
    # directly instead of entering Adam's moments as an L2 term does
    "adamw": OptimizerEntry("AdamW", ("betas", "eps", "weight_decay"), fused=True),
    "adagrad": OptimizerEntry("Adagrad", ("eps", "weight_decay"), defaults={"eps": 1e-10}),
    "adadelta": OptimizerEntry("Adadelta", ("rho", "eps", "weight_decay"), defaults={"eps": 1e-6}),
    "rmsprop": OptimizerEntry("RMSprop", ("alpha", "eps", "weight_decay"), path_only={"momentum": 0.0}),
    "adamax": OptimizerEntry("Adamax", ("betas", "eps", "weight_decay")),
    "nadam": OptimizerEntry("NAdam", ("betas", "eps", "weight_decay")),
    "lbfgs": OptimizerEntry("LBFGS", ("max_iter",), fixed={"history_size": 10}, one_group=True, foreach=False),
}
NAMES = tuple(OPTIMIZERS)


def preset_hyperparameters(name: str, ocfg) -> dict:
    """The keyword arguments of optimizer `name` from the [optimizer] section (lr is set per
    group). An epsilon below the optimizer's own default is raised to it (adagrad, adadelta)."""
    entry = OPTIMIZERS[name]
    out = {}
    for key in entry.keys:
        value = getattr(ocfg, PRESET_KEY.get(key, key))
        if key == "eps" and "eps" in entry.defaults:
            value = max(value, entry.defaults["eps"])
        out[key] = tuple(value) if key == "betas" else value
    return {**out, **entry.fixed}


def build(name: str, params, **hyperparameters):
    """A torch optimizer of entry `name` over `params` (tensors or parameter groups)."""
    import torch

    entry = OPTIMIZERS[name]
    kwargs = {**entry.fixed, **hyperparameters}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return getattr(torch.optim, entry.torch_class)(params, **kwargs)
