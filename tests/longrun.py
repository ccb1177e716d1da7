"""Long runs made up: a run directory whose events.jsonl (and metrics.csv) hold any number of
training rows, written at file speed, and a stand-in for an engine that a ControlServer can serve
it from. For the long-run tests and benchmarks/history.py."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from types import SimpleNamespace

from deeptui.engine import events as E
from deeptui.engine.config import load_config
from deeptui.engine.runlog import CSV_ROWS, JOURNAL, METRICS_HEADER, write_config

PRESET = """
[run]
name = "long"
epochs = {epochs}
[data]
dataset = "shapes"
batch_size = 32
[model]
name = "mlp"
[optimizer]
name = "sgd"
lr = 0.05
"""


def loss_at(i: int) -> float:
    return 2.0 / (1.0 + i / 1000.0) + 0.05 * math.sin(i)


def error_at(epoch: int, best_epoch: int) -> float:
    return 0.10 if epoch == best_epoch else 5.0 + (epoch % 7)


def events_of(run_dir: Path, rows: int, epoch_rows: int = 300, best_epoch: int = 4, finish: bool = True):
    """The run's events in order: a start, `rows` training rows with a test row, a checkpoint
    and a state change every `epoch_rows`, a machine reading every 1,000 rows, an lr change every
    10,000, and its end."""
    epochs = max(1, math.ceil(rows / epoch_rows))
    yield E.RunStarted(
        0.0,
        1,
        0,
        preset="long",
        run_dir=str(run_dir),
        device="cpu",
        model="mlp",
        parameters=1000,
        epochs=epochs,
        steps_per_epoch=epoch_rows,
        max_steps=0,
        has_features=False,
        optimizer_choices=("sgd",),
    )
    settings = dict(optimizer="sgd", optimizer_params="lr=0.05", lr=0.05, frozen=False, mode="train")
    yield E.StateChanged(0.001, 1, 0, state="running", **settings)
    lr = 0.05
    for i in range(1, rows + 1):
        epoch, t = (i - 1) // epoch_rows + 1, round(i * 0.01, 3)
        yield Row(t, epoch, i, loss_at(i), min(0.99, i / rows), lr)
        if i % 1000 == 0:
            yield E.SystemStats(t, epoch, i, cpu_pct=100.0, rss_mb=500.0)
        if i % 10_000 == 0:
            lr = round(lr * 0.9, 6)
            yield E.CommandApplied(t, epoch, i, command_id=i, command="SetLearningRate", detail=f"lr -> {lr}")
        if i % epoch_rows == 0 or i == rows:
            err = error_at(epoch, best_epoch)
            yield E.EpochEnd(t, epoch, i, test_loss=err / 10, test_accuracy=1 - err / 100, test_error_pct=err)
            yield E.CheckpointSaved(t, epoch, i, path=str(run_dir / "last.pt"), kind="last")
    if finish:
        t = round(rows * 0.01 + 0.5, 3)
        yield E.StateChanged(t, epochs, rows, state="finished", **{**settings, "lr": lr})
        yield E.Finished(t, epochs, rows, state="finished", run_dir=str(run_dir))


class Row(tuple):
    """A training row, cheaper to make than its event: its line is what to_json writes."""

    def __new__(cls, *fields):
        return tuple.__new__(cls, fields)

    def line(self) -> str:
        t, epoch, step, loss, acc, lr = self
        return ROW.format(t=t, epoch=epoch, step=step, loss=loss, acc=acc, lr=lr, seen=32 * step)

    def event(self) -> E.StepMetrics:
        t, epoch, step, loss, acc, lr = self
        return E.StepMetrics(
            t, epoch, step, loss=loss, accuracy=acc, lr=lr, optimizer="sgd", frozen=False, mode="train",
            samples_per_s=3200.0, samples_seen=32 * step, train_s=t,
        )  # fmt: skip


ROW = (
    '{{"type":"StepMetrics","time_s":{t!r},"epoch":{epoch},"step":{step},"loss":{loss!r},"accuracy":{acc!r},'
    '"lr":{lr!r},"optimizer":"sgd","frozen":false,"mode":"train","samples_per_s":3200.0,"samples_seen":{seen},'
    '"train_s":{t!r},"gpu_memory_mb":0.0,"gpu_reserved_mb":0.0,"gpu_peak_mb":0.0,"clipped":NaN}}'
)  # to_json's line exactly (write_run checks its first row): the server matches journal lines by their bytes


def write_run(
    run_dir: Path, rows: int, epoch_rows: int = 300, best_epoch: int = 4, buffer=None, metrics=True, finish=True
):
    """Make the run directory (config.toml, events.jsonl, metrics.csv); every event also goes to
    `buffer` (an EventBuffer) when given. Returns what its summary must say."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    epochs = max(1, math.ceil(rows / epoch_rows))
    write_config(run_dir, load_config(None, [], embedded=PRESET.format(epochs=epochs)).to_dict())
    with open(run_dir / JOURNAL, "w") as journal, open(run_dir / "metrics.csv", "w", newline="") as m:
        writer = csv.writer(m)
        writer.writerow(METRICS_HEADER)
        for ev in events_of(run_dir, rows, epoch_rows, best_epoch, finish):
            if isinstance(ev, Row):
                if ev[2] == 1:
                    assert ev.line() == E.to_json(ev.event()), "ROW is no longer what to_json writes"
                journal.write(ev.line() + "\n")
                if metrics or buffer is not None:
                    ev = ev.event()
            else:
                journal.write(E.to_json(ev) + "\n")
            if metrics and isinstance(ev, (E.StepMetrics, E.EpochEnd)):
                writer.writerows(cells for _, cells in CSV_ROWS[type(ev)](ev))
            if buffer is not None:
                buffer.append(ev)
    return SimpleNamespace(
        epochs=epochs,
        best=(error_at(best_epoch, best_epoch), best_epoch),
        final_error=error_at(epochs, best_epoch),
        last_loss=loss_at(rows),
        steps=rows,
    )


