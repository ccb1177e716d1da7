"""Checkpoints: collected from the parts' state_dict(), in a versioned format, written
atomically, read back with torch.load(weights_only=True) so that nothing read runs code; and the
run directory's policy for them (CheckpointFiles): last.pt, best.pt, the last N epochs, and a
non-finite model never written over a finite one."""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from . import events as E
from .errors import CheckpointError
from .registry import NAMES
from .runlog import disk_full, disk_full_message
from .surface import Run

FORMAT = 2
LAST, BEST, NONFINITE = "last.pt", "best.pt", "nonfinite.pt"
LEGACY = "checkpoint.pt"  # the one file of deeptui 0.1; still read by --resume and restore


def collect(run: Run) -> dict:
    """The run as one dict of plain data and tensors: what identifies it, then each part's own
    state_dict() (model, optimizer, counters and clocks, random numbers)."""
    return {
        "format": FORMAT,
        "world_size": run.dist.world if run.dist else 1,
        "preset": run.cfg.run.name,
        "config": run.cfg.to_dict(),
        "finite": run.trainer.finite(),
        **run.state_dict(),
    }


def save_now(run: Run, epoch: int | None = None, best: bool = False) -> list[Path]:
    """last.pt (and epoch-N.pt at an epoch's end, best.pt when `best`) by the policy of
    CheckpointFiles: a non-finite model goes to nonfinite.pt only."""
    if not run.is_main:
        return []
    payload = collect(run)
    files = run.checkpoints.write_best(payload) if best else run.checkpoints.write(payload, epoch)
    for kind, path in files:
        run.report.emit(E.CheckpointSaved, path=str(path), kind=kind)
    if not payload["finite"]:
        kept = run.checkpoints.find("last")
        good = f"the last good checkpoint ({kept.name})" if kept else "a good checkpoint"
        run.report.emit(
            E.Warning,
            message=f"the model is not finite: not saved over {good}; kept for inspection in {files[0][1].name}",
        )
    return [path for _, path in files]


# What a resume cannot change: the network (its weights would not fit) and what an epoch is.
FIXED_ON_RESUME = (
    "model.",
    "data.dataset",
    "data.batch_size",
    "data.train_size",
    "data.test_size",
    "data.normalize",
    "data.shuffle",
    "run.seed",
    "run.kind",
)


def _flat(d: dict) -> dict:
    return {f"{s}.{k}": v for s, table in d.items() if isinstance(table, dict) for k, v in table.items()}


def resume_changes(payload: dict, cfg) -> list[tuple[str, object, object]]:
    """The keys a resume changes, (key, saved, now); one it cannot honour raises CheckpointError."""
    saved, now = _flat(payload.get("config") or {}), _flat(cfg.to_dict())
    changes = [
        (k, saved.get(k), now.get(k))
        for k in sorted(set(saved) | set(now))
        if k not in ("run.name", "log.dir") and saved.get(k) != now.get(k) and k in saved
    ]
    for key, old, new in changes:
        if key.startswith(FIXED_ON_RESUME):
            raise CheckpointError(
                f"{cfg.source}: {key} was {old!r} in the checkpoint, {new!r} now: a resume goes on with "
                f"the same network and data",
                fix=f"resume without changing {key} (or start a new run)",
            )
    return changes


def save(path: Path, payload: dict) -> Path:
    """torch.save to a temporary file in the same directory, then rename over `path` (a rename
    replaces a symlink itself, never the file it points to). A full disk is raised as ENOSPC
    naming the path: torch reports it as 'unexpected pos 128 vs 0'."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not disk_full(e):
            raise
        need = sum(t.numel() * t.element_size() for t in _tensors(payload))
        if isinstance(e, RuntimeError) and shutil.disk_usage(path.parent).free > need + 2**20:
            raise
        raise OSError(errno.ENOSPC, disk_full_message(path), str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def _from_format_1(st: dict) -> dict:
    """A checkpoint of deeptui 0.1's first format, in today's layout."""
    train = {
        k: st[k]
        for k in ("base_lr", "freeze_override", "mode", "epoch", "step", "batch_in_epoch", "samples_seen", "time_s")
    }
    return {
        **{k: st[k] for k in ("world_size", "preset", "config", "model", "optimizer", "frozen")},
        "format": FORMAT,
        "finite": True,
        "train": {**train, "optimizer": st["optimizer_name"]},
        "rng": {"torch": st["torch_rng"], "cuda": st["cuda_rng"][0] if len(st["cuda_rng"]) else None},
    }


def load(path: Path, cfg=None) -> dict:
    """A checkpoint read back without running code; with `cfg`, it must be that preset's."""
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found", fix=f"pass a run directory that has {LAST}") from None
    except Exception as e:
        raise CheckpointError(
            f"{path}: checkpoint is corrupt or not a deeptui checkpoint ({type(e).__name__})",
            fix="use another run's checkpoint",
        ) from None
    try:
        if isinstance(st, dict) and st.get("format") == 1:
            st = _from_format_1(st)
    except (KeyError, TypeError, IndexError):
        st = None
    if not isinstance(st, dict) or st.get("format") != FORMAT or not _well_formed(st):
        raise CheckpointError(
            f"{path}: not a deeptui checkpoint (parts missing or of the wrong type)",
            fix="pass a run directory made by deeptui",
        )
    if cfg is not None and st.get("preset") != cfg.run.name:
        raise CheckpointError(
            f"{path}: checkpoint is from preset '{st.get('preset')}', not '{cfg.run.name}'",
            fix="resume with the run's own preset",
        )
    return st


