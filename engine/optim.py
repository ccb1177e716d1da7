"""Optimizers over a model: parameter groups with their own learning rates, building, describing."""

from __future__ import annotations

import torch
from torch import nn

from . import registry
from .config import OptimizerConfig


def group_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_children() if any(True for _ in m.parameters())]


def param_groups(model: nn.Module, ocfg: OptimizerConfig, base_lr: float, single: bool = False) -> list[dict]:
    """One group per top-level module named in `group_lr` (at its own lr, kept as a ratio to the
    base lr so that lr changes scale every group), the rest in a group 'default'."""
    if single:
        return [{"params": list(model.parameters()), "lr": base_lr, "group": "all"}]
    named = dict(model.named_children())
    groups, rest = [], []
    taken = set()
    for name, lr in ocfg.group_lr.items():
        groups.append(
            {
                "params": list(named[name].parameters()),
                "lr": base_lr * lr / ocfg.lr,
                "group": name,
                "ratio": lr / ocfg.lr,
            }
        )
        taken.add(name)
    for name, m in named.items():
        if name not in taken:
            rest.extend(m.parameters())
    rest.extend(p for n, p in model.named_parameters(recurse=False))
    if rest:
        groups.insert(0, {"params": rest, "lr": base_lr, "group": "default", "ratio": 1.0})
    return groups


def uses_fused(name: str, setting: str | bool, device_type: str) -> bool:
    """perf.fused for optimizer `name`: "auto" is on for CUDA only (one kernel launch for all
    parameters instead of one per tensor); only sgd, momentum, nesterov and adam have the kernel."""
    wanted = device_type == "cuda" if setting == "auto" else bool(setting)
    return wanted and registry.OPTIMIZERS[name].fused


def make_optimizer(
    name: str,
    model: nn.Module,
    ocfg: OptimizerConfig,
    base_lr: float,
    device_type: str = "cpu",
    fused="auto",
    foreach="auto",
) -> torch.optim.Optimizer:
    """A fresh optimizer over the model's groups (LBFGS: one group), fused when perf.fused says so,
    else foreach as perf.foreach says, with its momentum buffers made up front (see
    ensure_momentum_buffers)."""
    entry = registry.OPTIMIZERS[name]
    kwargs = registry.preset_hyperparameters(name, ocfg)
    if uses_fused(name, fused, device_type):
        kwargs["fused"] = True
    elif foreach != "auto" and entry.foreach:  # "auto": torch picks (foreach on CUDA, one tensor at a time on CPU)
        kwargs["foreach"] = bool(foreach)
    if entry.one_group:
        params = param_groups(model, ocfg, base_lr, single=True)[0]["params"]
        return registry.build(name, params, lr=base_lr, **kwargs)
    return ensure_momentum_buffers(registry.build(name, param_groups(model, ocfg, base_lr), lr=base_lr, **kwargs))


def ensure_momentum_buffers(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Give every parameter of an SGD with momentum a momentum buffer (zeros) before any step.

    torch makes a buffer at a parameter's first gradient; frozen features get none, and after an
    unfreeze a fused SGD meets a group that mixes parameters with and without buffers and raises
    (TypeError: expected Tensor ... but got NoneType). Its first step also fills buffers from
    torch.empty_like, which a GradScaler-skipped step leaves uninitialised. A zero buffer gives
    exactly torch's first step (buf = 0 * momentum + grad = grad, dampening 0), fused or not."""
    if not isinstance(optimizer, torch.optim.SGD):
        return optimizer
    for group in optimizer.param_groups:
        if group["momentum"] == 0:
            continue
        for p in group["params"]:
            state = optimizer.state[p]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return optimizer


def keep_built_settings(optimizer: torch.optim.Optimizer) -> None:
    """After load_state_dict: every param group runs the implementation this optimizer was built
    with (fused, foreach, capturable), not the checkpoint's.

    load_state_dict takes the saved groups whole: a run saved unfused (on a CPU) and resumed where
    fused is wanted (a GPU) kept fused=None, so with fp16 the first step raised "Expected
    grad_scale and found_inf to be None", and without it the run went on unfused while the panel
    said fused. A fused or capturable step keeps its step counter on the parameter's device in
    float32 (as torch itself loads it); the others on the host, where reading it is no sync (so
    does NAdam's mu_product, which torch's load moves to the parameter's device)."""
    for group in optimizer.param_groups:
        for key in ("fused", "foreach", "capturable"):
            if key in optimizer.defaults:
                group[key] = optimizer.defaults[key]
        on_device = bool(group.get("fused") or group.get("capturable"))
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key in ("step", "mu_product"):
                value = state.get(key)
                if isinstance(value, torch.Tensor):
                    state[key] = value.to(device=p.device, dtype=torch.float32) if on_device else value.cpu()


def match_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Every per-parameter state tensor (momentum buffer, Adam's moments) takes its parameter's
    memory layout. load_state_dict keeps the saved one: after a resume that turned
    perf.channels_last on, the weights were channels_last and their buffers not; CUDA's fused
    kernels refuse that, and the CPU's fused kernel computes a wrong update."""
    for p, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def set_base_lr(optimizer: torch.optim.Optimizer, base_lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = base_lr * g.get("ratio", 1.0)


def describe(name: str, ocfg: OptimizerConfig, optimizer: torch.optim.Optimizer) -> str:
    """Short text of the hyperparameters in force, e.g. 'lr=0.01 momentum=0.9 nesterov'."""
    parts = []
    for g in optimizer.param_groups:
        label = g.get("group", "all")
        parts.append(f"lr={g['lr']:.3g}" if label in ("default", "all") else f"lr[{label}]={g['lr']:.3g}")
    for k, v in registry.preset_hyperparameters(name, ocfg).items():
        if k == "weight_decay" and not v:
            continue
        if k == "nesterov":
            parts.append("nesterov")
        elif isinstance(v, tuple):
            parts.append(f"{k}=({', '.join(f'{x:g}' for x in v)})")
        else:
            parts.append(f"{k}={v:g}")
    if all(g.get("fused") for g in optimizer.param_groups):  # what the groups run, not what was asked
        parts.append("fused")
    elif all(g.get("foreach") for g in optimizer.param_groups):
        parts.append("foreach")
    return " ".join(parts)
