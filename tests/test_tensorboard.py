"""TensorBoard: the event files of a live run (log.tensorboard = true) and of `deeptui export RUN_DIR
--tensorboard`, read back with TensorBoard's own reader, hold every metrics row, every event and
the config; without the tensorboard package both say so in one line and exit 2."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.runlog import EVENTS_HEADER
from deeptui.tui.cli import main
from tests.conftest import EventReader

pytest.importorskip("tensorboard")  # the test extra installs it
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

SCALARS = {"train": ("loss", "accuracy", "lr", "samples_per_s", "frozen"), "test": ("loss", "accuracy")}


def read_back(log_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def assert_matches_the_csv(acc: EventAccumulator, run_dir: Path) -> None:
    """Every number of every metrics.csv row is a scalar at its step; every events.csv row is a
    text at its step; the config is in the hparams."""
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert rows and next(csv.reader(open(run_dir / "events.csv"))) == EVENTS_HEADER
    for split, names in SCALARS.items():
        mine = [r for r in rows if r["split"] == split]
        for name in names:
            got = [(e.step, e.value) for e in acc.Scalars(f"{split}/{name}")]
            want = [(int(r["step"]), float(r[name] == "true") if name == "frozen" else float(r[name])) for r in mine]
            assert [s for s, _ in got] == [s for s, _ in want], (split, name)
            for (_, g), (_, w) in zip(got, want):
                assert g == pytest.approx(w, rel=1e-5, abs=1e-7), (split, name, got, want)
    texts = []
    for tag in acc.Tags()["tensors"]:
        if tag.startswith("events/"):
            event = tag[len("events/") : -len("/text_summary")].replace("/", ":")
            for t in acc.Tensors(tag):
                texts.append((t.step, event, t.tensor_proto.string_val[0].decode()))
    events = [
        (int(r["step"]), r["event"], r["detail"] or r["event"]) for r in csv.DictReader(open(run_dir / "events.csv"))
    ]
    assert sorted(texts) == sorted(events)
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hp = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hp["optimizer.lr"].number_value == pytest.approx(0.05) and hp["run.name"].string_value == "tiny"
    assert hp["data.batch_size"].number_value == 16 and hp["optimizer.choices"].string_value.startswith('["sgd"')


def test_a_live_runs_event_files_hold_every_row_event_and_the_config(make_engine):
    eng = make_engine("log.tensorboard=true", "run.max_steps=8", "optimizer.name='momentum'")
    assert eng.run() == "finished"
    assert list(eng.run_dir.glob("events.out.tfevents.*"))
    acc = read_back(eng.run_dir)
    assert_matches_the_csv(acc, eng.run_dir)
    assert acc.Scalars("train/frozen")[0].value == 1.0  # the tiny preset's schedule freezes epoch 1


def test_export_converts_a_finished_run_and_does_not_write_twice(make_engine, capsys):
    eng = make_engine("run.max_steps=8")
    assert eng.run() == "finished"
    assert not list(eng.run_dir.glob("events.out.tfevents.*"))  # log.tensorboard was off
    gpu = E.SystemStats(
        1.0, 1, 0, cpu_pct=104.0, rss_mb=3420.0, gpus=(("cuda:0", 87.0, 12650.0, 143771.0, 71.0, 250.5),)
    )
    with open(eng.run_dir / "events.jsonl", "a") as f:
        f.write(E.to_json(gpu) + "\n")  # a reading as a GPU run records it
    assert main(["export", str(eng.run_dir), "--tensorboard"]) == 0
    out = capsys.readouterr().out
    assert f"open them with: tensorboard --logdir {eng.run_dir}" in out
    acc = read_back(eng.run_dir)
    assert_matches_the_csv(acc, eng.run_dir)
    assert [(e.step, e.value) for e in acc.Scalars("system/cuda:0/util_pct")] == [(1, 87.0)]
    assert acc.Scalars("system/cuda:0/power_w")[0].value == pytest.approx(250.5)
    assert main(["export", str(eng.run_dir), "--tensorboard"]) == 2  # the files are there already
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds TensorBoard event files" in err and "--out" in err


def test_without_the_tensorboard_package_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    argv = ["quickstart", "--headless", "--log-dir", str(tmp_path / "runs"), "--set", "log.tensorboard=true"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'deeptui[tensorboard]'" in err and "log.tensorboard = false" in err
    assert not (tmp_path / "runs").exists()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.csv").write_text("time_s\n")
    assert main(["export", str(tmp_path / "run"), "--tensorboard"]) == 2
    err = capsys.readouterr().err
    assert "deeptui export --tensorboard needs the tensorboard package" in err and err.count("\n") == 1


# ---- long runs: off the training thread, at file speed, constant memory (issues 24 and 25) ----------


def test_a_live_runs_tensorboard_rows_cost_the_training_thread_a_queue_put(tmp_path):
    """Bug: log.tensorboard = true cost the training thread about 1.5 ms a row (9 us for the CSV
    files). Now the records are written by a thread of its own: what the training thread pays
    for a row is about what it pays without TensorBoard; close() (the run's end, signals too)
    writes them all."""
    import time

    from deeptui.engine.runlog import RunLog
    from deeptui.engine.tensorboard import TensorBoardRunLog
    from tests.longrun import Row

    rows = [Row(i * 0.01, 1, i, 1.0 / i, 0.5, 0.05).event() for i in range(1, 3001)]

    def cost(log) -> float:
        t = time.thread_time()
        for ev in rows:
            log.record(ev)
        spent = time.thread_time() - t
        log.close()
        return spent

    (tmp_path / "plain").mkdir()
    (tmp_path / "tb").mkdir()
    plain = cost(RunLog(tmp_path / "plain", flush_seconds=2.0))
    with_tb = cost(TensorBoardRunLog(tmp_path / "tb", 2.0, {"run": {"name": "tiny"}}))
    assert with_tb < 2 * plain + 0.05, (plain, with_tb)
    steps = [s.step for s in read_back(tmp_path / "tb").Scalars("train/loss")]
    assert steps == list(range(1, 3001))


def test_a_stopped_run_has_every_row_in_its_event_files(make_engine):
    eng = make_engine("log.tensorboard=true", "run.epochs=50", "log.interval=1")
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= 20)
    eng.send(C.Stop(reason="signal SIGTERM"))  # what a signal does
    assert eng.wait_finished(60)
    steps = [s.step for s in read_back(eng.run_dir).Scalars("train/loss")]
    assert steps == [e.step for e in eng.events.read(0)[0] if isinstance(e, E.StepMetrics)]


def export_peak(tmp_path: Path, rows: int) -> tuple[int, Path]:
    import tracemalloc

    from deeptui.engine.tensorboard import export_run
    from tests.longrun import write_run

    run = tmp_path / f"run-{rows}"
    write_run(run, rows, metrics=False)
    tracemalloc.start()
    export_run(run, tmp_path / f"tb-{rows}", {"run": {"name": "long"}})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, tmp_path / f"tb-{rows}"


def test_export_streams_a_long_run_at_constant_memory(tmp_path):
    """Bug: export held every event (1M rows: 1.95 GB resident, 17 min). Now it streams
    events.jsonl: 5x the rows take about the same memory, and TensorBoard reads every row back."""
    small, out = export_peak(tmp_path, 10_000)
    large, _ = export_peak(tmp_path, 40_000)
    assert large < 1.5 * small + 2**20, (small, large)
    got = read_back(out).Scalars("train/loss")
    assert [s.step for s in got] == list(range(1, 10_001))
    from tests.longrun import loss_at

    assert got[-1].value == pytest.approx(loss_at(10_000), rel=1e-6)


def test_export_draws_a_progress_bar_on_a_terminal(tmp_path, monkeypatch, capsys):
    import io

    from tests.longrun import write_run

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    write_run(tmp_path / "run", 5000, metrics=True)
    bar = Terminal()
    monkeypatch.setattr(sys, "stderr", bar)
    assert main(["export", str(tmp_path / "run"), "--tensorboard", "--out", str(tmp_path / "tb")]) == 0
    assert "\rexporting [" in bar.getvalue() and "100%" in bar.getvalue()
    assert "wrote 25" in capsys.readouterr().out
