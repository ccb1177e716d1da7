"""Building an Engine from a config: device, data, model, run directory, data-parallel setup.
Every setup error is raised here, before anything trains, as a one-line engine.errors.SetupError."""

from __future__ import annotations

import importlib
import random
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from . import checkpoint, datasets, distributed, factory, tensorboard
from . import commands as C
from .config import DATASETS, Config, default_data_root
from .device import resolve_device
from .errors import CheckpointError, ConfigError, RunDirError
from .loop import Engine
from .models import build_model, missing_modules
from .optim import group_names
from .runlog import (
    RunLock,
    cut_history_after,
    disk_full,
    disk_full_message,
    new_run_dir,
    remove_stale_temporaries,
    write_config,
)
from .thread import EngineThread


def build_engine(
    cfg: Config,
    *,
    data_root: Path | None = None,
    log_dir: str | Path | None = None,
    device: str | None = None,
    run_dir: Path | None = None,
    resume: dict | Path | None = None,
    started_at: float | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> Engine:
    """Resolve the device, load data and weights, make the run directory (rank 0). The run's
    clock reads 0 at `started_at` (time.monotonic() when the user launched it; default: now).
    `resume`: a checkpoint's payload, or a run directory (or .pt file) whose newest finite
    checkpoint the engine loads itself, in the same run directory; `say` tells which."""
    resumed_from = None
    if isinstance(resume, Path):
        resumed_from, resume = resume_checkpoint(resume, cfg)
        run_dir = run_dir or resumed_from.parent
    # torch.optim's first optimizer imports torch._dynamo (about 2 s on 2 cores): start that now,
    # beside the data and the model, rather than after them.
    if cfg.run.kind == "watched":  # deeptui.watch()'s run: its loop is a script's, not a preset's
        raise ConfigError(
            f"{cfg.source}: run.kind = 'watched': this run's training loop is a script's own (deeptui.watch)",
            fix="run the script again (deeptui run SCRIPT.py); deeptui show or attach open the run",
        )
    threading.Thread(target=importlib.import_module, args=("torch._dynamo",), daemon=True).start()
    info = distributed.from_env()
    dev = resolve_device(device or cfg.run.device)
    if info is not None:
        dev = distributed.device_for(info, device or cfg.run.device)
        check_distributed(cfg, info)
        distributed.init(info, dev.type, cfg.run.collective_timeout_s)
    check_precision(cfg, dev)
    saved_world = resume.get("world_size", 1) if resume is not None else None
    if saved_world is not None and saved_world != (info.world if info else 1):
        raise CheckpointError(
            f"{cfg.source}: the checkpoint was saved by {saved_world} process(es); "
            f"fix: resume with --nproc {saved_world}"
        )
    if cfg.log.tensorboard:
        tensorboard.require()  # before the data loads and the run directory is made
    seed_everything(cfg.run.seed)
    lock = None
    data = datasets.build(
        cfg, data_root or default_data_root(None), dev, rank=info.rank if info else 0, world=info.world if info else 1
    )
    try:
        if not cfg.model.factory and data.num_classes:  # a factory's model is counted once built
            check_fits(cfg, data, dev)
        model = make_model(cfg, data)
        names = group_names(model)
        for k in cfg.optimizer.group_lr:
            if k not in names:
                raise ConfigError(
                    f"{cfg.source}: optimizer.group_lr.{k}: the model has no module '{k}'; "
                    f"fix: use one of {', '.join(names)}"
                )
        changes = checkpoint.resume_changes(resume, cfg) if resume is not None else []  # refused: raises
        if info is None or info.is_main:
            if run_dir is None:
                run_dir = new_run_dir(log_dir or cfg.log.dir, cfg.run.name)
            lock = RunLock(run_dir)  # held until the run ends; a second run here stops at once
            remove_stale_temporaries(run_dir)
            if resume is None:
                write_config(run_dir, cfg.to_dict())
            else:
                train = resume["train"]
                cut_history_after(run_dir, int(train["step"]), float(train["time_s"]))
        if info is not None:  # every rank learns rank 0's run directory
            run_dir = Path(distributed.broadcast_object(str(run_dir), info))
        engine = Engine(
            cfg,
            device=dev,
            data=data,
            model=model,
            run_dir=run_dir,
            resume=resume,
            dist_info=info,
            lock=lock,
            resume_changes=changes,
            started_at=started_at,
        )
        if resumed_from is not None:
            say(f"resuming from {resumed_from} (step {engine.train.step})")
        return engine
    except BaseException as e:
        data.close()
        if lock is not None:
            lock.release()
        if isinstance(e, OSError) and disk_full(e):  # a full disk before the start, named as such
            raise RunDirError(disk_full_message(Path(run_dir or log_dir or cfg.log.dir))) from None
        raise


def resume_checkpoint(target: Path, cfg: Config) -> tuple[Path, dict]:
    """(the file, its payload) a --resume continues from: the .pt given, or the run directory's
    newest finite checkpoint (last.pt, then the epochs, then best.pt)."""
    path = checkpoint.CheckpointFiles(target).for_resume() if target.is_dir() else target
    if path is None or not path.is_file():
        raise CheckpointError(
            f"{path or target}: no checkpoint to resume from",
            fix="pass a run directory that has last.pt (saved with s, on quit, on signals, every log.checkpoint_every)",
        )
    return path, checkpoint.load(path, cfg)


def make_model(cfg: Config, data) -> torch.nn.Module:
    """The preset's model: built in, or model.factory's; one that is not deeptui's own, or that
    trains on data that is not, is tried on two samples first (engine.factory.probe)."""
    m, d = cfg.model, cfg.data
    if m.factory:
        model = factory.make_model(m, cfg.source)
    else:
        if not data.num_classes:
            raise ConfigError(
                f"{cfg.source}: model.name = '{m.name}' needs the number of classes, and the data's Datasets "
                "do not say (no classes or targets attribute)",
                fix="give the train Dataset a classes list",
            )
        model = build_model(m, data.in_channels, data.image_size, data.num_classes)
    missing = missing_modules(model, m.freeze)
    if missing:
        top = [n for n, _ in model.named_children()]
        raise ConfigError(
            f"{cfg.source}: model.freeze names {missing[0]!r}, which the model has no module for; "
            f"fix: name modules it has (top level: {', '.join(top[:12])}; dotted names reach inside)"
        )
    if m.factory or d.factory or d.dataset not in DATASETS:
        factory.probe(model, data, cfg)
    return model


def build_in_thread(cfg: Config, **kw) -> Engine:
    """build_engine, run inside the thread that will then train (engine.start() lets it go).

    Why: PyTorch's CPU kernels use an OpenMP thread team per calling thread. If the main thread
    builds the data and model, its team stays alive next to the engine thread's, the process has
    more OpenMP threads than a small machine has cores, and libgomp then stops spin-waiting
    between parallel regions: every op pays a wake-up. Doing all torch work in one thread keeps
    one team. Setup errors are raised here, in the caller's thread."""
    box: dict = {}
    ready, go, cancel = threading.Event(), threading.Event(), threading.Event()

    def body():
        try:
            box["engine"] = build_engine(cfg, **kw)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc
            ready.set()
            return
        ready.set()
        go.wait()
        if cancel.is_set():  # the caller was interrupted while this thread was building
            box["engine"].send(C.Stop(reason="interrupted while starting", save_checkpoint=False))
        box["engine"].run()

    thread = threading.Thread(target=body, name="deeptui-engine", daemon=True)
    thread.start()
    try:
        ready.wait()
    except BaseException:  # Ctrl+C or SIGTERM in the caller while torch works in the thread:
        cancel.set()  # never leave that thread half-way (the process would abort in C++, exit 134)
        go.set()
        while thread.is_alive():
            try:
                thread.join()
            except KeyboardInterrupt:
                continue
        raise
    if "error" in box:
        thread.join()
        raise box["error"]
    engine = box["engine"]
    engine.thread = EngineThread(thread, go)
    return engine


BYTES_PER_PARAMETER = 16  # fp32 weights, their gradients, and two optimizer moments (Adam)


def free_memory(device: torch.device) -> int | None:
    """Bytes the run could still allocate on its device; None when it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_fits(cfg: Config, data, device: torch.device) -> None:
    """Refuse a model that cannot fit before allocating it: counted on the meta device."""
    import dataclasses

    with torch.device("meta"):
        probe = build_model(
            dataclasses.replace(cfg.model, pretrained=False), data.in_channels, data.image_size, data.num_classes
        )
    params = sum(p.numel() for p in probe.parameters())
    need, free = params * BYTES_PER_PARAMETER, free_memory(device)
    if free is not None and need > free:
        raise ConfigError(
            f"{cfg.source}: the model has {params:,} parameters, about {need / 2**30:.1f} GiB with its gradients "
            f"and optimizer state, but {device.type} has {free / 2**30:.1f} GiB free",
            fix="fewer model.blocks, model.channels or model.hidden",
        )


def check_precision(cfg: Config, device: torch.device) -> None:
    """perf.amp = "bf16" on a GPU without bf16 (before Ampere, compute capability 8.0) is refused
    before the run: its first step would fail, or run emulated and slow."""
    if cfg.perf.amp != "bf16" or device.type != "cuda" or torch.version.hip:
        return
    capability = torch.cuda.get_device_capability(device)
    if capability < (8, 0):
        raise ConfigError(
            f"{cfg.source}: perf.amp = 'bf16': {device} has no bf16 support (compute capability "
            f"{capability[0]}.{capability[1]}; bf16 needs 8.0, Ampere or newer); fix: --set perf.amp='fp16' "
            "(with a gradient scaler) or 'off'"
        )


def check_distributed(cfg: Config, info) -> None:
    """Settings a data-parallel run cannot take, refused before it starts."""
    if cfg.data.batch_size % info.world:
        raise ConfigError(
            f"{cfg.source}: data.batch_size = {cfg.data.batch_size} is the global batch and "
            f"must divide evenly over {info.world} processes",
            fix=f"use a multiple of {info.world}",
        )
    if cfg.optimizer.name == "lbfgs":
        raise ConfigError(
            f"{cfg.source}: optimizer.name = 'lbfgs' is not supported in a data-parallel run; "
            "fix: pick another optimizer"
        )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
