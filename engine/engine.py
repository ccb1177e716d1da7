"""The Engine: owns model, optimizer, data and counters; trains in a background thread.

Commands come in through `engine.commands` (a queue.Queue) and are applied only between steps;
each is answered with an event. Events go out through `engine.events` (an EventBuffer) that the
dashboard or the headless printer polls. Nothing else crosses the thread boundary.
"""
from __future__ import annotations

import contextlib
import math
import queue
import random
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import commands as C
from . import events as E
from .config import OPTIMIZERS, Config, ConfigError
from .models import build_model, has_features, is_frozen, set_frozen
from .optim import describe, group_names, make_optimizer, set_base_lr
from .runlog import RunLog, new_run_dir, save_checkpoint, write_config


class DeviceError(Exception):
    """The device asked for is not available; the message says what to use instead."""


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} asked for but CUDA is not available on this machine; "
                              "fix: use --device cpu (or --device auto)")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r} asked for but this machine has {torch.cuda.device_count()} "
                              "GPU(s); fix: use --device cuda:0")
        return dev
    return torch.device("cpu")


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{idx} {torch.cuda.get_device_name(idx)}"
    return "cpu"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


class Engine:
    """One training run. Build it with `Engine.create(...)` (raises setup errors before anything
    runs), then `start()` a thread, or call `run()` in the current thread."""

    RUNNING, PAUSED, TIMING = "running", "paused", "timing"

    def __init__(self, cfg: Config, *, device: torch.device, data, model: torch.nn.Module,
                 run_dir: Path, resume: dict | None = None, dist_info=None):
        self.cfg = cfg
        self.dist = dist_info     # engine.distributed.DistInfo in a data-parallel run, else None
        self.is_main = dist_info is None or dist_info.is_main
        self.device = device
        self.data = data
        self.model = model.to(device)
        self.run_dir = Path(run_dir)
        self.commands: queue.Queue = queue.Queue()
        self.events = E.EventBuffer()
        # Only rank 0 writes the run directory; other ranks log to nowhere.
        self.log = RunLog(self.run_dir, cfg.log.flush_seconds) if self.is_main else NullLog(self.run_dir)
        self.has_features = has_features(model)
        self.choices = tuple(cfg.optimizer.choices) or (cfg.optimizer.name,)

        # Training state: touched only by the engine thread once it runs.
        self.epoch = 0            # completed epochs
        self.step = 0             # training steps done, over the whole run
        self.batch_in_epoch = 0   # steps done in the current epoch
        self.samples_seen = 0
        self.mode = "train"
        self.state = self.PAUSED
        self.base_lr = cfg.optimizer.lr
        self.optimizer_name = cfg.optimizer.name
        self.freeze_override: bool | None = None  # set when the user froze/unfroze by hand
        self.readbacks = 0        # host syncs for metrics; the tests count them
        self.final_state = ""
        self.interactive = False  # a dashboard is attached: on_nan = "auto" pauses instead of stopping
        self._pending_state = ""
        self._stop_reason = ""
        self._stop_requested = False
        self._want_checkpoint_on_stop = True  # a Stop may ask for none (benchmarks)
        self._t0 = time.monotonic()
        self._time_offset = 0.0   # time_s carried over from before a resume
        self._thread: threading.Thread | None = None
        self._go: threading.Event | None = None
        self._last_checkpoint: Path | None = None

        if self.has_features and cfg.schedule.freeze_features_epochs > 0:
            set_frozen(self.model, True)
        self._setup_perf()
        self.optimizer = self._make_optimizer(self.optimizer_name)
        self._reset_sums()
        self._resumed = resume is not None
        if resume is not None:
            self._load_state(resume)

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def create(cls, cfg: Config, *, data_root: Path | None = None, log_dir: str | Path | None = None,
               device: str | None = None, run_dir: Path | None = None, resume: dict | None = None) -> "Engine":
        """Resolve the device, load data and weights, make the run directory. Raises ConfigError,
        DeviceError, engine.data.DataError, WeightsError or RunDirError with a one-line message."""
        from . import distributed
        from .data import build_data, default_data_root

        info = distributed.from_env()
        if info is None:
            dev = resolve_device(device or cfg.run.device)
        else:
            resolve_device(device or cfg.run.device)  # same errors as a 1-process run
            dev = distributed.device_for(info, device or cfg.run.device)
            check_distributed(cfg, info)
            distributed.init(info, dev.type)
        if resume is not None and resume.get("world_size", 1) != (info.world if info else 1):
            raise CheckpointError(f"{cfg.source}: the checkpoint was saved by {resume.get('world_size', 1)} "
                                  f"process(es); fix: resume with --nproc {resume.get('world_size', 1)}")
        seed_everything(cfg.run.seed)
        data = build_data(cfg, data_root or default_data_root(None), dev,
                          rank=info.rank if info else 0, world=info.world if info else 1)
        try:
            model = build_model(cfg.model, data.in_channels, data.image_size, data.num_classes)
            names = group_names(model)
            for k in cfg.optimizer.group_lr:
                if k not in names:
                    raise ConfigError(f"{cfg.source}: optimizer.group_lr.{k}: the model has no module '{k}'; "
                                      f"fix: use one of {', '.join(names)}")
            if info is None or info.is_main:
                if run_dir is None:
                    run_dir = new_run_dir(log_dir or cfg.log.dir, cfg.run.name)
                if resume is None:
                    write_config(run_dir, cfg.to_dict())
            if info is not None:  # every rank learns rank 0's run directory
                run_dir = Path(distributed.broadcast_object(str(run_dir), info))
        except BaseException:
            data.close()
            raise
        return cls(cfg, device=dev, data=data, model=model, run_dir=run_dir, resume=resume, dist_info=info)

    @classmethod
    def create_in_thread(cls, cfg: Config, **kw) -> "Engine":
        """Engine.create, run inside the thread that will then train (start() lets it go).

        Why: PyTorch's CPU kernels use an OpenMP thread team per calling thread. If the main
        thread builds the data and model, its team stays alive next to the engine thread's, the
        process has more OpenMP threads than a small machine has cores, and libgomp then stops
        spin-waiting between parallel regions: every op pays a wake-up. Doing all torch work in
        one thread keeps one team. Setup errors are raised here, in the caller's thread."""
        box: dict = {}
        ready, go = threading.Event(), threading.Event()

        def body():
            try:
                box["engine"] = cls.create(cfg, **kw)
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc
                ready.set()
                return
            ready.set()
            go.wait()
            box["engine"].run()

        thread = threading.Thread(target=body, name="deeptui-engine", daemon=True)
        thread.start()
        ready.wait()
        if "error" in box:
            thread.join()
            raise box["error"]
        engine = box["engine"]
        engine._thread, engine._go = thread, go
        return engine

    # ---- the public, thread-safe surface ------------------------------------------------

    def send(self, command: C.Command) -> int:
        self.commands.put(command)
        return command.id

    def start(self) -> threading.Thread:
        if self._go is not None:  # made by create_in_thread: its thread is waiting to train
            self._go.set()
            return self._thread
        self._thread = threading.Thread(target=self.run, name="deeptui-engine", daemon=True)
        self._thread.start()
        return self._thread

    def shutdown(self, reason: str = "quit", timeout: float = 30.0) -> bool:
        """Ask the run to stop at the next step boundary and wait; True when the thread ended."""
        self.send(C.Stop(reason=reason))
        if self._go is not None:
            self._go.set()  # never started: it runs, sees the Stop first, and ends "stopped"
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def alive(self) -> bool:
        started = self._go is None or self._go.is_set()
        return self._thread is not None and self._thread.is_alive() and started

    @property
    def epoch_now(self) -> int:
        """The 1-based epoch that events and rows are labelled with; after the last epoch has
        ended (final evaluation, checkpoint, Finished) it stays the last one, not epochs + 1."""
        return min(self.epoch + 1, self.cfg.run.epochs)

    def wait_finished(self, timeout: float) -> bool:
        """Wait up to `timeout` for the run's thread to end; True when it has (as RemoteSession's)."""
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            time.sleep(timeout)
        return not self.alive

    # ---- the run ------------------------------------------------------------------------

    def now(self) -> float:
        return self._time_offset + time.monotonic() - self._t0

    def emit(self, event: E.Event) -> None:
        self.events.append(event)

    def _mark(self, event: str, detail: str = "") -> None:
        self.log.event(round(self.now(), 3), self.epoch_now, self.step, event, detail)

    def run(self) -> str:
        """Train until done, stopped or failed; returns the final state. Never raises."""
        cfg = self.cfg
        try:
            self.emit(E.RunStarted(self.now(), self.epoch_now, self.step, preset=cfg.run.name,
                                   run_dir=str(self.run_dir), device=device_label(self.device),
                                   model=cfg.model.name,
                                   parameters=sum(p.numel() for p in self.model.parameters()),
                                   epochs=cfg.run.epochs, steps_per_epoch=len(self.data.train),
                                   max_steps=cfg.run.max_steps, has_features=self.has_features,
                                   optimizer_choices=self.choices, resumed=self._resumed))
            self._mark("resume" if self._resumed else "start",
                       f"preset={cfg.run.name} device={device_label(self.device)} "
                       f"optimizer={self.optimizer_name} lr={self.base_lr:g} frozen={self._frozen_text()}")
            self._set_state(self.RUNNING)
            self._train()
            state = "stopped" if self._stop_requested else "finished"
            reason = self._stop_reason
        except Exception as exc:  # any failure becomes an event; the logs are kept
            state, reason = "failed", self._report_error(exc)
        self._finish(state, reason)
        return state

    def _finish(self, state: str, reason: str) -> None:
        self.final_state = state
        try:
            # The final model is kept too, so a finished run can be evaluated or extended.
            if state == "finished" or (state == "stopped" and self._want_checkpoint_on_stop):
                self._save_checkpoint()
        except Exception as exc:
            self._report_error(exc)
        with contextlib.suppress(Exception):
            self._mark(state, reason)
        self.state = state
        try:
            self.log.close()
        except OSError as exc:
            self.emit(E.RunError(self.now(), self.epoch_now, self.step,
                                 message=f"could not write the logs: {exc}",
                                 fix=f"free space or check permissions in {self.run_dir}"))
            state = "failed"
        with contextlib.suppress(Exception):
            self.data.close()
        if self.dist is not None:
            from .distributed import close
            with contextlib.suppress(Exception):
                close()
        self.emit(E.StateChanged(self.now(), self.epoch_now, self.step, state=state, reason=reason,
                                 **self._state_fields()))
        self.emit(E.Finished(self.now(), self.epoch_now, self.step, state=state,
                             run_dir=str(self.run_dir), reason=reason))

    def _report_error(self, exc: Exception) -> str:
        message, fix = f"{type(exc).__name__}: {exc}".strip(), ""
        if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
            message = "CUDA out of memory"
            fix = f"use a smaller batch, e.g. --set data.batch_size={max(1, self.cfg.data.batch_size // 2)}"
        elif isinstance(exc, OSError):
            fix = "check the file named above, its permissions and the free disk space"
        elif isinstance(exc, FloatingPointError):
            message, fix = str(exc).split("; fix: ")[0], str(exc).partition("; fix: ")[2]
        elif self.dist is not None and isinstance(exc, (RuntimeError, ConnectionError)):
            message = f"rank {self.dist.rank}: lost contact with the other ranks ({message[:160]})"
            fix = "a worker process died or was killed; see the launcher's message for which rank"
        elif type(exc).__name__ == "DataError":
            message, fix = str(exc), ""
        message = message.splitlines()[0][:300] if message else type(exc).__name__
        self.emit(E.RunError(self.now(), self.epoch_now, self.step, message=message, fix=fix))
        with contextlib.suppress(Exception):
            self._mark("error", message + (f"; fix: {fix}" if fix else ""))
        return message

    def _train(self) -> None:
        cfg = self.cfg
        interval = cfg.log.interval
        train = self.data.train
        while self.epoch < cfg.run.epochs and not self._stop_requested:
            self._apply_schedule()
            train.set_epoch(self.epoch)
            skip = self.batch_in_epoch  # after a resume mid-epoch: the same order, minus what was done
            for i, (x, y) in enumerate(train):
                if i < skip:
                    continue
                self._between_steps()
                if self._stop_requested:
                    return
                self._train_step(x, y)
                self.step += 1
                self.batch_in_epoch += 1
                if self.step % interval == 0:
                    self._readback()
                if cfg.run.max_steps and self.step >= cfg.run.max_steps:
                    self._readback()
                    self._mark("max_steps", f"reached {cfg.run.max_steps} steps")
                    self._evaluate()
                    return
            self._readback()
            self.epoch += 1
            self.batch_in_epoch = 0
            self._evaluate()
            self.log.flush()
            every = cfg.log.checkpoint_every
            if every and self.epoch % every == 0:
                self._save_checkpoint()

    # ---- one step, without host syncs ---------------------------------------------------

    def _make_optimizer(self, name: str) -> torch.optim.Optimizer:
        return make_optimizer(name, self.model, self.cfg.optimizer, self.base_lr, self.device.type)

    def _setup_perf(self) -> None:
        """[perf]: cudnn autotuning, channels_last, autocast dtype, torch.compile variants."""
        perf = self.cfg.perf
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = perf.cudnn_benchmark
        self._memory_format = torch.channels_last if perf.channels_last else torch.contiguous_format
        if perf.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # Mixed precision only where it helps (CUDA); CPU runs keep fp32 whatever the preset says.
        self._amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(perf.amp) \
            if self.device.type == "cuda" else None
        self._scaler = torch.amp.GradScaler("cuda") if self._amp_dtype == torch.float16 else None
        # torch.compile specialises on requires_grad, so freezing needs its own compiled variant:
        # one per freeze state, compiled on first use (the dashboard shows "compiling").
        self._compiled: dict[bool, torch.nn.Module] = {}

    def _forward_module(self) -> torch.nn.Module:
        """The module the step calls: the model, wrapped in DistributedDataParallel in a
        data-parallel run, compiled with [perf] compile. DDP registers gradient hooks only for
        parameters that require grad when it is built, so (as for compile) each freeze state
        gets its own wrapper, built when first needed, at the same step on every rank."""
        if not self.cfg.perf.compile and self.dist is None:
            return self.model
        key = self._frozen_bool()
        if key not in self._compiled:
            module = self.model
            if self.dist is not None:
                from torch.nn.parallel import DistributedDataParallel as DDP
                module = DDP(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.cfg.perf.compile:
                previous = self.state
                self._set_state("compiling", f"torch.compile for features {'frozen' if key else 'trainable'}")
                module = torch.compile(module)
                self._pending_state = previous
            self._compiled[key] = module
        return self._compiled[key]

    def _autocast(self):
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._amp_dtype)

    def _reset_sums(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._correct = torch.zeros((), device=self.device, dtype=torch.long)
        self._interval_samples = 0
        self._interval_start = time.monotonic()

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        opt = self.optimizer
        model = self._forward_module()
        if self._memory_format is torch.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.optimizer_name == "lbfgs":
            out_box = []

            def closure():
                opt.zero_grad(set_to_none=True)
                out = model(x)
                loss = F.cross_entropy(out, y)
                loss.backward()
                out_box[:] = [out, loss]
                return loss

            opt.step(closure)
            out, loss = out_box
        else:
            with self._autocast():
                out = model(x)
                loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            if self._scaler is not None:
                self._scaler.scale(loss).backward()
                self._scaler.step(opt)
                self._scaler.update()
            else:
                loss.backward()
                opt.step()
        if self._pending_state:  # the first step of a compiled variant is done: compiling is over
            self._set_state(self._pending_state, "compiled")
            self._pending_state = ""
        n = y.shape[0]
        # Running sums stay on the device; read back once per logging interval.
        self._loss_sum += loss.detach() * n
        self._correct += (out.detach().argmax(1) == y).sum()
        self._interval_samples += n
        self.samples_seen += n

    def _readback(self) -> None:
        """Turn the interval's device sums into a logged row: the one host sync per interval."""
        n = self._interval_samples
        if n == 0:
            return
        loss_sum, correct = torch.stack([self._loss_sum, self._correct.to(self._loss_sum.dtype)]).tolist()
        if self.dist is not None:  # one collective per interval, never per step
            from .distributed import all_reduce_sum
            loss_sum, correct, n = all_reduce_sum([loss_sum, correct, float(n)], self.device)
        self.readbacks += 1
        elapsed = max(time.monotonic() - self._interval_start, 1e-9)
        loss, acc = loss_sum / n, correct / n
        sps = n / elapsed  # global samples/s in a data-parallel run
        seen = self.samples_seen * (self.dist.world if self.dist else 1)
        gpu_mb = torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else 0.0
        self._reset_sums()
        t = round(self.now(), 3)
        self.log.metric(time_s=t, epoch=self.epoch_now, step=self.step, split="train", loss=loss,
                        accuracy=acc, lr=self.base_lr, optimizer=self.optimizer_name,
                        frozen=self._frozen_bool(), mode=self.mode, samples_per_s=round(sps, 1))
        self.emit(E.StepMetrics(t, self.epoch_now, self.step, loss=loss, accuracy=acc, lr=self.base_lr,
                                optimizer=self.optimizer_name, frozen=self._frozen_bool(), mode=self.mode,
                                samples_per_s=sps, samples_seen=seen, gpu_memory_mb=gpu_mb))
        if not math.isfinite(loss):
            self._on_nonfinite(loss)

    def _on_nonfinite(self, loss: float) -> None:
        policy = self.cfg.run.on_nan
        if policy == "auto":
            policy = "pause" if self.interactive else "stop"
        msg = f"training loss is {loss} at step {self.step}"
        self._mark("nonfinite_loss", f"{msg}; on_nan={policy}")
        if policy == "stop":
            raise FloatingPointError(f"{msg}; fix: lower the learning rate (e.g. --set optimizer.lr="
                                     f"{self.base_lr / 10:g}) or set run.on_nan = \"pause\"")
        self.emit(E.Warning(self.now(), self.epoch_now, self.step,
                            message=f"{msg}: " + ("paused; resume, restore the last checkpoint or halve the lr"
                                                  if policy == "pause" else "continuing (run.on_nan = continue)")))
        if policy == "pause":
            self._set_state(self.PAUSED, "non-finite loss")

    @torch.no_grad()
    def _evaluate(self) -> None:
        """Test loss and error in eval mode; the training mode is restored after. In a
        data-parallel run rank 0 evaluates (the weights are the same on every rank)."""
        if not self.is_main:
            return
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        n = 0
        try:
            for x, y in self.data.test:
                with self._autocast():
                    out = self.model(x)
                loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
                correct += (out.argmax(1) == y).sum()
                n += y.shape[0]
        finally:
            self.model.train(was_training)
        if n == 0:
            return
        loss_sum, correct = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()
        loss, acc = loss_sum / n, correct / n
        t = round(self.now(), 3)
        epoch = self.epoch + (1 if self.batch_in_epoch else 0)  # mid-epoch: the epoch under way
        self.log.metric(time_s=t, epoch=epoch, step=self.step, split="test", loss=loss, accuracy=acc,
                        lr=self.base_lr, optimizer=self.optimizer_name, frozen=self._frozen_bool(),
                        mode="eval", samples_per_s="")
        self.emit(E.EpochEnd(t, epoch, self.step, test_loss=loss, test_accuracy=acc,
                             test_error_pct=100.0 * (1 - acc)))
        self.log.flush()

    # ---- schedule and commands ----------------------------------------------------------

    def _apply_schedule(self) -> None:
        """Features frozen for the first N epochs, unless the user has overridden it."""
        n = self.cfg.schedule.freeze_features_epochs
        if not self.has_features or n == 0 or self.freeze_override is not None:
            return
        want = self.epoch < n
        if want != self._frozen_bool():
            set_frozen(self.model, want)
            action = "freeze" if want else "unfreeze"
            detail = f"features {'frozen' if want else 'trainable'} at epoch {self.epoch_now} (schedule: " \
                     f"frozen for the first {n} epochs)"
            self._mark(f"schedule_{action}", detail)
            self.emit(E.ScheduleAction(self.now(), self.epoch_now, self.step, action=action, detail=detail))
            self._emit_state()

    def _between_steps(self) -> None:
        """Apply every queued command; while paused, wait for commands here."""
        if self.dist is not None:
            return self._between_steps_distributed()
        while True:
            try:
                block = self.state == self.PAUSED and not self._stop_requested
                cmd = self.commands.get(timeout=0.1) if block else self.commands.get_nowait()
            except queue.Empty:
                if self.state == self.PAUSED and not self._stop_requested:
                    self.log.flush_if_due()  # rows written while paused reach the disk too
                    continue
                return
            self._handle(cmd)

    def _between_steps_distributed(self) -> None:
        """Rank 0 gathers the commands and broadcasts them; every rank applies the same list at
        the same step. While paused, the ranks loop here together (a broadcast every 0.1 s)."""
        from .distributed import broadcast_object

        while True:
            batch = []
            if self.is_main:
                paused = self.state == self.PAUSED and not self._stop_requested
                with contextlib.suppress(queue.Empty):
                    batch.append(self.commands.get(timeout=0.1) if paused else self.commands.get_nowait())
                    while True:
                        batch.append(self.commands.get_nowait())
            for cmd in broadcast_object(batch, self.dist):  # the dataclasses travel pickled
                self._handle(cmd)
            if not (self.state == self.PAUSED and not self._stop_requested):
                return

    def _handle(self, cmd: C.Command) -> None:
        name = type(cmd).__name__
        handler = getattr(self, f"_cmd_{name}", None)
        try:
            result = handler(cmd) if handler else (False, f"unknown command {name}")
        except Exception as exc:  # a command that fails is rejected; the run goes on
            result = (False, f"{type(exc).__name__}: {exc}")
        ok, text = result
        if ok:
            self._mark(f"applied:{name}", text)
            self.emit(E.CommandApplied(self.now(), self.epoch_now, self.step, command_id=cmd.id,
                                       command=name, detail=text))
        else:
            self._mark(f"rejected:{name}", text)
            self.emit(E.CommandRejected(self.now(), self.epoch_now, self.step, command_id=cmd.id,
                                        command=name, reason=text))

    def _cmd_Pause(self, cmd):
        if self.state == self.PAUSED:
            return False, "already paused"
        self._set_state(self.PAUSED, "paused by user")
        self.log.flush()
        return True, f"paused at step {self.step}"

    def _cmd_Resume(self, cmd):
        if self.state != self.PAUSED:
            return False, "not paused"
        self._set_state(self.RUNNING, "resumed by user")
        return True, f"resumed at step {self.step}"

    def _cmd_Stop(self, cmd):
        self._stop_requested = True
        self._stop_reason = cmd.reason
        self._want_checkpoint_on_stop = cmd.save_checkpoint
        return True, f"stopping at step {self.step}: {cmd.reason}"

    def _cmd_SwitchOptimizer(self, cmd):
        name = cmd.name or self.choices[(self.choices.index(self.optimizer_name) + 1) % len(self.choices)
                                        if self.optimizer_name in self.choices else 0]
        if name not in OPTIMIZERS:
            return False, f"unknown optimizer {name!r}"
        if name == "lbfgs" and self.dist is not None:
            return False, "LBFGS is not supported in a data-parallel run (its line search is per rank)"
        if name in ("momentum", "nesterov") and self.cfg.optimizer.momentum == 0:
            return False, f"{name} needs optimizer.momentum > 0 (the preset sets 0)"
        old = self.optimizer_name
        self.optimizer = self._make_optimizer(name)
        self.optimizer_name = name
        self._emit_state()
        note = " (LBFGS takes one parameter group: per-group learning rates are not applied)" \
            if name == "lbfgs" and self.cfg.optimizer.group_lr else ""
        return True, f"{old} -> {name}; {self._describe()}; state starts fresh{note}"

    def _cmd_SetFrozen(self, cmd):
        if not self.has_features:
            return False, f"model '{self.cfg.model.name}' has no pretrained features to freeze"
        if cmd.frozen == self._frozen_bool():
            self.freeze_override = cmd.frozen
            return False, f"features already {'frozen' if cmd.frozen else 'trainable'}"
        n = set_frozen(self.model, cmd.frozen)
        self.freeze_override = cmd.frozen
        self._emit_state()
        return True, f"features {'frozen' if cmd.frozen else 'trainable'} ({n} parameters); schedule overridden"

    def _cmd_SetMode(self, cmd):
        if cmd.mode not in ("train", "eval"):
            return False, f"mode must be train or eval, not {cmd.mode!r}"
        if cmd.mode == self.mode:
            return False, f"already in {cmd.mode} mode"
        self.mode = cmd.mode
        self.model.train(cmd.mode == "train")
        self._emit_state()
        return True, f"training steps now run in {cmd.mode} mode"

    def _cmd_SetLearningRate(self, cmd):
        if not (cmd.lr > 0 and math.isfinite(cmd.lr)):
            return False, f"learning rate must be a positive number, not {cmd.lr}"
        old, self.base_lr = self.base_lr, float(cmd.lr)
        set_base_lr(self.optimizer, self.base_lr)
        self._emit_state()
        return True, f"lr {old:.3g} -> {self.base_lr:.3g}"

    def _cmd_ScaleLearningRate(self, cmd):
        if not (cmd.factor > 0 and math.isfinite(cmd.factor)):
            return False, f"factor must be a positive number, not {cmd.factor}"
        return self._cmd_SetLearningRate(C.SetLearningRate(lr=self.base_lr * cmd.factor, id=cmd.id))

    def _cmd_EvaluateNow(self, cmd):
        self._evaluate()
        return True, f"evaluated at step {self.step}"

    def _cmd_SaveCheckpoint(self, cmd):
        path = self._save_checkpoint()
        return True, f"saved {path}"

    def _cmd_FlushLogs(self, cmd):
        self.log.flush()
        return True, f"flushed {self.log.metrics_path} and {self.log.events_path}"

    def _cmd_RunTiming(self, cmd):
        from .timing import TimingAborted, measure

        if not self.is_main:
            return True, "timing runs on rank 0"
        previous = self.state
        self._set_state(self.TIMING, "batch-vs-loop timing")
        try:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            report = measure(self.device, repeats=cmd.repeats, sizes=tuple(cmd.sizes),
                             should_stop=self._stop_pending)
        except TimingAborted:
            return False, "timing aborted: the run is stopping"
        finally:
            self._set_state(previous, "timing done")
        self._interval_start = time.monotonic()  # the timing's time is not training time
        self.emit(E.TimingResult(self.now(), self.epoch_now, self.step, device=report.device,
                                 batch_ms=report.batch_s * 1e3, loop_ms=report.loop_s * 1e3,
                                 ratio=report.ratio, batch_gflops=report.batch_gflops,
                                 loop_gflops=report.loop_gflops))
        return True, report.line()

    def _cmd_RestoreCheckpoint(self, cmd):
        path = self._last_checkpoint or (self.run_dir / "checkpoint.pt")
        if not path.exists():
            return False, "no checkpoint saved yet in this run"
        state = load_checkpoint(path, self.cfg)
        self._load_state(state)
        self._reset_sums()
        self._emit_state()
        return True, f"restored {path} (step {self.step})"

    # ---- state helpers ------------------------------------------------------------------

    def _stop_pending(self) -> bool:
        """A Stop waiting in the queue (peeked, not taken): lets a long timing end early."""
        with self.commands.mutex:
            return any(isinstance(c, C.Stop) for c in self.commands.queue)

    def _frozen_bool(self) -> bool:
        return is_frozen(self.model)

    def _frozen_text(self) -> str:
        return ("frozen" if self._frozen_bool() else "trainable") if self.has_features else "n/a"

    def _describe(self) -> str:
        return describe(self.optimizer_name, self.cfg.optimizer, self.optimizer)

    def _state_fields(self) -> dict:
        return dict(optimizer=self.optimizer_name, optimizer_params=self._describe(), lr=self.base_lr,
                    frozen=self._frozen_bool(), mode=self.mode)

    def _set_state(self, state: str, reason: str = "") -> None:
        if state == self.RUNNING and self.state != self.RUNNING:
            self._interval_start = time.monotonic()  # pauses do not count against samples/s
        self.state = state
        self.emit(E.StateChanged(self.now(), self.epoch_now, self.step, state=state, reason=reason,
                                 **self._state_fields()))

    def _emit_state(self) -> None:
        self._set_state(self.state)

    # ---- checkpoints --------------------------------------------------------------------

    def _save_checkpoint(self) -> Path:
        path = self.run_dir / "checkpoint.pt"
        if not self.is_main:
            return path
        payload = {
            "format": 1,
            "world_size": self.dist.world if self.dist else 1,
            "preset": self.cfg.run.name,
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer_name": self.optimizer_name,
            "optimizer": self.optimizer.state_dict(),
            "base_lr": self.base_lr,
            "frozen": self._frozen_bool(),
            "freeze_override": -1 if self.freeze_override is None else int(self.freeze_override),
            "mode": self.mode,
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "samples_seen": self.samples_seen,
            "time_s": self.now(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        save_checkpoint(path, payload)
        self._last_checkpoint = path
        self._mark("checkpoint", str(path))
        self.emit(E.CheckpointSaved(self.now(), self.epoch_now, self.step, path=str(path)))
        return path

    def _load_state(self, st: dict) -> None:
        self.model.load_state_dict(st["model"])
        if self.has_features:
            set_frozen(self.model, bool(st["frozen"]))
        self.freeze_override = None if st["freeze_override"] < 0 else bool(st["freeze_override"])
        self.base_lr = float(st["base_lr"])
        self.optimizer_name = st["optimizer_name"]
        self.optimizer = self._make_optimizer(self.optimizer_name)
        self.optimizer.load_state_dict(st["optimizer"])
        self.mode = st["mode"]
        self.model.train(self.mode == "train")
        self.epoch, self.step = int(st["epoch"]), int(st["step"])
        self.batch_in_epoch, self.samples_seen = int(st["batch_in_epoch"]), int(st["samples_seen"])
        self._time_offset = float(st["time_s"])
        self._t0 = time.monotonic()
        torch.set_rng_state(st["torch_rng"])
        if st["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["cuda_rng"])


class NullLog:
    """The run log of a rank other than 0: accepts rows, writes nothing."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.csv"
        self.events_path = self.run_dir / "events.csv"

    def metric(self, **kw) -> None:
        pass

    def event(self, *a) -> None:
        pass

    def flush(self) -> None:
        pass

    def flush_if_due(self) -> None:
        pass

    def close(self) -> None:
        pass


def check_distributed(cfg: Config, info) -> None:
    if cfg.data.batch_size % info.world:
        raise ConfigError(f"{cfg.source}: data.batch_size = {cfg.data.batch_size} is the global batch and "
                          f"must divide evenly over {info.world} processes; fix: use a multiple of {info.world}")
    if cfg.optimizer.name == "lbfgs":
        raise ConfigError(f"{cfg.source}: optimizer.name = 'lbfgs' is not supported in a data-parallel run; "
                          "fix: pick another optimizer")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and the fix."""


def load_checkpoint(path: Path, cfg: Config | None = None) -> dict:
    """torch.load with weights_only=True: nothing read from disk runs code."""
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found; fix: pass a run directory that has "
                              "checkpoint.pt") from None
    except Exception as e:
        raise CheckpointError(f"{path}: checkpoint is corrupt or not a deeptui checkpoint "
                              f"({type(e).__name__}); fix: use another run's checkpoint") from None
    if not isinstance(st, dict) or st.get("format") != 1:
        raise CheckpointError(f"{path}: not a deeptui checkpoint; fix: pass a run directory made by deeptui")
    if cfg is not None and st.get("preset") != cfg.run.name:
        raise CheckpointError(f"{path}: checkpoint is from preset '{st.get('preset')}', not "
                              f"'{cfg.run.name}'; fix: resume with the run's own preset")
    return st

