"""A run directory read back as its events: events.jsonl, the run's own record (a run made before
it existed is rebuilt from its CSV files as well as they tell); one_history, the events without
what a rewind or a resume abandoned; HistorySession, the Session of a run that has ended (what
`deeptui show` folds, with the same reducer as the live dashboard). No torch here."""

from __future__ import annotations

import bisect
import csv
import itertools
import json
import math
import os
import re
import threading
from pathlib import Path

from . import commands as C
from . import events as E
from .config import Config, load_config
from .errors import RunDirError
from .replay import ROW, ROW_PREFIX, Replay, replay_file
from .runlog import JOURNAL, LAYERS_HEADER, SYSTEM_HEADER
from .state import RunState

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
                    f"{path}: line {reader.line_num} cannot be read as CSV ({e})", fix="delete or shorten that line"
                ) from None
    except OSError:
        return []


def metrics_events(
    run_dir: Path, before_step: int | None = None, batch_size: int = 0, test_modes: bool = True
) -> list[E.Event]:
    """metrics.csv rows (before `before_step`) as StepMetrics / EpochEnd; samples seen is counted
    as steps x batch_size (the CSV does not hold it). With `test_modes`, a test row's mode column
    is the mode the test set was evaluated in (else every test row is an eval-mode one)."""
    out: list[E.Event] = []
    for r in _rows(Path(run_dir) / "metrics.csv"):
        try:
            t, epoch, step = float(r["time_s"]), int(r["epoch"]), int(r["step"])
            if before_step is not None and step >= before_step:
                break
            loss, acc = float(r["loss"]), float(r["accuracy"])
            if r["split"] == "test":
                mode = r["mode"] if test_modes and r["mode"] in ("eval", "train") else "eval"
                out.append(
                    E.EpochEnd(
                        t, epoch, step, test_loss=loss, test_accuracy=acc, test_error_pct=100.0 * (1 - acc), mode=mode
                    )
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


def _event(r: dict, run_dir: Path) -> E.Event | None:
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
    if name in (RunState.FINISHED, RunState.STOPPED, RunState.FAILED):
        return E.Finished(t, epoch, step, state=name, run_dir=str(run_dir), reason=detail)
    timing = TIMING_DETAIL.fullmatch(detail)  # a timing row's detail, and only its, reads so
    if timing is not None:  # the GFLOP/s figures are not in the row
        device, batch_ms, loop_ms, ratio = timing.groups()
        nan = math.nan
        return E.TimingResult(
            t, epoch, step, device=device, batch_ms=float(batch_ms), loop_ms=float(loop_ms), ratio=float(ratio),
            batch_gflops=nan, loop_gflops=nan,
        )  # fmt: skip
    return None


GPU_COLUMNS = SYSTEM_HEADER[2:7]  # util_pct ... power_w, as SystemStats.gpus holds them after the device
LAYER_COLUMNS = LAYERS_HEADER[5:]  # weight_norm ... activation_std, as LayerStats holds them
TIMING_DETAIL = re.compile(r"(.+): batch ([-\d.e+]+) ms, loop ([-\d.e+]+) ms, ratio ([-\d.e+]+)")


def _number(cell: str | None) -> float:
    return float(cell) if cell else math.nan  # an empty cell is a figure not measured


def _layer_events(run_dir: Path) -> list[E.LayerStats]:
    """layers.csv's rows, a row per layer, as one LayerStats per probed step (the d key's views)."""
    steps: dict[tuple, list] = {}
    for r in _rows(run_dir / "layers.csv"):
        try:
            at = (float(r["time_s"]), int(r["epoch"]), int(r["step"]))
            values = tuple(_number(r[c]) for c in LAYER_COLUMNS)
        except (KeyError, ValueError, TypeError):
            continue
        steps.setdefault(at, []).append((r.get("layer") or "?", values))
    out = []
    for (t, epoch, step), layers in steps.items():
        columns = list(zip(*(values for _, values in layers)))
        out.append(E.LayerStats(t, epoch, step, tuple(name for name, _ in layers), *columns))
    return out


def _system_events(run_dir: Path, metrics: list[E.Event]) -> list[E.SystemStats]:
    """system.csv's rows (a row per GPU, or one 'cpu' row) as one SystemStats per reading, at
    the epoch and step of the training row before it (the file does not hold them)."""
    readings: dict[float, tuple[list, list]] = {}
    for r in _rows(run_dir / "system.csv"):
        try:
            t = float(r["time_s"])
            gpu = (r["device"], *(_number(r[c]) for c in GPU_COLUMNS))
            own = (_number(r["cpu_pct"]), _number(r["rss_mb"]))
        except (KeyError, ValueError, TypeError):
            continue
        gpus, process = readings.setdefault(t, ([], []))
        if gpu[0] != "cpu":
            gpus.append(gpu)
        process[:] = own
    times = [e.time_s for e in metrics]
    out = []
    for t, (gpus, (cpu, rss)) in readings.items():
        before = metrics[bisect.bisect_right(times, t) - 1] if times and times[0] <= t else None
        at = (before.epoch, before.step) if before is not None else (1, 0)
        out.append(E.SystemStats(t, *at, cpu_pct=cpu, rss_mb=rss, gpus=tuple(gpus)))
    return out


def _decoded(lines) -> list[E.Event]:
    """JSON lines as the events they are; a torn or unknown line is skipped."""
    out: list[E.Event] = []
    for line in lines:
        ev = E.from_line(line)
        if ev is not None:
            out.append(ev)
    return out


def read_journal(path: Path) -> list[E.Event]:
    """events.jsonl as the events the run emitted, in order."""
    try:
        with open(path, "rb") as f:
            return _decoded(f)
    except OSError:
        return []


def tail_events(path: Path, keep: int = 64 * 1024) -> list[E.Event]:
    """The events in the last `keep` bytes of events.jsonl (a line cut at the start is skipped)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - keep))
            data = f.read()
    except OSError:
        return []
    return _decoded(data.split(b"\n")[1 if size > keep else 0 :])


def tail_rows(path: Path, n: int) -> list[E.StepMetrics]:
    """The last `n` training rows of events.jsonl (of the history kept: a rewind in the part read
    takes back the rows past it), read from the end in growing pieces, not the whole file."""
    if n <= 0:
        return []
    keep = 64 * 1024
    try:
        size = os.path.getsize(path)
    except OSError:
        return []
    while True:
        events = tail_events(path, keep)
        rows = [e for e in one_history(events) if isinstance(e, E.StepMetrics)]
        if len(rows) >= n or keep >= size:
            return rows[-n:]
        keep *= 4


def ended(events: list[E.Event]) -> E.Finished | None:
    """The run's end among its events: the last Finished after the last start (a resume)."""
    for ev in reversed(events):
        if isinstance(ev, E.Finished):
            return ev
        if isinstance(ev, E.RunStarted):
            return None
    return None


def read_run(run_dir: Path) -> tuple[Config, list[E.Event], RunState]:
    """(the run's resolved config, its events in order, how it ended: finished, stopped, failed
    or interrupted: killed, crashed, or still running without a socket). A run that did not
    end gets a StateChanged and a Finished that say so, so that every fold ends. Every event,
    in memory: replay_run is what a view of a long run reads."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.toml")
    journal = run_dir / JOURNAL
    events = read_journal(journal) if journal.exists() else _from_csv(run_dir, cfg)
    last = events[-1] if events else E.Event(0.0, 1, 0)
    tail, state = _ending(cfg, run_dir, events, (last.time_s, last.epoch, last.step))
    return cfg, [*events, *tail], state


def replay_run(run_dir: Path, progress=None) -> tuple[Config, list[E.Event], RunState]:
    """read_run's answer at constant memory whatever the run's length: the training rows come
    folded into one Digest (engine.replay), the other events in full."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.toml")
    journal = run_dir / JOURNAL
    if journal.exists():
        rp = replay_file(journal, progress)
    else:
        rp = Replay()
        for ev in _from_csv(run_dir, cfg):
            rp.add(ev)
    tail, state = _ending(cfg, run_dir, rp.kept, rp.position)
    return cfg, [*rp.events(), *tail], state


