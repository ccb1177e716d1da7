"""Long runs: what a view of a run of 300,000 events tells is what its files say (no silent cut
at the event buffer's bound), serving a client reads no run file, and history never acts."""

from __future__ import annotations

import builtins
import csv
import json
import socket
import threading
from pathlib import Path

from deeptui.engine import events as E
from deeptui.engine.history import HistorySession
from deeptui.engine.remote.client import RemoteSession
from deeptui.engine.remote.server import ControlServer
from deeptui.engine.remote.wire import SOCKET_NAME, address
from deeptui.tui.summary import summary_lines
from deeptui.tui.view import RunView
from tests.longrun import Row, Standin, write_run

LONG = 300_000


def fold(events) -> RunView:
    view = RunView()
    for ev in events:
        view.apply(ev)
    return view


def test_show_and_the_summary_of_a_300k_event_run_agree_with_its_files(tmp_path):
    """Bug: past the 100,000 events of the buffer, show printed 'epoch 1000' (the start was cut)
    and the best test error of the events it still had, not the run's."""
    truth = write_run(tmp_path / "run", LONG)
    view = fold(HistorySession(tmp_path / "run").events.read(0)[0])
    lines = summary_lines(view, tmp_path / "run")
    assert lines[0].startswith(f"run finished: long, epoch {truth.epochs}/{truth.epochs}, {truth.steps:,} steps")
    assert f"best {truth.best[0]:.2f}% (epoch {truth.best[1]})" in lines[1]
    assert f"final {truth.final_error:.2f}%" in lines[1]
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.reader(f) if r[3] in ("test", "train")]
    best = min((r for r in rows if r[3] == "test"), key=lambda r: 1 - float(r[5]))  # the files' best epoch
    assert view.best_test == (truth.best[0], int(best[1]))
    last = [r for r in rows[-3:] if r[3] == "train"][-1]
    assert view.curves.last_loss == truth.last_loss and float(last[4]) == float(f"{truth.last_loss:.6g}")
    assert view.curves.train.lod.points == LONG  # every row is in the curve, summarised, none cut


