"""Long runs: what attach, show, ls, export, a live run's memory and a plot redraw cost at 10k,
100k and 1M training rows, and how each grows with the run (the slope of log cost against log
rows: 0 is flat, 1 is linear).

  python benchmarks/history.py                         # 10k, 100k, 1M rows
  python benchmarks/history.py --rows 10000 100000     # quicker

Each run is made up (tests/longrun.py: a row per step, a test row, a checkpoint and a state change
every 300 rows, a machine reading every 1,000, an lr change every 10,000). A live run is stood in
for by a process that serves the run's control socket with the replay its server would have
folded as the events came (engine.replay), so that attach and ls are measured against it as
against a training process: the client's wall time and the serving process's CPU seconds.

- attach: connect, the history (HistoryEnd), folded into a view: the first data
- engine CPU / attach, / ls: the serving process's CPU for one attach, one `deeptui ls`
- show first frame: a single run's dashboard's first look (start and end of events.jsonl) and a plot
- show all: the whole history folded (show --headless, and what the dashboard fills in)
- export: `deeptui export --tensorboard` in a process of its own: rows/s and peak RSS
- live RSS: growth of a live run's memory for its front ends after warm-up (the event buffer, the
  server's replay, a headless printer's view: tests/longrun.live_rss), from 40% to 100% of the rows
- redraw: the CPU of one loss and one accuracy plot of a view holding every row
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from deeptui.engine.history import HistorySession  # noqa: E402
from deeptui.engine.remote.client import RemoteSession  # noqa: E402
from deeptui.engine.remote.wire import SOCKET_NAME  # noqa: E402
from deeptui.tui.plots import PlotOptions, loss_plot  # noqa: E402
from deeptui.tui.runs import list_runs  # noqa: E402
from deeptui.tui.view import RunView  # noqa: E402
from tests.longrun import write_run  # noqa: E402
from tests.test_long_runs import redraw_cost  # noqa: E402


def serve(run_dir: str) -> None:
    """The stand-in for a live run: its control server, with the replay it would have folded."""
    from deeptui.engine import events as E
    from deeptui.engine.remote.server import ControlServer
    from deeptui.engine.replay import replay_file
    from tests.longrun import Standin

    server = ControlServer(Standin(Path(run_dir), E.EventBuffer()))
    server.replay = replay_file(Path(run_dir) / "events.jsonl")
    server._track(server.replay.events())  # the status its thread would have followed
    last = server.replay.digest().last
    server.status.update(epoch=last["epoch"], step=last["step"], loss=last["loss"], state="running")
    server.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the benchmark closes it
    server.close()


def cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def fold(events) -> RunView:
    view = RunView()
    for ev in events:
        view.apply(ev)
    return view


def settle(pid: int, quiet: float = 0.3) -> float:
    """The serving process's CPU once it has stopped spending (its writer threads done)."""
    last = cpu(pid)
    while True:
        time.sleep(quiet)
        now = cpu(pid)
        if now - last < 0.005:
            return now
        last = now


def measure(rows: int, work: Path) -> dict[str, float]:
    run_dir = work / f"run-{rows}"
    write_run(run_dir, rows, metrics=False, finish=False)  # a live run: no end yet
    out: dict[str, float] = {}
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(run_dir)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert server.stdout.readline().strip() == b"ready"
        base = settle(server.pid)
        t = time.perf_counter()
        session = RemoteSession(run_dir, connect_timeout=120)
        session.start()
        view = fold(session.events.read(0)[0])
        out["attach first data s"] = time.perf_counter() - t
        assert view.step == rows, (view.step, rows)
        session.detach()
        after = settle(server.pid)
        out["engine CPU / attach s"] = after - base
        t = time.perf_counter()
        info = next(i for i in list_runs(work) if i.path == run_dir.resolve())  # deeptui ls --log-dir WORK
        out["ls s"] = time.perf_counter() - t
        assert info.live and info.step == rows, info
        out["engine CPU / ls s"] = settle(server.pid) - after
    finally:
        server.stdin.close()
        server.wait(60)
    (run_dir / SOCKET_NAME).unlink(missing_ok=True)
    t = time.perf_counter()
    session = HistorySession(run_dir, progressive=True)
    view = fold(session.events.read(0)[0])
    loss_plot(view, 100, 20, PlotOptions())
    out["show first frame s"] = time.perf_counter() - t
    t = time.perf_counter()
    fold(HistorySession(run_dir).events.read(0)[0])
    out["show all s"] = time.perf_counter() - t
    code = (  # after a first export of 10 rows: what the rows cost, not importing TensorBoard
        "import resource, sys, time; from pathlib import Path; from deeptui.engine.tensorboard import export_run; "
        "from tests.longrun import write_run; write_run(Path(sys.argv[2] + '-warm'), 10, metrics=False); "
        "export_run(Path(sys.argv[2] + '-warm'), Path(sys.argv[2] + '-warm-tb'), {}); "
        "t = time.perf_counter(); export_run(Path(sys.argv[1]), Path(sys.argv[2]), {}); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(run_dir), str(work / f"tb-{rows}")], cwd=ROOT, capture_output=True, text=True
    )
    seconds, peak = (float(v) for v in done.stdout.split())
    out["export rows/s"] = rows / seconds
    out["export peak RSS MB"] = peak
    code = "import json, sys; from pathlib import Path; from tests.longrun import live_rss; " + (
        "print(json.dumps(live_rss(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[2]) // 10)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(work / f"live-{rows}"), str(rows)], cwd=ROOT, capture_output=True, text=True
    )
    samples = dict(json.loads(done.stdout.splitlines()[-1]))
    ns = sorted(samples)
    warm = ns[len(ns) * 4 // 10 - 1]
    out["live RSS MB"] = samples[ns[-1]]
    out["live RSS growth MB"] = samples[ns[-1]] - samples[warm]
    out["redraw ms"] = 1000 * redraw_cost(rows)
    return out


def growth(rows: list[int], values: list[float]) -> str:
    """The slope of log(value) against log(rows) between the smallest and the largest run."""
    a, b = values[0], values[-1]
    if a <= 0 or b <= 0:
        return "-"
    slope = math.log(b / a) / math.log(rows[-1] / rows[0])
    return f"{slope:+.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    os.environ.setdefault("XDG_STATE_HOME", tempfile.mkdtemp())  # ls finds no one else's runs
    results = []
    with tempfile.TemporaryDirectory() as work:
        for rows in args.rows:
            results.append(measure(rows, Path(work)))
            print(f"{rows:>9,} rows done", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores; " + ", ".join(f"{r:,}" for r in args.rows) + " rows")
    names = list(results[0])
    width = max(len(n) for n in names)
    print(f"{'':<{width}}  " + "".join(f"{r:>12,}" for r in args.rows) + "   growth")
    for name in names:
        values = [r[name] for r in results]
        cells = "".join(f"{v:>12.3f}" if v < 100 else f"{v:>12,.0f}" for v in values)
        print(f"{name:<{width}}  {cells}   {growth(args.rows, values)}")
    print("growth: the slope of log(cost) against log(rows) from the smallest run to the largest (0 flat, 1 linear)")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