def _ending(cfg: Config, run_dir: Path, events: list[E.Event], position: tuple) -> tuple[list[E.Event], RunState]:
    """How the run ended, and the events that close the fold of a run that has no end (killed,
    crashed, or still running without a socket)."""
    end = ended(events)
    if end is not None:
        return [], RunState.of(end.state)
    t, epoch, step = position
    settings = next((e for e in reversed(events) if isinstance(e, E.StateChanged)), None)
    state, reason = RunState.INTERRUPTED, "no end in the run's files: killed, crashed, or still running"
    tail = [
        E.StateChanged(
            t,
            epoch,
            step,
            state=state.value,
            reason=reason,
            optimizer=settings.optimizer if settings else cfg.optimizer.name,
            optimizer_params=settings.optimizer_params if settings else "",
            lr=settings.lr if settings else cfg.optimizer.lr,
            frozen=settings.frozen if settings else False,
            mode=settings.mode if settings else "train",
            eval_mode=settings.eval_mode if settings else cfg.run.eval_mode,
        ),
        E.Finished(t, epoch, step, state=state.value, run_dir=str(run_dir), reason=reason),
    ]
    return tail, state


def one_history(events: list[E.Event]) -> list[E.Event]:
    """The events without what a rewind or a resume abandoned: a point logged at a step past the
    step that a later Rewound (or resumed RunStarted) went back to. What the run's CSV files
    keep, and what TensorBoard draws."""
    back = math.inf  # the lowest step that a later event went back to
    keep = []
    for ev in reversed(events):
        if isinstance(ev, (E.Rewound, E.RunStarted)) and (not isinstance(ev, E.RunStarted) or ev.resumed):
            back = min(back, ev.step)
        elif isinstance(ev, POINTS) and ev.step > back:
            continue
        keep.append(ev)
    return keep[::-1]


