"""A run directory read back as the events that wrote it: metrics.csv and events.csv turned into
StepMetrics, EpochEnd, commands, schedule actions, checkpoints, errors and the end of the run.

What a client of a very long run gets for the events the bounded buffer dropped (the control
server), and what `deeptui show` draws for a run that has ended (HistorySession, a Session that
is never alive). No torch here: reading a finished run must be quick.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

from . import commands as C
from . import events as E
from .config import Config, load_config
from .errors import RunDirError

ENDS = ("finished", "stopped", "failed")


CSV_FIELD_LIMIT = 16 * 2**20  # an event's detail may be long; csv's default stops at 128 KiB


def _rows(path: Path) -> list[dict]:
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.DictReader(f)
            try:
                return list(reader)
            except csv.Error as e:
                raise RunDirError(
                    f"{path}: line {reader.line_num} cannot be read as CSV ({e}); fix: delete or shorten that line"
                ) from None
    except OSError:
        return []


def metrics_events(run_dir: Path, before_step: int | None = None, batch_size: int = 0) -> list[E.Event]:
    """metrics.csv rows (before `before_step`) as StepMetrics / EpochEnd; samples seen is counted
    as steps x batch_size (the CSV does not hold it)."""
    out: list[E.Event] = []
    for r in _rows(Path(run_dir) / "metrics.csv"):
        try:
            t, epoch, step = float(r["time_s"]), int(r["epoch"]), int(r["step"])
            if before_step is not None and step >= before_step:
                break
            loss, acc = float(r["loss"]), float(r["accuracy"])
            if r["split"] == "test":
                out.append(
                    E.EpochEnd(t, epoch, step, test_loss=loss, test_accuracy=acc, test_error_pct=100.0 * (1 - acc))
                )
            else:
                out.append(
                    E.StepMetrics(
                        t,
                        epoch,
                        step,
                        loss=loss,
                        accuracy=acc,
                        lr=float(r["lr"]),
                        optimizer=r["optimizer"],
                        frozen=r["frozen"] == "true",
                        mode=r["mode"],
                        samples_per_s=float(r["samples_per_s"] or 0),
                        samples_seen=step * batch_size,
                    )
                )
        except (KeyError, ValueError, TypeError):
            continue  # a row cut short by a crash
    return out


def _event(r: dict) -> E.Event | None:
    """One events.csv row as the event the engine emitted with it, when there is one."""
    t, epoch, step = float(r["time_s"]), int(r["epoch"]), int(r["step"])
    name, detail = r["event"], r.get("detail") or ""
    kind, _, command = name.partition(":")
    if kind == "applied":
        return E.CommandApplied(t, epoch, step, command_id=0, command=command, detail=detail)
    if kind == "rejected":
        return E.CommandRejected(t, epoch, step, command_id=0, command=command, reason=detail)
    if name.startswith("schedule_"):
        return E.ScheduleAction(t, epoch, step, action=name[len("schedule_") :], detail=detail)
    if name in ("checkpoint", "checkpoint_nonfinite"):
        what, sep, path = detail.partition(": ")
        what, path = (what, path) if sep else ("last", detail)  # deeptui 0.1 logged the path only
        return E.CheckpointSaved(t, epoch, step, path=path, kind="nonfinite" if name.endswith("nonfinite") else what)
    if name == "nonfinite_loss":
        return E.Warning(t, epoch, step, message=detail)
    if name == "error":
        message, _, fix = detail.partition("; fix: ")
        return E.RunError(t, epoch, step, message=message, fix=fix)
    return None


def read_run(run_dir: Path) -> tuple[Config, list[E.Event], str]:
    """(the run's resolved config, its events in time order, how it ended: finished, stopped,
    failed or interrupted (killed, crashed, or still running without a socket))."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.toml")
    rows = _rows(run_dir / "events.csv")
    logged = []
    for r in rows:
        try:
            ev = _event(r)
        except (KeyError, ValueError, TypeError):
            continue
        if ev is not None:
            logged.append(ev)
    metrics = metrics_events(run_dir, batch_size=cfg.data.batch_size)
    end = next((r for r in reversed(rows) if r.get("event") in ENDS), None)
    state = end["event"] if end else "interrupted"
    if state == "stopped" and (end.get("detail") or "").startswith("signal "):
        state = "interrupted"
    start = next((r for r in rows if r.get("event") in ("start", "resume")), None)
    said = dict(kv.split("=", 1) for kv in (start.get("detail") or "").split() if "=" in kv) if start else {}
    device, parameters = said.get("device", "?"), int(said.get("parameters", "0") or 0)
    tests = [e for e in metrics if isinstance(e, E.EpochEnd)]
    steps_per_epoch = max((e.step // max(e.epoch, 1) for e in tests), default=0)
    begun = E.RunStarted(
        0.0,
        1,
        0,
        preset=cfg.run.name,
        run_dir=str(run_dir),
        device=device,
        model=cfg.model.name,
        parameters=parameters,
        epochs=cfg.run.epochs,
        steps_per_epoch=steps_per_epoch,
        max_steps=cfg.run.max_steps,
        has_features=cfg.model.name == "monster",
        optimizer_choices=tuple(cfg.optimizer.choices),
        resumed=False,
    )
    events = sorted(metrics + logged, key=lambda e: e.time_s)  # stable: rows keep their order
    last = events[-1] if events else begun
    reason = (end.get("detail") or "") if end else "no end in events.csv: killed, crashed, or still running"
    first = metrics[0] if metrics else None
    settings = dict(
        optimizer=first.optimizer if first else cfg.optimizer.name,
        optimizer_params="",
        lr=first.lr if first else cfg.optimizer.lr,
        frozen=first.frozen if first else False,
        mode=first.mode if first else "train",
    )
    tail = [
        E.StateChanged(last.time_s, last.epoch, last.step, state=state, reason=reason, **settings),
        E.Finished(last.time_s, last.epoch, last.step, state=state, run_dir=str(run_dir), reason=reason),
    ]
    return cfg, [begun, *events, *tail], state


class HistorySession:
    """A run that has ended, as a Session: every event at once, never alive, steering refused."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.cfg, history, self.final_state = read_run(self.run_dir)
        self.events = E.EventBuffer()
        for ev in history:
            self.events.append(ev)
        self.replayed = len(history)  # all of it happened before: no dialogs, no toasts
        self.interactive = True
        self._ids = itertools.count(1)

    @property
    def alive(self) -> bool:
        return False

    def send(self, command: C.Command) -> int:
        return next(self._ids)  # nothing to steer: the keys say why before they get here

    def start(self) -> None:
        pass

    def shutdown(self, reason: str = "quit", timeout: float = 30.0) -> bool:
        return True

    def detach(self) -> None:
        pass

    def wait_finished(self, timeout: float) -> bool:
        return True
