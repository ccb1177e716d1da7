"""Checkpoints: collected from the parts' state_dict(), in a versioned format, written
atomically, read back with torch.load(weights_only=True) so that nothing read runs code."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import CheckpointError
from .models import set_frozen
from .optim import ensure_momentum_buffers

if TYPE_CHECKING:
    from .loop import Engine

FORMAT = 2
FILE_NAME = "checkpoint.pt"


def collect(engine: Engine) -> dict:
    """The run as one dict of plain data and tensors."""
    return {
        "format": FORMAT,
        "world_size": engine.dist.world if engine.dist else 1,
        "preset": engine.cfg.run.name,
        "config": engine.cfg.to_dict(),
        "model": engine.model.state_dict(),
        "optimizer": engine.optimizer.state_dict(),
        "train": {**engine.train.state_dict(), "time_s": engine.now()},
        "frozen": engine.frozen,
        # the run's own GPU only: a checkpoint must resume on a machine with fewer GPUs
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(engine.device) if engine.device.type == "cuda" else None,
        },
    }


def restore(engine: Engine, payload: dict) -> None:
    """Put a collected checkpoint back into the engine's parts."""
    engine.model.load_state_dict(payload["model"])
    if engine.has_features:
        set_frozen(engine.model, bool(payload["frozen"]), engine.freeze)
    engine.train.load_state_dict(payload["train"])
    engine.optimizer = engine.make_optimizer(engine.train.optimizer)
    engine.optimizer.load_state_dict(payload["optimizer"])
    ensure_momentum_buffers(engine.optimizer)  # a checkpoint of an older deeptui may lack some
    engine.model.train(engine.train.mode == "train")
    engine.restart_clock(engine.train.time_s)
    torch.set_rng_state(payload["rng"]["torch"])
    if payload["rng"]["cuda"] is not None and engine.device.type == "cuda":
        torch.cuda.set_rng_state(payload["rng"]["cuda"], engine.device)


def save(path: Path, payload: dict) -> Path:
    """torch.save to a temporary file in the same directory, then rename over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _from_format_1(st: dict) -> dict:
    """A checkpoint of deeptui 0.1's first format, in today's layout."""
    train = {
        k: st[k]
        for k in ("base_lr", "freeze_override", "mode", "epoch", "step", "batch_in_epoch", "samples_seen", "time_s")
    }
    return {
        **{k: st[k] for k in ("world_size", "preset", "config", "model", "optimizer", "frozen")},
        "format": FORMAT,
        "train": {**train, "optimizer": st["optimizer_name"]},
        "rng": {"torch": st["torch_rng"], "cuda": st["cuda_rng"][0] if len(st["cuda_rng"]) else None},
    }


def load(path: Path, cfg=None) -> dict:
    """A checkpoint read back without running code; with `cfg`, it must be that preset's."""
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found; fix: pass a run directory that has {FILE_NAME}") from None
    except Exception as e:
        raise CheckpointError(
            f"{path}: checkpoint is corrupt or not a deeptui checkpoint "
            f"({type(e).__name__}); fix: use another run's checkpoint"
        ) from None
    if isinstance(st, dict) and st.get("format") == 1:
        st = _from_format_1(st)
    if not isinstance(st, dict) or st.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a deeptui checkpoint; fix: pass a run directory made by deeptui")
    if cfg is not None and st.get("preset") != cfg.run.name:
        raise CheckpointError(
            f"{path}: checkpoint is from preset '{st.get('preset')}', not "
            f"'{cfg.run.name}'; fix: resume with the run's own preset"
        )
    return st