def test_attaching_to_a_300k_event_run_tells_what_show_tells(tmp_path):
    """Bug: an attached dashboard lost the start (it showed 'starting' while the run trained),
    earlier commands, state changes and checkpoints; now the server's replay is the whole run."""
    run_dir = tmp_path / "run"
    buffer = E.EventBuffer()  # the engine's: 100,000 events, so the first 200,000 are gone
    write_run(run_dir, LONG, buffer=buffer, finish=False, metrics=False)
    srv = ControlServer(Standin(run_dir, buffer)).start()
    try:
        session = RemoteSession(run_dir, connect_timeout=30)
        session.start()
        history = session.events.read(0)[0]
        session.detach()
    finally:
        srv.close()
    attached, shown = fold(history), fold(HistorySession(run_dir).events.read(0)[0])
    assert attached.epochs == shown.epochs == 1000 and attached.run_dir == str(run_dir)
    assert attached.markers == shown.markers and len(attached.markers) == LONG // 10_000
    lr = 0.05
    for _ in range(LONG // 10_000 - 1):  # the last row came before the last change
        lr = round(lr * 0.9, 6)
    assert attached.step == shown.step == LONG and attached.lr == lr
    assert attached.best_test == shown.best_test == (0.10, 4)
    assert attached.curves.train == shown.curves.train  # the same curve, point for point
    assert attached.checkpoints == shown.checkpoints and len(history) < 10_000


def test_serving_clients_reads_no_run_file(tmp_path, monkeypatch):
    """Bug: once the buffer had overflowed, every ls or attach made the engine read its whole
    journal again (1.5 s of its CPU per ls at 140k rows). Now the server folds as events come."""
    run_dir = tmp_path / "run"
    buffer = E.EventBuffer(maxlen=1000)
    srv = ControlServer(Standin(run_dir, buffer))
    write_run(run_dir, 20_000, buffer=buffer, finish=False)
    srv.start()
    opened: list[str] = []
    real_open = builtins.open

    def spy(file, *a, **kw):
        opened.append(str(file))
        return real_open(file, *a, **kw)

    srv.history()  # the first fold caught up (from the journal: the server started late)
    monkeypatch.setattr(builtins, "open", spy)
    try:
        for _ in range(3):
            session = RemoteSession(run_dir, connect_timeout=30)
            session.start()
            assert fold(session.events.read(0)[0]).step == 20_000
            session.detach()
    finally:
        monkeypatch.undo()
        srv.close()
    assert not [p for p in opened if p.endswith(("events.jsonl", "metrics.csv", "events.csv"))], opened


class SlowHistory:
    """A control socket that sends one old event, holds the rest of the history until told, then
    says where it ends and sends a live event."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / SOCKET_NAME
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with address(self.path) as addr:
            self.listener.bind(addr)
        self.listener.listen(1)
        self.release, self.done = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @staticmethod
    def line(ev) -> bytes:
        return (E.to_json(ev) + "\n").encode()

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        old = E.CommandRejected(1.0, 1, 5, command_id=7, command="SetLearningRate", reason="four minutes ago")
        conn.sendall(self.line(old))
        self.release.wait(60)
        conn.sendall(b'{"type":"HistoryEnd"}\n')
        live = E.CommandRejected(2.0, 1, 9, command_id=8, command="SetMode", reason="just now")
        conn.sendall(self.line(live))
        self.done.wait(60)  # keep the connection until the test ends
        conn.close()


async def test_an_old_event_is_never_taken_for_a_live_one_however_slow_the_history(tmp_path):
    """Bug: when an attach's history took longer than 5 s, the dashboard popped a 'rejected'
    toast for a command rejected minutes before. Replayed events now never toast or act."""
    from deeptui.tui.app import DeeptuiApp
    from tests.pilot import until

    run_dir = tmp_path / "run"
    write_run(run_dir, 10, finish=False)
    server = SlowHistory(run_dir)
    session = RemoteSession(run_dir, connect_timeout=0.2)  # the history outlasts the wait for it
    app = DeeptuiApp(session, attached=True)
    toasts: list[str] = []
    app.notify = lambda message, title="", **kw: toasts.append(title)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: any("four minutes ago" in t for _, t in app.view.log), what="the old event")
            server.release.set()
            await until(pilot, lambda: any("just now" in t for _, t in app.view.log), what="the live event")
    finally:
        server.release.set()
        session.detach()
        server.done.set()
    assert toasts == ["SetMode rejected"]


def test_attach_headless_starts_from_a_summary_line_and_the_last_rows(tmp_path):
    """Bug: attach --headless printed the whole history (199,584 lines, 26.8 s) before the
    first live line. Now: one line for the run so far, the last N rows (--history N), then live."""
    import io

    from deeptui.tui.attach import attach_headless
    from deeptui.tui.headless import HeadlessPrinter

    run_dir = tmp_path / "run"
    buffer = E.EventBuffer()
    write_run(run_dir, 20_000, buffer=buffer, finish=False, metrics=False)
    for step in (20_001, 20_002):  # told, not yet flushed to events.jsonl (it is, every 2 s)
        buffer.append(Row(step * 0.01, 67, step, 0.5, 0.5, 0.05).event())
    srv = ControlServer(Standin(run_dir, buffer)).start()
    out = io.StringIO()
    session = RemoteSession(run_dir, connect_timeout=30)
    session.start()

    def go_on() -> None:  # once the history is told: a live row, then the end
        while "the last rows" not in out.getvalue() or len(out.getvalue().splitlines()) < 4:
            session.wait_finished(0.05)
        live = dict(optimizer="sgd", frozen=False, mode="train", lr=0.1)
        buffer.append(
            E.StepMetrics(300.0, 67, 20_003, loss=0.5, accuracy=0.5, samples_per_s=1.0, samples_seen=1, **live)
        )
        buffer.append(E.StateChanged(301.0, 67, 20_003, state="finished", optimizer_params="", **live))
        buffer.append(E.Finished(301.0, 67, 20_003, state="finished", run_dir=str(run_dir)))

    threading.Thread(target=go_on, daemon=True).start()
    try:
        code = attach_headless(session, HeadlessPrinter(out=out, summary=False), history=3)
    finally:
        srv.close()
    lines = out.getvalue().splitlines()
    assert code == 0 and len(lines) == 6, lines
    assert lines[0].startswith(f"deeptui: attached to {run_dir}: running, epoch 67/67, step 20,002, loss ")
    assert "best test error 0.10% (epoch 4)" in lines[0]
    assert [line.split()[3] for line in lines[1:5]] == ["20000", "20001", "20002", "20003"]
    assert lines[5].startswith("deeptui: finished")


def redraw_cost(points: int) -> float:
    """CPU seconds of one loss and accuracy plot of a view with `points` training rows (median of 5)."""
    import statistics
    import time
    from types import SimpleNamespace

    from deeptui.tui.plots import accuracy_plot, loss_plot

    view = RunView()
    ev = SimpleNamespace(time_s=0.0, epoch=1, accuracy=0.5, samples_per_s=1.0, train_s=0.0, samples_seen=0)
    for i in range(1, points + 1):
        ev.step, ev.loss, ev.time_s, ev.train_s, ev.samples_seen = i, 2.0 / (1 + i / 1e4), i * 0.01, i * 0.01, 32 * i
        view.curves.add_train(ev)
    costs = []
    for _ in range(5):
        t = time.thread_time()
        loss_plot(view, 100, 20)
        accuracy_plot(view, 100, 12)
        costs.append(time.thread_time() - t)
    return statistics.median(costs)


def test_a_redraw_at_a_million_points_costs_what_it_costs_at_a_thousand():
    """Bug: a redraw took 47 ms at 1k points, 380 ms at 100k, 5.9 s at 1M, and the plots froze.
    Now the plots read the run's Lod, whose size is bounded: the cost follows the plot's size."""
    small, large = redraw_cost(1_000), redraw_cost(1_000_000)
    assert large < 4 * small + 0.05, (small, large)


def compare_app_of(rows: int):
    """A compare dashboard (on stand-in sessions) whose two runs have told `rows` training rows
    each, their loss falling towards 0.5 and 1.5; the app is not running: its parts are read."""
    from deeptui.engine.compare import variants
    from deeptui.engine.config import load_config
    from deeptui.tui.compare_app import CompareApp
    from tests.conftest import ROOT
    from tests.fake import FakeSession

    cfg = load_config(
        str(ROOT / "presets" / "compare_batch_size.toml"), ['run.compare={ "data.batch_size" = [20, 100] }']
    )
    app = CompareApp(variants(cfg), lambda one: FakeSession(one, []), key="data.batch_size")
    for run, floor in enumerate((0.5, 1.5)):
        app.index = run  # as the next run's start sets it
        for i in range(1, rows + 1):
            app.on_live_event(
                E.StepMetrics(i * 0.01, 1, i, loss=floor + 1 / (1 + i / 1000), accuracy=0.5, lr=0.1, optimizer="sgd",
                              frozen=False, mode="train", samples_per_s=1.0, samples_seen=32 * i)
            )  # fmt: skip
    return app


def overlay_cost(rows: int) -> float:
    """CPU seconds of one redraw of the compare dashboard's overlay of two runs (median of 5)."""
    import statistics
    import time

    plot = next(p for p in compare_app_of(rows).plots() if p.id == "compare")
    costs = []
    for _ in range(5):
        t = time.thread_time()
        plot.build(100, 14)
        costs.append(time.thread_time() - t)
    return statistics.median(costs)


def test_the_compare_overlay_redraws_a_long_series_at_the_cost_of_a_short_one():
    """Bug: the compare dashboard kept every training row of every run and its overlay scanned
    them all at each redraw: 10 ms at 1k rows a run, 750 ms at 1M. Now each run's rows are in a
    Lod and the overlay bins to the plot's width: the cost follows the plot's size."""
    small, large = overlay_cost(1_000), overlay_cost(200_000)
    assert large < 2 * small + 0.03, (small, large)


def test_the_compare_overlay_of_long_runs_is_bounded_and_ends_at_each_runs_last_row(monkeypatch):
    """The overlay of two 5,000-row runs holds a bounded curve per run (not every row), and what it
    draws still ends at each run's last row, as the runs panel says."""
    from deeptui.engine.lod import BUCKETS, RAW
    from deeptui.engine.state import RunState
    from deeptui.tui import plots
    from deeptui.tui.compare_app import runs_panel

    rows = 5_000
    app = compare_app_of(rows)
    drawn = []
    real = plots.figure

    def recording(width, height):  # what the overlay hands plotext, run by run
        fig = real(width, height)
        plot = fig.plot
        fig.plot = lambda x, y, **kw: drawn.append((list(x), list(y))) or plot(x, y, **kw)
        return fig

    monkeypatch.setattr(plots, "figure", recording)
    next(p for p in app.plots() if p.id == "compare").build(100, 14)
    finals = [floor + 1 / (1 + rows / 1000) for floor in (0.5, 1.5)]
    assert len(drawn) == 2
    for (x, y), final in zip(drawn, finals):
        assert x[-1] == 32 * rows and abs(y[-1] - final) < 1e-3, (x[-1], y[-1], final)
        assert len(x) <= 200  # twice the plot's width
    assert all(len(curve.x) <= 2 * RAW + 2 * BUCKETS for _, curve in app.curves())
    panel = runs_panel(
        [label for label, _ in app.runs], [RunState.FINISHED] * 2, app.losses, 1, RunState.FINISHED
    ).plain
    assert f"{finals[0]:.3f}" in panel and f"{finals[1]:.3f}" in panel


# ---- the clock, the files' modes ------------------------------------------------------------------


def test_time_s_keeps_milliseconds_for_a_year_long_run(tmp_path):
    """time_s had 6 significant digits in the CSV files (1 s after 27.8 hours, 10 s after 11.6
    days). The journal, the socket's lines, the CSV files and a fold keep the millisecond."""
    from deeptui.engine.metrics import Reporter
    from deeptui.engine.remote.wire import decode_event, encode_event
    from deeptui.engine.runlog import RunLog

    year = 365 * 86400.0
    log = RunLog(tmp_path, flush_seconds=2.0)
    report = Reporter(log, E.EventBuffer(), lambda: (year + 0.1234567, 1, 10))
    ev = report.emit(E.Note, kind="max_steps", detail="a year later")
    row = E.StepMetrics(year + 0.5, 1, 11, loss=0.5, accuracy=0.5, lr=0.1, optimizer="sgd", frozen=False,
                        mode="train", samples_per_s=1.0, samples_seen=11)  # fmt: skip
    report.publish(row)
    log.close()
    assert ev.time_s == 31_536_000.123  # stamped to the millisecond
    journal = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [j["time_s"] for j in journal] == [31_536_000.123, 31_536_000.5]
    assert decode_event(json.loads(encode_event(ev))).time_s == 31_536_000.123  # the socket's line
    with open(tmp_path / "metrics.csv", newline="") as f:
        assert next(r for r in csv.DictReader(f))["time_s"] == "31536000.500"
    with open(tmp_path / "events.csv", newline="") as f:
        assert [r["time_s"] for r in csv.DictReader(f)] == ["31536000.123"]
    assert fold([ev, row]).time_s == 31_536_000.5


def test_every_file_of_a_run_directory_is_the_owners_alone(make_engine, tmp_path):
    """Bug: system.csv, deeptui.log (and TensorBoard's files, screenshots) were created 0644."""
    from deeptui.engine.runlog import RunLog, cut_history_after, open_run_file
    from tests.conftest import tiny_config
    from tests.fake import FakeSession

    eng = make_engine("log.tensorboard=true", "log.layers_interval=2", "run.max_steps=8", "log.interval=2")
    assert eng.run() == "finished"
    run_dir = eng.run_dir
    log = RunLog(run_dir, flush_seconds=2.0)  # the machine's readings: system.csv at its first row
    log.record(E.SystemStats(9.0, 1, 8, cpu_pct=100.0, rss_mb=500.0))
    log.close()
    cut_history_after(run_dir, 4)  # a rewind's orphaned rows
    open_run_file(run_dir, "deeptui.log").close()  # --detach's output
    from deeptui.tui.app import DeeptuiApp

    app = DeeptuiApp(FakeSession(tiny_config(), [], run_dir=run_dir))
    app.notify = lambda *a, **kw: None
    app.save_screenshot = lambda filename, path, fmt: str(
        Path(path, "shot.svg").write_text("<svg/>") and Path(path, "shot.svg")
    )
    app.deliver_screenshot()  # ctrl+s
    names = {p.name for p in run_dir.iterdir()}
    assert {"system.csv", "metrics.csv.orphaned", "deeptui.log", "shot.svg", "last.pt"} <= names
    assert any(n.startswith("events.out.tfevents.") for n in names)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in run_dir.rglob("*")}
    assert {n: m for n, m in modes.items() if m != oct(0o600)} == {}
    assert oct(run_dir.stat().st_mode & 0o777) == oct(0o700)