def _well_formed(st: dict) -> bool:
    """The parts restore() reads, with the types it needs (a checkpoint edited or cut short)."""
    train, rng = st.get("train"), st.get("rng")
    number = (int, float)
    return (
        isinstance(st.get("model"), dict)
        and all(isinstance(v, torch.Tensor) for v in st["model"].values())
        and isinstance(st.get("optimizer"), dict)
        and isinstance(st.get("config"), dict)
        and isinstance(train, dict)
        and (train.get("optimizer") in NAMES or (_watched(st) and isinstance(train.get("optimizer"), str)))
        and all(
            isinstance(train.get(k), number)
            for k in ("base_lr", "epoch", "step", "batch_in_epoch", "samples_seen", "time_s", "freeze_override")
        )
        and train.get("mode") in ("train", "eval")
        and isinstance(rng, dict)
        and isinstance(rng.get("torch"), torch.Tensor)
    )


def _watched(st: dict) -> bool:
    """A checkpoint of a watched loop (deeptui.watch): its optimizer may be one deeptui does not build."""
    run = st["config"].get("run")
    return isinstance(run, dict) and run.get("kind") == "watched"


def epoch_file(epoch: int) -> str:
    return f"epoch-{epoch:04d}.pt"


class CheckpointFiles:
    """The checkpoints of one run directory.

    last.pt is every save's; best.pt holds the best test accuracy so far; epoch-NNNN.pt the last
    `keep` epoch checkpoints. A model with a non-finite parameter or loss goes to nonfinite.pt
    (for inspection) and never over a finite one, so last.pt is always a model to go back to."""

    def __init__(self, run_dir: Path, keep: int = 3):
        self.run_dir, self.keep = Path(run_dir), keep

    def write(self, payload: dict, epoch: int | None = None) -> list[tuple[str, Path]]:
        """Save a collected payload by the policy; [(kind, path)] of what was written."""
        if not payload["finite"]:
            return [("nonfinite", save(self.run_dir / NONFINITE, payload))]
        written = [("last", save(self.run_dir / LAST, payload))]
        if epoch is not None and self.keep > 0:
            written.append(("epoch", save(self.run_dir / epoch_file(epoch), payload)))
            for old in self.epochs()[: -self.keep]:
                old.unlink(missing_ok=True)
        return written

    def write_best(self, payload: dict) -> list[tuple[str, Path]]:
        return [("best", save(self.run_dir / BEST, payload))] if payload["finite"] else []

    def epochs(self) -> list[Path]:
        """The epoch checkpoints, oldest first: by number (epoch-10000.pt sorts after epoch-9999.pt)."""
        found = [p for p in self.run_dir.glob("epoch-*.pt") if re.fullmatch(r"epoch-\d+\.pt", p.name)]
        return sorted(found, key=lambda p: (int(p.name[6:-3]), p.name))

    def find(self, which: str = "last") -> Path | None:
        """'last' (last.pt, else a deeptui 0.1 checkpoint.pt), 'best', or an epoch ('epoch 3',
        'epoch:3', '3'); None when there is no such file."""
        which = which.strip().lower()
        if which in ("", "last"):
            candidates = [self.run_dir / LAST, self.run_dir / LEGACY]
        elif which == "best":
            candidates = [self.run_dir / BEST]
        else:
            number = re.fullmatch(r"(?:epoch)?[ :=-]?(\d+)", which)
            if number is None:
                raise ValueError(f"no checkpoint called {which!r}; fix: last, best or epoch N")
            candidates = [self.run_dir / epoch_file(int(number.group(1)))]
        return next((p for p in candidates if p.is_file()), None)

    def for_resume(self) -> Path | None:
        """The newest finite checkpoint to continue from: last.pt; if it cannot be read, the
        newest epoch checkpoint, then best.pt, then a deeptui 0.1 checkpoint.pt. None when there
        is none; the first file's CheckpointError when none of them can be read."""
        errors = []
        for path in [self.run_dir / LAST, *reversed(self.epochs()), self.run_dir / BEST, self.run_dir / LEGACY]:
            if path.is_file():
                try:
                    load(path)
                except CheckpointError as e:
                    errors.append(e)
                    continue
                return path
        if errors:
            raise errors[0]
        return None