POINTS = (E.StepMetrics, E.EpochEnd, E.LayerStats)  # what a rewind takes back: the history's points
_BACK = (b'{"type":"Rewound"', b'{"type":"RunStarted"')  # lines that may take the history back
_POINT = tuple(b'{"type":"%s"' % c.__name__.encode() for c in POINTS)


def kept_lines(path: Path, progress=None):
    """one_history over events.jsonl as a stream at constant memory: (line, its ROW match for a
    training row as to_json writes it, else None) for every line the history kept. Two passes:
    the first finds where the history went back (Rewound, a resumed RunStarted), the second
    leaves out the points past a later one. `progress(bytes, size)` every few MB."""
    backs: list[tuple[int, int]] = []  # (line number, the step it went back to)
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            if line.startswith(_BACK):
                ev = E.from_line(line)
                if isinstance(ev, E.Rewound) or (isinstance(ev, E.RunStarted) and ev.resumed):
                    backs.append((i, ev.step))
    lowest = [math.inf] * (len(backs) + 1)  # lowest[k]: the lowest step backs[k:] go back to
    for k in range(len(backs) - 1, -1, -1):
        lowest[k] = min(lowest[k + 1], backs[k][1])
    size = os.path.getsize(path)
    done, report, k = 0, 0, 0
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            if progress is not None:
                done += len(line)
                if done >= report:
                    progress(done, size)
                    report = done + 4 * 2**20
            while k < len(backs) and backs[k][0] <= i:
                k += 1
            row = ROW.match(line) if line.startswith(ROW_PREFIX) else None
            if lowest[k] < math.inf and line.startswith(_POINT):
                if row is not None:
                    step = int(row.group(3))
                else:
                    try:
                        step = int(json.loads(line).get("step", 0))
                    except (ValueError, RecursionError, AttributeError, TypeError):
                        continue
                if step > lowest[k]:
                    continue
            yield line, row
    if progress is not None:
        progress(size, size)


