"""TensorBoard event files beside the CSV files, through torch.utils.tensorboard: from each event
of the run, a scalar per number of its metrics row, a text per events.csv row, the machine's
readings, and the resolved config as hparams. The live run (log.tensorboard = true) and `deeptui
export RUN_DIR --tensorboard` write them the same way; events.jsonl stays the record.

TensorBoard is an optional extra (pip install 'deeptui[tensorboard]'); without it a run that asks
for it does not start, with a one-line message.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from . import events as E
from .errors import SetupError
from .history import one_history, read_run
from .runlog import CSV_ROWS, RunLog

TRAIN_SCALARS = ("loss", "accuracy", "lr", "samples_per_s", "frozen")
GPU_SCALARS = ("util_pct", "mem_used_mb", "temp_c", "power_w")
EVENT_FILES = "events.out.tfevents.*"


class TensorBoardMissing(SetupError):
    """log.tensorboard = true or `deeptui export --tensorboard` without the tensorboard package."""


def require(what: str = "log.tensorboard = true") -> None:
    """Raise TensorBoardMissing (one line, the fix) unless torch.utils.tensorboard can be used."""
    try:
        import torch.utils.tensorboard  # noqa: F401 - it imports tensorboard and says so when it is missing
    except ImportError:
        raise TensorBoardMissing(
            f"{what} needs the tensorboard package, which is not installed; fix: pip install "
            "'deeptui[tensorboard]' (or pip install tensorboard)"
            + (", or set log.tensorboard = false" if what.startswith("log.") else "")
        ) from None


def _flat(config: dict) -> dict:
    """The resolved preset as TensorBoard hparams: 'optimizer.lr' -> 0.05; arrays and tables as text."""
    out = {}
    for section, keys in config.items():
        for k, v in keys.items():
            out[f"{section}.{k}"] = v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
    return out


class TensorBoardLog:
    """One SummaryWriter in `log_dir`; times are the run clock's seconds after `start_wall`."""

    def __init__(self, log_dir: Path, config: dict, start_wall: float | None = None, flush_seconds: float = 2.0):
        require()
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.w = SummaryWriter(log_dir=str(log_dir), flush_secs=max(1, int(flush_seconds)))
        self.start_wall = time.time() if start_wall is None else start_wall
        self.scalars = self.texts = 0
        exp, ssi, self._end = hparams(_flat(config), {"test/loss": 0.0, "test/accuracy": 0.0})
        for summary in (exp, ssi):
            self.w._get_file_writer().add_summary(summary)

    def _scalar(self, tag: str, value, step: int, time_s: float) -> None:
        v = float(value)
        if not math.isnan(v):
            self.w.add_scalar(tag, v, global_step=step, walltime=self.start_wall + float(time_s))
            self.scalars += 1

    def add(self, ev: E.Event) -> None:
        """One event of the run: its numbers as scalars at its step (a step that goes back, after
        a rewind, makes TensorBoard drop the abandoned points), its events.csv row as text."""
        if isinstance(ev, E.StepMetrics):
            for name in TRAIN_SCALARS:
                self._scalar(f"train/{name}", getattr(ev, name), ev.step, ev.time_s)
        elif isinstance(ev, E.EpochEnd):
            split = "test" if ev.mode == "eval" else "test_train_mode"  # the test set in train mode
            self._scalar(f"{split}/loss", ev.test_loss, ev.step, ev.time_s)
            self._scalar(f"{split}/accuracy", ev.test_accuracy, ev.step, ev.time_s)
        elif isinstance(ev, E.SystemStats):
            step = int(ev.time_s)  # readings have no training step: their step is the run clock's second
            for gpu in ev.gpus:
                for name, value in zip(GPU_SCALARS, (gpu[1], gpu[2], gpu[4], gpu[5])):
                    self._scalar(f"system/{gpu[0]}/{name}", value, step, ev.time_s)
            self._scalar("system/cpu_pct", ev.cpu_pct, step, ev.time_s)
            self._scalar("system/rss_mb", ev.rss_mb, step, ev.time_s)
        for file, cells in CSV_ROWS.get(type(ev), lambda ev: [])(ev):
            if file == "events":
                name, detail = cells[3], cells[4]
                tag = "events/" + name.replace(":", "/")
                self.w.add_text(tag, detail or name, global_step=ev.step, walltime=self.start_wall + ev.time_s)
                self.texts += 1

    def flush(self) -> None:
        self.w.flush()

    def close(self) -> None:
        self.w._get_file_writer().add_summary(self._end)
        self.w.close()


class TensorBoardRunLog(RunLog):
    """The run log that also writes TensorBoard event files into the run directory (log.tensorboard)."""

    def __init__(self, run_dir: Path, flush_seconds: float, config: dict):
        super().__init__(run_dir, flush_seconds)
        self.tensorboard = TensorBoardLog(run_dir, config, flush_seconds=flush_seconds)

    def record(self, ev: E.Event) -> None:
        super().record(ev)
        if not self.closed:
            self.tensorboard.add(ev)

    def flush(self) -> None:
        super().flush()
        if not self.closed:
            self.tensorboard.flush()

    def close(self) -> None:
        if not self.closed:
            super().close()
            self.tensorboard.close()


def run_log(run_dir: Path, cfg) -> RunLog:
    """The run's log: CSV files, and TensorBoard's event files too when log.tensorboard is set."""
    if cfg.log.tensorboard:
        return TensorBoardRunLog(run_dir, cfg.log.flush_seconds, cfg.to_dict())
    return RunLog(run_dir, cfg.log.flush_seconds)


def export_run(run_dir: Path, out_dir: Path, config: dict) -> TensorBoardLog:
    """A run's history (its events, one history: what a rewind or a resume abandoned is left out)
    as one TensorBoard event file in `out_dir`; the run clock's zero is when config.toml was
    written, at the start of the run."""
    run_dir = Path(run_dir)
    start = (run_dir / "config.toml").stat().st_mtime if (run_dir / "config.toml").exists() else None
    tb = TensorBoardLog(out_dir, config, start_wall=start)
    for ev in one_history(read_run(run_dir)[1]):
        tb.add(ev)
    tb.close()
    return tb
