"""Training metrics without host syncs: device-side sums per logging interval read back once,
the evaluation on the test set, and the Reporter that turns them into rows and events."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import events as E
from .replay import Replay, replay_file


@dataclass(frozen=True)
class Settings:
    """What every metrics row and event says the run was using."""

    lr: float
    optimizer: str
    frozen: bool
    mode: str
    eval_mode: str = "eval"  # how the test set is evaluated: eval, train or both
    lr_schedule: str = ""  # the [schedule] lr that sets the lr now; "" when constant or set by hand


class IntervalSums:
    """Loss and correct-prediction sums of one logging interval, kept on the device; `read()` is
    the one host sync per interval (and, in a data-parallel run, the one collective). Its seconds
    are the training clock's: a pause, a timing or a compile inside the interval is not counted,
    and neither are the samples of a step that compiled. With optimizer.clip_grad_norm, it counts
    the clipped steps too (on the device, read in the same sync): `clipped_share` after a read."""

    def __init__(self, device: torch.device, trained: Callable[[], float] = time.monotonic):
        self.device = device
        self.trained = trained  # the run's training clock (engine.clock.RunClock.trained)
        self.readbacks = 0  # host syncs made; the tests count them
        self.clipped_share = float("nan")  # of the last interval read: the share of clipped steps
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), device=self.device, dtype=torch.long)
        self.host_loss, self.host_correct = 0.0, 0  # what a watched loop gave as plain numbers
        self.clipped = torch.zeros((), device=self.device)
        self.clip_steps = 0  # steps whose clipping was counted
        self.samples = 0
        self.counted = 0  # the samples whose correct predictions were counted (accuracy's)
        self.timed_samples = 0  # the samples of steps whose time counts (not a compile's)
        self.started = self.trained()

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, timed: bool = True, clipped=None) -> None:
        """One step's loss and logits; `clipped`, a device bool (the step's gradients were
        clipped), or None when the step did not clip."""
        n = y.shape[0]
        self.loss_sum += loss * n
        self.correct += (logits.argmax(1) == y).sum()
        if clipped is not None:
            self.clipped += clipped
            self.clip_steps += 1
        self.samples += n
        self.counted += n
        if timed:
            self.timed_samples += n

    def add_loss(self, loss, n: int, correct=None) -> None:
        """One step of a loop that is not the engine's (engine.watch): its mean loss over `n`
        samples (a tensor stays on the device, detached from its graph; a number is summed on the
        host) and, when given, how many it predicted right. No host sync."""
        if isinstance(loss, torch.Tensor):
            self.loss_sum.add_(loss.detach(), alpha=n)
        else:
            self.host_loss += float(loss) * n
        if correct is not None:
            if isinstance(correct, torch.Tensor):
                self.correct += correct.detach().to(self.correct.dtype)
            else:
                self.host_correct += int(correct)
            self.counted += n
        self.samples += n
        self.timed_samples += n

    def read(self, dist=None) -> tuple[float, float, int, float] | None:
        """(mean loss, accuracy, samples, samples per training second) of the interval, then a
        fresh interval; None when it holds no sample. Samples are summed over the ranks of a
        data-parallel run. The accuracy is nan when no step counted its correct predictions."""
        n, timed, counted = self.samples, self.timed_samples, self.counted
        if n == 0:
            return None
        loss_sum, correct, clipped = torch.stack(
            [self.loss_sum, self.correct.to(self.loss_sum.dtype), self.clipped.to(self.loss_sum.dtype)]
        ).tolist()
        loss_sum, correct = loss_sum + self.host_loss, correct + self.host_correct
        self.clipped_share = clipped / self.clip_steps if self.clip_steps else float("nan")
        if dist is not None:
            from .distributed import all_reduce_sum

            loss_sum, correct, n, timed = all_reduce_sum([loss_sum, correct, float(n), float(timed)], self.device)
            counted = n  # the engine counts every sample
        self.readbacks += 1
        seconds = self.trained() - self.started
        self.reset()
        rate = timed / seconds if seconds > 0 else 0.0
        return loss_sum / n, correct / counted if counted else math.nan, int(n), rate


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, batches, autocast, device: torch.device, mode: str = "eval"
) -> tuple[float, float] | None:
    """(mean loss, accuracy) over `batches` in eval mode, or in train mode (dropout on, batch norm
    on each test batch's own statistics), one host sync at the end. Afterwards the model is as
    it was: its mode, its buffers (batch norm's running statistics) and, in train mode, the random
    number generator that dropout draws from (the training run is the same with or without it).
    None for an empty test set."""
    was_training = model.training
    model.train(mode == "train")
    saved = [(b, b.clone()) for b in model.buffers()] if mode == "train" else []
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    cuda = [device] if device.type == "cuda" else []
    rng = torch.random.fork_rng(devices=cuda) if mode == "train" else contextlib.nullcontext()
    try:
        with rng:
            for x, y in batches:
                with autocast():
                    out = model(x)
                loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
                correct += (out.argmax(1) == y).sum()
                n += y.shape[0]
    finally:
        for buffer, value in saved:
            buffer.copy_(value)
        model.train(was_training)
    if n == 0:
        return None
    loss_sum, correct = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()
    return loss_sum / n, correct / n


def gpu_memory(device: torch.device) -> tuple[float, float, float]:
    """(allocated now, reserved now, peak allocated since the last call) in MiB on a CUDA device,
    zeros elsewhere; the peak starts again from here, so each interval shows its own."""
    if device.type != "cuda":
        return 0.0, 0.0, 0.0
    mib = 2**20
    now = torch.cuda.memory_allocated(device) / mib, torch.cuda.memory_reserved(device) / mib
    peak = torch.cuda.max_memory_allocated(device) / mib
    torch.cuda.reset_peak_memory_stats(device)
    return now[0], now[1], peak


class Reporter:
    """Everything a run tells, stamped with its clock and position, goes out here: to the buffer
    that front ends read and to the run log (events.jsonl, and the CSV rows derived from each
    event), in one order, whichever thread tells it."""

    def __init__(self, log, events: E.EventBuffer, position: Callable[[], tuple[float, int, int]]):
        self.log, self.events, self.position = log, events, position
        self._lock = threading.Lock()

    def earlier(self) -> Replay:
        """A resume's history: what the run's earlier processes wrote to events.jsonl, folded
        (engine.replay) and put first in the buffer, so that every view sees the whole run.
        Called before this process tells anything."""
        history = replay_file(self.log.journal_path)
        self.events.extend(history.events())
        return history

    def emit(self, event_type: type[E.Event], /, **fields) -> E.Event:
        t, epoch, step = self.position()
        return self.publish(event_type(round(t, 3), epoch, step, **fields))

    def publish(self, event: E.Event) -> E.Event:
        with self._lock:
            self.events.append(event)
            self.log.record(event)
        return event

    def train(
        self,
        loss: float,
        accuracy: float,
        samples_per_s: float,
        samples_seen: int,
        train_s: float,
        settings: Settings,
        gpu: tuple[float, float, float] = (0.0, 0.0, 0.0),
        clipped: float = float("nan"),
    ) -> None:
        """A StepMetrics (a train row); `gpu` is gpu_memory()'s (allocated, reserved, peak);
        `clipped` the interval's share of steps whose gradients were clipped (nan: no clipping)."""
        self.emit(
            E.StepMetrics,
            loss=loss,
            accuracy=accuracy,
            lr=settings.lr,
            optimizer=settings.optimizer,
            frozen=settings.frozen,
            mode=settings.mode,
            samples_per_s=round(samples_per_s, 1),  # the precision a rate has: the CSV's, TensorBoard's
            samples_seen=samples_seen,
            train_s=round(train_s, 3),
            gpu_memory_mb=gpu[0],
            gpu_reserved_mb=gpu[1],
            gpu_peak_mb=gpu[2],
            clipped=clipped,
        )

    def test(self, epoch: int, loss: float, accuracy: float, settings: Settings, mode: str = "eval") -> None:
        """An EpochEnd (a test row); `mode` is the mode the test set was evaluated in."""
        t, _, step = self.position()
        self.publish(
            E.EpochEnd(
                round(t, 3),
                epoch,
                step,
                test_loss=loss,
                test_accuracy=accuracy,
                test_error_pct=100.0 * (1 - accuracy),
                mode=mode,
                lr=settings.lr,
                optimizer=settings.optimizer,
                frozen=settings.frozen,
            )
        )

    def layers(self, names: list[str], rows: list[list[float]]) -> None:
        """Per-layer statistics of one step (engine.layers' columns per layer) as a LayerStats."""
        columns = tuple(zip(*rows)) if rows else ((),) * 5
        self.emit(E.LayerStats, layers=tuple(names), **dict(zip(LAYER_COLUMNS, columns)))

    def note(self, kind: str, detail: str) -> None:
        self.emit(E.Note, kind=kind, detail=detail)

    def lr_schedule(self, detail: str) -> None:
        """Where [schedule] lr changes the lr by a step (a step decay, the end of a warm-up)."""
        self.emit(E.ScheduleAction, action="lr", detail=detail)


LAYER_COLUMNS = ("weight_norm", "grad_norm", "update_ratio", "activation_mean", "activation_std")