def _from_csv(run_dir: Path, cfg: Config) -> list[E.Event]:
    """A run made before events.jsonl existed, rebuilt from its CSV files as well as they tell:
    a RunStarted, the metrics rows, the events.csv rows that stand for an event (timings
    included), the layer statistics and the machine's readings."""
    rows = _rows(run_dir / "events.csv")
    logged = []
    for r in rows:
        try:
            ev = _event(r, run_dir)
        except (KeyError, ValueError, TypeError):
            continue
        if ev is not None:
            logged.append(ev)
    # deeptui 0.1 wrote the training mode into the test rows; the test set's mode came with run.eval_mode
    test_modes = "eval_mode" in (cfg.to_dict().get("run") or {}) and _has_key(run_dir, "eval_mode")
    metrics = metrics_events(run_dir, batch_size=cfg.data.batch_size, test_modes=test_modes)
    start = next((r for r in rows if r.get("event") in ("start", "resume")), None)
    said = dict(kv.split("=", 1) for kv in (start.get("detail") or "").split() if "=" in kv) if start else {}
    tests = [e for e in metrics if isinstance(e, E.EpochEnd)]
    begun = E.RunStarted(
        0.0,
        1,
        0,
        preset=cfg.run.name,
        run_dir=str(run_dir),
        device=said.get("device", "?"),
        model=cfg.model.name,
        parameters=int(said.get("parameters", "0") or 0),
        epochs=cfg.run.epochs,
        steps_per_epoch=max((e.step // max(e.epoch, 1) for e in tests), default=0),
        max_steps=cfg.run.max_steps,
        has_features=cfg.model.name == "monster",
        optimizer_choices=tuple(cfg.optimizer.choices),
        resumed=False,
    )
    first = next((e for e in metrics if isinstance(e, E.StepMetrics)), None)
    if first is not None:  # the settings the run started with, as its first row says
        fields = dict(optimizer=first.optimizer, lr=first.lr, frozen=first.frozen, mode=first.mode)
        begun_state = E.StateChanged(0.0, 1, 0, state=RunState.RUNNING, optimizer_params="", **fields)
    else:
        begun_state = None
    extra = _layer_events(run_dir) + _system_events(run_dir, metrics)
    events = sorted(metrics + logged + extra, key=lambda e: e.time_s)  # stable: rows keep their order
    return [begun, *([begun_state] if begun_state else []), *events]


def _has_key(run_dir: Path, key: str) -> bool:
    try:
        return key in (run_dir / "config.toml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


QUICK_HEAD, QUICK_TAIL = 64 * 1024, 2 * 2**20  # what show draws first of a long run's journal


def quick_replay(run_dir: Path) -> tuple[list[E.Event], RunState]:
    """A first look at a long run: the start and the end of events.jsonl (QUICK_HEAD and
    QUICK_TAIL bytes), folded, and a line that says the rest is being read."""
    path = Path(run_dir) / JOURNAL
    rp = Replay()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(QUICK_HEAD).split(b"\n")[:-1]  # the last piece may be cut
        f.seek(max(QUICK_HEAD, size - QUICK_TAIL))
        tail = f.read().split(b"\n")[1:]
    for line in head + tail:
        rp.add_line(line)
    t, epoch, step = rp.position
    mb = size / 2**20
    note = f"read the start and the last {QUICK_TAIL // 2**20} MB of {mb:,.0f} MB of events; reading the rest ..."
    events = [*rp.events(), E.Note(t, epoch, step, kind="reading", detail=note)]
    end = ended(rp.kept)
    return events, RunState.of(end.state) if end else RunState.INTERRUPTED


class HistorySession:
    """A run that has ended, as a Session: every event at once, never alive, steering refused.
    `progressive`: a long run's start and end at once, the whole of it from a thread, after which
    `events` is the whole history and `generation` counts one more (a view starts again)."""

    def __init__(self, run_dir: str | Path, progressive: bool = False):
        self.run_dir = Path(run_dir)
        self.generation = 0
        self.interactive = True
        self._ids = itertools.count(1)
        journal = self.run_dir / JOURNAL
        if progressive and journal.exists() and journal.stat().st_size > QUICK_HEAD + QUICK_TAIL:
            self.cfg = load_config(self.run_dir / "config.toml")
            history, self.final_state = quick_replay(self.run_dir)
            self._set(history)
            self.reader = threading.Thread(target=self._read_all, name="deeptui-show-reader", daemon=True)
            self.reader.start()
        else:
            self.cfg, history, self.final_state = replay_run(self.run_dir)
            self._set(history)

    def _set(self, history: list[E.Event]) -> None:
        events = E.EventBuffer(maxlen=None)  # all of it: its size is the screen's, not the run's
        for ev in history:
            events.append(ev)
        self.events, self.replayed = events, len(history)  # all of it happened before: no dialogs, no toasts
        self.bad_input = bool(history) and isinstance(history[-1], E.Finished) and history[-1].bad_input

    def _read_all(self) -> None:
        try:
            _, history, state = replay_run(self.run_dir)
        except Exception:  # the file went away meanwhile: the first look stays
            return
        self.final_state = state
        self._set(history)
        self.generation += 1

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