# ---- saying what costs ----------------------------------------------------------------------------


def test_fp16_on_a_cpu_without_fast_fp16_kernels_says_so_at_the_start(make_engine, monkeypatch):
    """fp16 autocast on a CPU was 6x slower than fp32 (4 against 26 samples/s) and nothing said so."""
    from deeptui.engine import device

    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx2", "fma"})
    eng = make_engine("perf.amp='fp16'", "run.max_steps=1")
    assert eng.run() == "finished"
    said = [e.message for e in eng.events.read(0)[0] if isinstance(e, E.Warning)]
    assert any("perf.amp = 'fp16'" in m and "slower than fp32" in m and "perf.amp = 'off'" in m for m in said), said
    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx512_fp16"})  # a CPU with native fp16: nothing to say
    assert device.amp_note(eng.device, "fp16") == "" and device.amp_note(eng.device, "bf16") == ""


def test_detach_says_at_once_what_it_waits_for_and_the_pid(tmp_path, monkeypatch, capsys):
    """--detach waited for the run's socket (26 s under load) with nothing printed meanwhile."""
    from deeptui.tui import detach
    from deeptui.tui.cli import build_parser

    seen: list[str] = []

    class Child:
        pid = 4242

        def poll(self):
            seen.append(capsys.readouterr().out)  # what the user sees while the child starts
            return None

    monkeypatch.setattr(detach.subprocess, "Popen", lambda *a, **kw: Child())
    from deeptui.tui.request import resolve

    argv = ["quickstart", "--log-dir", str(tmp_path), "--detach"]
    assert detach.launch_detached(resolve(build_parser().parse_args(argv), argv), wait_s=0.3) == 1
    assert seen and "pid 4242" in seen[0] and "waiting up to 0s for its control socket control.sock" in seen[0]
    assert "torch is imported" in seen[0]


