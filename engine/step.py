"""StepRunner: one training step with the [perf] options, and nothing else.

channels_last, autocast (bf16, or fp16 with a gradient scaler), LBFGS's closure, and the
torch.compile and DistributedDataParallel wrappers, and gradient clipping, live here, on CUDA and
on the CPU alike (so
the suite runs every branch a GPU user takes). A step returns the detached loss and logits; it
emits no event and reads no value back to the host (the caller sums them on the device).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class StepRunner:
    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        perf,
        distributed: bool = False,
        loss_reduction: str = "mean",
        clip: float = 0.0,
    ):
        self.model, self.device, self.distributed = model, device, distributed
        self.clip = clip  # optimizer.clip_grad_norm; 0: off
        self.last_clipped: torch.Tensor | None = None  # on the device: whether the last step clipped
        self.reduction = loss_reduction  # "sum": the batch's summed loss is what backward() sees
        self.compile = perf.compile
        if perf.compile:
            # Dynamo's recompile limit (8) counts every compile of the model class's forward in
            # this process while the compiled models live: a compare series' later runs went
            # eager. A new run starts from nothing (an earlier run's compiled code is dropped).
            torch.compiler.reset()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = perf.cudnn_benchmark
        self.memory_format = torch.channels_last if perf.channels_last else torch.contiguous_format
        if perf.channels_last:
            model.to(memory_format=torch.channels_last)
        self.amp, self.amp_dtype = perf.amp, AMP_DTYPES.get(perf.amp)
        self.scaler = torch.amp.GradScaler(device.type) if self.amp_dtype == torch.float16 else None
        # DDP registers gradient hooks only for the parameters that require grad when it is built,
        # and torch.compile specialises on requires_grad: one wrapper per freeze state, built when
        # first needed (at the same step on every rank).
        self.variants: dict[bool, nn.Module] = {}
        # What torch.compile has traced: (freeze state, train mode, batch size). A new one means a
        # (re)compile: the engine shows the "compiling" state for that step.
        self.traced: set[tuple[bool, bool, int]] = set()

    def state_dict(self) -> dict:
        """The gradient scaler's state (its scale and growth count): a resumed fp16 run goes on at
        the scale it had, not at 2**16 with steps skipped while it backs off again."""
        return {"scaler": self.scaler.state_dict() if self.scaler is not None else {}}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):  # empty: saved without fp16
            self.scaler.load_state_dict(state["scaler"])

    def needs_compile(self, frozen: bool, batch: int) -> bool:
        """The next step compiles first (it takes long): a new freeze state, mode or batch size."""
        return self.compile and (frozen, self.model.training, batch) not in self.traced

    def module(self, frozen: bool) -> nn.Module:
        """What the step calls: the model, or its DDP / compiled wrapper for this freeze state."""
        if not self.compile and not self.distributed:
            return self.model
        if frozen not in self.variants:
            module = self.model
            if self.distributed:
                from torch.nn.parallel import DistributedDataParallel as DDP

                module = DDP(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.compile:
                # static shapes: each (freeze state, mode, batch size) is one compile that the engine
                # shows, not a silent switch to a dynamic-shape graph at the last partial batch
                module = torch.compile(module, dynamic=False)
            self.variants[frozen] = module
        return self.variants[frozen]

    def sync_note(self, optimizer: torch.optim.Optimizer, name: str) -> str:
        """What the run tells about stepping with this optimizer: why it reads a value back to the
        host every step, or that perf.amp does not apply to it (LBFGS); "" when nothing."""
        if name == "lbfgs" and self.amp_dtype is not None:
            return (
                f"lbfgs runs in fp32: perf.amp = '{self.amp}' does not apply to it (its closure evaluates the "
                "loss several times per step, without a gradient scaler)"
            )
        if self.scaler is not None and not optimizer.defaults.get("fused") and name != "lbfgs":
            return (
                f"fp16 with {name} (no fused kernel in use): GradScaler.step reads its inf check back to the "
                'host every step (a sync per step on CUDA); perf.amp = "bf16", or sgd, momentum, nesterov or '
                "adam with perf.fused, avoid it"
            )
        return ""

    def clip_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """optimizer.clip_grad_norm: scale the gradients down to that total norm (unscaled first
        under fp16's scaler); whether it did stays on the device (no host sync)."""
        if not self.clip:
            self.last_clipped = None
            return
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        grads = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(grads, self.clip)
        self.last_clipped = norm > self.clip

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def step(
        self, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, *, frozen: bool, lbfgs: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on the batch (x, y); returns (mean loss per sample, logits), detached."""
        model = self.module(frozen)
        if self.memory_format is torch.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if lbfgs:  # LBFGS evaluates the loss several times per step: a closure, in fp32
            box: list[torch.Tensor] = []

            def closure():
                optimizer.zero_grad(set_to_none=True)
                out = model(x)
                loss = F.cross_entropy(out, y, reduction=self.reduction)
                loss.backward()
                for p in optimizer.param_groups[0]["params"]:  # LBFGS flattens p.grad with view(-1)
                    if p.grad is not None and not p.grad.is_contiguous():
                        p.grad = p.grad.contiguous()  # a channels_last weight's gradient is not
                box[:] = [out, loss]
                return loss

            optimizer.step(closure)
            out, loss = box
        else:
            with self.autocast():
                out = model(x)
                loss = F.cross_entropy(out, y, reduction=self.reduction)
            optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.clip_gradients(optimizer)
                self.scaler.step(optimizer)  # fused optimizers take the scaler's inf check on the device
                self.scaler.update()
            else:
                loss.backward()
                self.clip_gradients(optimizer)
                optimizer.step()
        if lbfgs:
            self.last_clipped = None  # LBFGS steps with its own line search: not clipped
        if self.compile:
            self.traced.add((frozen, self.model.training, y.shape[0]))
        if self.reduction == "sum":
            loss = loss / y.shape[0]  # per sample, as the logs report it (a device op, no sync)
        return loss.detach(), out.detach()
