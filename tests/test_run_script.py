"""`deeptui run SCRIPT.py [ARGS...]`: a script of the user's own, with deeptui in front: the script's
watch() finds the run directory deeptui made through $DEEPTUI_RUN_DIR; its output goes to the run's
deeptui.log and a panel (plain lines without a terminal); the dashboard's keys steer it and q stops
it; `deeptui send` reaches it. Each test starts the script as a real child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deeptui.engine import events as E
from deeptui.engine.config import from_table
from deeptui.engine.history import read_run
from deeptui.tui.cli import main
from deeptui.tui.launch import Launch
from deeptui.tui.run_script import ScriptLaunch, ScriptProcess
from deeptui.tui.send import send_main
from tests.pilot import text_of, until

pytestmark = pytest.mark.e2e

SCRIPT = """
import sys, torch, deeptui
from torch import nn
print("hello from the script", sys.argv[1:])
torch.manual_seed(0)
model = nn.Linear(2, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
with deeptui.watch(model, opt, name="ignored", log_every=1) as run:
    print("watching", run.run_dir)
    while True:
        loss = model(torch.randn(4, 2)).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        if not run.step(loss, batch_size=4):
            break
print("the script ends", file=sys.stderr)
"""
DEEPTUI = [sys.executable, "-m", "deeptui"]


def script(tmp_path: Path, text: str = SCRIPT) -> Path:
    path = tmp_path / "train_mine.py"
    path.write_text(text)
    return path


def test_plain_lines_the_scripts_output_and_a_stop_sent_from_another_terminal(tmp_path):
    proc = subprocess.Popen(
        [*DEEPTUI, "run", "--log-dir", str(tmp_path / "runs"), str(script(tmp_path)), "--flag", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    seen = []
    for line in proc.stdout:  # the script's lines and the run's, as they come
        seen.append(line)
        if line.startswith("watching "):
            break
    run_dir = Path(seen[-1].split(" ", 1)[1].strip())
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.startswith("train_mine-")  # made by deeptui run
    assert send_main([str(run_dir), "stop"]) == 0
    rest, _ = proc.communicate(timeout=120)
    out = "".join(seen) + rest
    assert proc.returncode == 0, out
    assert "hello from the script ['--flag', '1']" in out
    assert "applied Stop: stopping at step" in out and "the script ends" in out
    log = (run_dir / "deeptui.log").read_text()
    assert "hello from the script" in log and "the script ends" in log  # the run's log keeps the output
    cfg, events, state = read_run(run_dir)
    assert state == "stopped" and cfg.run.kind == "watched" and cfg.run.name == "ignored"


def test_a_script_that_fails_before_it_watches_says_so(tmp_path, capsys):
    code = main(
        ["run", "--headless", "--log-dir", str(tmp_path / "runs"), str(script(tmp_path, "print('x'); 1 / 0\n"))]
    )
    out = capsys.readouterr()
    assert code == 1
    assert "ZeroDivisionError" in out.out  # the script's own traceback, as plain lines
    assert "ended (exit 1) before its deeptui.watch() served the run" in out.err


def test_a_missing_script_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.py")]) == 2
    assert "nope.py: no such script" in capsys.readouterr().err


async def test_the_dashboard_steers_the_script_and_q_stops_it(tmp_path):
    from deeptui.tui.script_app import ScriptApp

    run_dir = tmp_path / "runs" / "mine"
    run_dir.mkdir(parents=True)
    child = ScriptProcess(script(tmp_path), [], run_dir, interactive=True)
    launch = ScriptLaunch(from_table({"run": {"name": "mine", "kind": "watched"}}, "test"), child)
    app = ScriptApp(launch, output=child.tail)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: not isinstance(app.session, Launch) and app.view.step > 0, 120, "the run")
            await pilot.press("p")
            await until(pilot, lambda: app.view.state == "paused", 60, "paused")
            await pilot.press("plus")
            await until(pilot, lambda: app.view.lr == pytest.approx(0.2), 60, "lr x2")
            await pilot.press("s")
            await until(pilot, lambda: any(c.which == "last" for c in app.view.checkpoints.values()), 60, "saved")
            assert "hello from the script" in text_of(app, "#output")
            await pilot.press("q")
        assert child.wait() == 0  # the script saw run.step() return False and ended
    finally:
        child.stop()
    events = read_run(run_dir)[1]
    assert events[-1].state == "stopped" and (run_dir / "last.pt").is_file()
    applied = [e.command for e in events if isinstance(e, E.CommandApplied)]
    assert applied == ["Pause", "ScaleLearningRate", "SaveCheckpoint", "Stop"]
    assert os.environ.get("DEEPTUI_RUN_DIR") is None  # the variable was the child's only


async def test_a_quit_before_the_script_watches_stops_it_at_once(tmp_path):
    from deeptui.tui.script_app import ScriptApp

    run_dir = tmp_path / "runs" / "slow"
    run_dir.mkdir(parents=True)
    slow = script(tmp_path, "import time\nprint('loading a large data set', flush=True)\ntime.sleep(600)\n")
    child = ScriptProcess(slow, [], run_dir, interactive=True)
    app = ScriptApp(
        ScriptLaunch(from_table({"run": {"name": "slow", "kind": "watched"}}, "test"), child), output=child.tail
    )
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: "loading a large data set" in text_of(app, "#output"), 60, "the script's line")
            await pilot.press("q")
        assert child.proc.poll() is not None  # stopped by the quit, not left to sleep
    finally:
        child.stop()
    assert "loading a large data set" in (run_dir / "deeptui.log").read_text()