async def test_show_draws_a_long_run_first_and_fills_it_in(tmp_path, monkeypatch):
    """Bug: show read every row (1M rows: 67 s, 1.8 GB) before the first frame. Now it draws the
    run's start and end at once and the whole of it once read, from a thread."""
    from deeptui.engine import history
    from deeptui.tui.app import DeeptuiApp
    from tests.pilot import until

    truth = write_run(tmp_path / "run", 100_000, metrics=False)
    whole = threading.Event()
    real = history.replay_run

    def slow_replay(run_dir, progress=None):
        whole.wait(60)  # the whole history waits until the test has seen the first frame
        return real(run_dir, progress)

    monkeypatch.setattr(history, "replay_run", slow_replay)
    session = HistorySession(tmp_path / "run", progressive=True)
    app = DeeptuiApp(session)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.view.step == truth.steps, what="the first frame")
            assert app.view.epochs == truth.epochs and session.generation == 0  # the start and the end
            assert app.view.curves.train.lod.points < truth.steps  # not all of it yet
            assert any("reading the rest" in text for _, text in app.view.log)
            whole.set()
            await until(pilot, lambda: session.generation == 1, what="the whole history")
            await until(pilot, lambda: app.view.curves.train.lod.points == truth.steps, what="the view filled in")
            assert app.view.best_test == truth.best
            assert not any("reading the rest" in text for _, text in app.view.log)
    finally:
        whole.set()