class Standin:
    """What a ControlServer reads of an engine, over a made-up run: its events (an EventBuffer),
    its journal, its run directory; commands are kept, never applied."""

    def __init__(self, run_dir: Path, buffer: E.EventBuffer):
        self.run_dir = Path(run_dir)
        self.events = buffer
        self.report = SimpleNamespace(log=SimpleNamespace(flush=lambda: None, journal_path=self.run_dir / JOURNAL))
        self.alive = True
        self.sent = []

    def send(self, command) -> int:
        self.sent.append(command)
        return command.id


def live_rss(run_dir: Path, rows: int, every: int) -> list[tuple[int, float]]:
    """A live run's machinery for its front ends, fed `rows` made-up training rows as the engine
    would tell them: its Reporter (the event buffer, events.jsonl and the CSV files), its control
    server's replay (followed every 1,000 rows, as its thread would), a headless printer and its
    view. The process's resident memory (MiB) every `every` rows."""
    import psutil

    from deeptui.engine.metrics import Reporter
    from deeptui.engine.remote.server import ControlServer
    from deeptui.engine.runlog import RunLog
    from deeptui.tui.headless import HeadlessPrinter

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, load_config(None, [], embedded=PRESET.format(epochs=1000)).to_dict())
    log = RunLog(run_dir, flush_seconds=2.0)
    buffer = E.EventBuffer()
    report = Reporter(log, buffer, lambda: (0.0, 1, 0))
    standin = Standin(run_dir, buffer)
    standin.report = SimpleNamespace(log=log)
    server = ControlServer(standin)  # not listening: its follower is called here, as its thread would
    printer = HeadlessPrinter(out=open(os.devnull, "w"), summary=False)
    me = psutil.Process()
    samples = []
    for ev in events_of(run_dir, rows, finish=False):
        row = isinstance(ev, Row)
        ev = ev.event() if row else ev
        report.publish(ev)
        printer.handle(ev)
        if row and ev.step % 1000 == 0:
            server._follow_events()
        if row and ev.step % every == 0:
            samples.append((ev.step, me.memory_info().rss / 2**20))
    log.close()
    return samples
