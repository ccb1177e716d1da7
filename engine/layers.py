"""Per-layer statistics: weight norm, gradient norm, update/weight ratio, activation mean and std.

One training step in every `log.layers_interval` is watched (the last of each interval): forward
hooks take each layer's output mean and std, the weights are copied before the step, and after
it every statistic is computed on the device into one (layers, 5) tensor, read back to the host
once. The other steps run untouched, so the cost is about one step's worth of small kernels per
interval (benchmarks/layers.py measures it).

A layer is a residual block of the Monster (as one), or any other module with its own conv or
linear weight, in the order the model declares them (input to output).
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from .models import ResBlock

COLUMNS = ("weight_norm", "grad_norm", "update_ratio", "activation_mean", "activation_std")


def layer_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of each layer, in depth order."""
    out: list[tuple[str, nn.Module]] = []
    block = None  # the residual block whose submodules are part of it
    for name, m in model.named_modules():
        if block is not None and name.startswith(block):
            continue
        if isinstance(m, ResBlock):
            out.append((name, m))
            block = name + "."
        elif isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.dim() >= 2:
            out.append((name, m))
    return out


class LayerProbe:
    """Watches one training step per interval; `read()` hands back what it saw, once."""

    def __init__(self, model: nn.Module, interval: int, activations: bool = True):
        self.interval = interval
        self.activations = activations  # off under torch.compile: a hook would recompile the model
        self.layers = layer_modules(model) if interval else []
        self.names = [name for name, _ in self.layers]
        self.params = [(i, p) for i, (_, m) in enumerate(self.layers) for p in m.parameters()]
        # Made here, on the model's device, not inside the watched step: a tensor of host data is a
        # copy from pageable memory there, and a sync on CUDA.
        device = self.params[0][1].device if self.params else torch.device("cpu")
        self.index = torch.tensor([i for i, _ in self.params], device=device)  # each parameter's layer
        self.zero = torch.zeros((), device=device)  # the gradient norm of a parameter without one
        self.pending: torch.Tensor | None = None  # (layers, 5) on the device, not yet read
        self.readbacks = 0  # host syncs made; the tests count them

    def watch(self, step: int):
        """A context around training step number `step` (1-based): it gathers the statistics
        when the step is the last of an interval, and does nothing otherwise."""
        if not self.layers or step % self.interval:
            return contextlib.nullcontext()
        return self._watched()

    @contextlib.contextmanager
    def _watched(self):
        n = len(self.layers)
        acts: list[torch.Tensor | None] = [None] * n
        handles = []
        if self.activations:
            for i, (_, m) in enumerate(self.layers):
                handles.append(m.register_forward_hook(lambda mod, inp, out, i=i: acts.__setitem__(i, _moments(out))))
        before = [p.detach().clone() for _, p in self.params]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
        self.pending = self._compute(before, acts)

    def _compute(self, before: list[torch.Tensor], acts: list) -> torch.Tensor:
        after = [p.detach() for _, p in self.params]
        device, index = after[0].device, self.index
        n = len(self.layers)

        def per_layer(norms: list[torch.Tensor]) -> torch.Tensor:
            squares = torch.stack([x.float() for x in norms]) ** 2
            return torch.zeros(n, device=device).index_add_(0, index, squares).sqrt()

        weight = per_layer(torch._foreach_norm(after))
        grads = [p.grad for _, p in self.params]  # a frozen parameter has none: its norm counts 0
        with_grad = [g.detach() for g in grads if g is not None]
        present = iter(torch._foreach_norm(with_grad) if with_grad else ())
        grad = per_layer([next(present) if g is not None else self.zero for g in grads])
        update = per_layer(torch._foreach_norm(torch._foreach_sub(after, before)))
        nan = torch.full((2,), math.nan, device=device)
        moments = torch.stack([a if a is not None else nan for a in acts])
        return torch.cat([torch.stack([weight, grad, update / weight.clamp_min(1e-30)], 1), moments], 1)

    def read(self) -> list[list[float]] | None:
        """The watched step's rows (one per layer, COLUMNS' order), or None when none is waiting:
        the one host sync per interval."""
        pending, self.pending = self.pending, None
        if pending is None:
            return None
        self.readbacks += 1
        return pending.tolist()


def _moments(out) -> torch.Tensor:
    """(mean, std) of a layer's output, on the device."""
    x = out.detach().float()
    return torch.stack([x.mean(), x.std()])