async def test_show_of_several_long_runs_draws_each_first_and_fills_them_in(tmp_path, monkeypatch):
    """Bug: show of several runs read every event of every run before the first frame (two
    1M-row runs: 18 s). Now it draws each run's start and end at once and fills each in, from a
    thread, as show of one run does; once read, its panels are what a full read gives."""
    from deeptui.engine import history
    from deeptui.tui import show
    from tests.pilot import text_of, until

    monkeypatch.setattr(history, "QUICK_HEAD", 16 * 1024)  # runs longer than the quick part, made quickly
    monkeypatch.setattr(history, "QUICK_TAIL", 64 * 1024)
    dirs = [tmp_path / "run-a", tmp_path / "run-b"]
    truths = [write_run(d, 20_000, best_epoch=best, metrics=False) for d, best in zip(dirs, (4, 30))]
    whole = threading.Event()
    real = history.replay_run

    def slow_replay(run_dir, progress=None):
        if not whole.is_set():  # a whole history read before the first frame is the bug
            assert threading.current_thread() is not threading.main_thread(), "read whole before the first frame"
        whole.wait(60)  # each whole history waits until the test has seen the first frame
        return real(run_dir, progress)

    monkeypatch.setattr(history, "replay_run", slow_replay)
    apps = []
    monkeypatch.setattr(show, "front_end", lambda headless: "dashboard")  # as on a terminal
    monkeypatch.setattr(show.ShowApp, "run", lambda app: apps.append(app))
    assert show.show_main([str(d) for d in dirs]) == 0
    (app,) = apps
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: text_of(app, "#run").count("20000 steps") == 2, what="the first frame")
            assert [s.generation for s in app.sessions] == [0, 0]  # neither is read whole yet
            assert all(v.curves.train.lod.points < t.steps for v, t in zip(app.views, truths))
            whole.set()
            await until(pilot, lambda: all(s.generation == 1 for s in app.sessions), what="the whole histories")
            await until(pilot, lambda: all(v.curves.train.lod.points == 20_000 for v in app.views), what="filled in")
            await pilot.pause()
            full = [HistorySession(d) for d in dirs]
            views = [show.view_of(s) for s in full]
            assert [v.best_test for v in app.views] == [v.best_test for v in views] == [t.best for t in truths]
            assert text_of(app, "#run") == show.runs_table(full, views, 0).plain
            for which in (0, 1):
                overlay = [(s.run_dir.name, show.curves(v, "step")[which]) for s, v in zip(full, views)]
                assert app.overlay(which) == overlay
    finally:
        whole.set()


