"""TensorBoard event files beside the CSV files, through torch.utils.tensorboard: a scalar per
number of every metrics.csv row, a text per events.csv row, the machine's readings, and the
resolved config as hparams. The live run (log.tensorboard = true) and `deeptui export RUN_DIR
--tensorboard` write them the same way; the CSV files stay the record.

TensorBoard is an optional extra (pip install 'deeptui[tensorboard]'); without it a run that asks
for it does not start, with a one-line message.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

from . import system
from .errors import RunDirError, SetupError
from .runlog import RunLog

TRAIN_SCALARS = ("loss", "accuracy", "lr", "samples_per_s", "frozen")
TEST_SCALARS = ("loss", "accuracy")
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


def _float(text) -> float | None:
    if isinstance(text, bool):
        return float(text)
    if isinstance(text, (int, float)):
        return float(text)
    if text in ("true", "false"):
        return float(text == "true")
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


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
        v = _float(value)
        if v is not None and not math.isnan(v):
            self.w.add_scalar(tag, v, global_step=step, walltime=self.start_wall + float(time_s))
            self.scalars += 1

    def metric(self, row: dict) -> None:
        """One metrics.csv row (its values as written or as numbers)."""
        split, step, t = row["split"], int(row["step"]), float(row["time_s"])
        for name in TRAIN_SCALARS if split == "train" else TEST_SCALARS:
            self._scalar(f"{split}/{name}", row[name], step, t)

    def event(self, time_s, epoch, step, event: str, detail: str = "") -> None:
        """One events.csv row, as text under events/<event> at its step."""
        tag = "events/" + event.replace(":", "/")
        self.w.add_text(tag, detail or event, global_step=int(step), walltime=self.start_wall + float(time_s))
        self.texts += 1

    def system(self, row: dict) -> None:
        """One system.csv row: the process's CPU and memory, and a GPU's figures."""
        t = float(row["time_s"])
        step = int(t)  # readings have no training step: their step is the run clock's second
        device = row["device"]
        if device != "cpu":
            for name in GPU_SCALARS:
                self._scalar(f"system/{device}/{name}", row[name], step, t)
        for name in ("cpu_pct", "rss_mb"):
            self._scalar(f"system/{name}", row[name], step, t)

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

    def metric(self, **row) -> None:
        super().metric(**row)
        if not self.closed:
            self.tensorboard.metric(row)

    def event(self, time_s, epoch, step, event, detail="") -> None:
        super().event(time_s, epoch, step, event, detail)
        if not self.closed:
            self.tensorboard.event(time_s, epoch, step, event, detail)

    def system_row(self, row: dict) -> None:
        """A reading of the machine (from the monitor's thread: the writer's queue is thread-safe)."""
        if not self.closed:
            self.tensorboard.system(row)

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


def _rows(path: Path) -> list[dict]:
    csv.field_size_limit(max(csv.field_size_limit(), 16 * 2**20))  # a long event detail; the default is 128 KiB
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:  # a path's bytes, as written
            reader = csv.DictReader(f)
            try:
                return [r for r in reader if None not in r.values()]  # a row cut short by a crash: skipped
            except csv.Error as e:
                raise RunDirError(
                    f"{path}: line {reader.line_num} cannot be read as CSV ({e}); fix: delete or shorten that line"
                ) from None
    except FileNotFoundError:
        return []


def export_run(run_dir: Path, out_dir: Path, config: dict) -> TensorBoardLog:
    """A finished (or running) run's CSV files as one TensorBoard event file in `out_dir`; the
    run clock's zero is when config.toml was written, at the start of the run."""
    run_dir = Path(run_dir)
    start = (run_dir / "config.toml").stat().st_mtime if (run_dir / "config.toml").exists() else None
    tb = TensorBoardLog(out_dir, config, start_wall=start)
    for row in _rows(run_dir / "metrics.csv"):
        tb.metric(row)
    for row in _rows(run_dir / "events.csv"):
        tb.event(row["time_s"], row["epoch"], row["step"], row["event"], row["detail"])
    for row in _rows(run_dir / system.FILE_NAME):
        tb.system(row)
    tb.close()
    return tb