# ---- bounded memory ---------------------------------------------------------------------------------


def test_a_live_runs_memory_for_its_front_ends_is_flat_after_warm_up(tmp_path):
    """Bug: a live run's engine grew from 944 MB to 1,313 MB over 250,000 rows (about 1.5 KB a
    row). Everything it keeps for its front ends is bounded now: the event buffer, the control
    server's replay, a headless printer's view. Sampled in a process of its own."""
    import subprocess
    import sys

    code = (
        "import json, sys; from pathlib import Path; from tests.longrun import live_rss; "
        "print(json.dumps(live_rss(Path(sys.argv[1]), 80_000, 20_000)))"
    )
    from tests.conftest import ROOT

    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    samples = dict(json.loads(out.stdout.splitlines()[-1]))
    warm = samples[40_000]  # the event buffer is full by then
    assert max(samples[n] for n in samples if n >= 40_000) - warm < 8, samples


def test_a_history_longer_than_the_clients_buffer_is_kept_whole(tmp_path):
    """Every event that is not a training row comes in full: a run with more of them than the
    client's buffer keeps of live events (25,000 notes here) still starts with its RunStarted."""
    run_dir = tmp_path / "run"
    buffer = E.EventBuffer(maxlen=None)
    write_run(run_dir, 10, buffer=buffer, finish=False, metrics=False)
    for i in range(25_000):
        buffer.append(E.Note(1.0, 1, 10, kind="note", detail=f"note {i}"))
    srv = ControlServer(Standin(run_dir, buffer)).start()
    try:
        session = RemoteSession(run_dir, connect_timeout=60)
        session.start()
        history = session.events.read(0)[0]
        session.detach()
    finally:
        srv.close()
    assert isinstance(history[0], E.RunStarted) and sum(isinstance(e, E.Note) for e in history) == 25_000


def test_a_view_that_falls_behind_the_bounded_buffer_misses_no_event(make_engine):
    """Bug: the dashboard, the headless printer and each client's writer read the engine's bounded
    buffer; one that fell more than its length behind (a stalled screen, a slow client) skipped the
    oldest events in silence: steps, test rows, commands' answers, state changes. Now what the
    buffer dropped comes from events.jsonl, in order; where no journal is at hand, a Warning says
    how many were not read."""
    import io

    import pytest

    from deeptui.engine import commands as C
    from deeptui.engine.feed import Feed, feed_of
    from deeptui.tui.controller import SessionController
    from deeptui.tui.headless import HeadlessPrinter, print_events
    from deeptui.tui.view import RunView

    eng = make_engine("run.epochs=3", "log.interval=1", "log.flush_seconds=0.001")
    eng.report.events = E.EventBuffer(maxlen=20)
    eng.send(C.SetLearningRate(lr=0.02))
    controller = SessionController(eng, RunView())  # a dashboard whose screen stalled for the whole run
    eng.run()
    assert eng.events.dropped == 0 and len(eng.events) > 40  # nobody has read yet: 20 are left
    controller.read()
    v = controller.view
    assert v.curves.train_loss.x == list(range(1, eng.train.step + 1))  # every step once, in order
    assert [e.epoch for e in v.curves.tests["eval"]] == [1, 2, 3]
    assert v.finished and v.state == "finished" and v.lr == pytest.approx(0.02)
    assert any("lr 0.05 -> 0.02" in str(line) for line in v.log)
    assert controller.feed.filled > 0 and controller.feed.lost == 0

    out = io.StringIO()  # the headless printer, as late
    print_events(eng, HeadlessPrinter(out=out, summary=False))
    steps = [
        int(line.split()[3]) for line in out.getvalue().splitlines() if line.startswith("epoch ") and " step " in line
    ]
    assert steps == list(range(1, eng.train.step + 1))

    blind = Feed(eng.events)  # a copy with no journal: the gap is told, not passed over
    events = blind.read()
    assert isinstance(events[0], E.Warning) and "came faster than this view read them" in events[0].message
    assert blind.lost == len(eng.events) - 20 and feed_of(eng).journal is eng.report.log
