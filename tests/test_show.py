"""`deeptui show`: finished runs reopened from their CSV files, alone or side by side; the summary
a run leaves behind; `attach` on a run that has ended."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import tomli_w

from deeptui.engine.config import load_config
from deeptui.engine.history import HistorySession
from deeptui.tui.app import DeeptuiApp
from deeptui.tui.cli import main
from deeptui.tui.show import ShowApp
from tests.conftest import TINY
from tests.pilot import text_of, until
from tests.test_snapshots import settle

METRICS = "time_s,epoch,step,split,loss,accuracy,lr,optimizer,frozen,mode,samples_per_s\n"
EVENTS = "time_s,epoch,step,event,detail\n"


def fake_run(folder: Path, lr: float, end: str = "finished", steps: int = 40) -> Path:
    """A run directory as deeptui writes it, with fixed numbers (snapshots need them)."""
    folder.mkdir(parents=True)
    cfg = load_config(None, [f"optimizer.lr={lr}", "run.name='tiny'"], embedded=TINY)
    (folder / "config.toml").write_text(tomli_w.dumps(cfg.to_dict()))
    rows, events = (
        [METRICS],
        [EVENTS, "0.1,1,0,start,preset=tiny device=cpu optimizer=sgd lr=0.05 frozen=frozen parameters=4242\n"],
    )
    for step in range(4, steps + 1, 4):
        loss = 2.3 * math.exp(-step * lr) + 0.2
        rows.append(
            f"{step / 10:.1f},{(step - 1) // 16 + 1},{step},train,{loss:.4f},{1 - loss / 2.6:.4f},{lr},sgd,"
            f"{'true' if step <= 16 else 'false'},train,640.0\n"
        )
        if step % 16 == 0:
            rows.append(
                f"{step / 10:.1f},{step // 16},{step},test,{loss + 0.1:.4f},{1 - loss / 2.4:.4f},{lr},sgd,false,eval,\n"
            )
            events.append(f"{step / 10:.1f},{step // 16},{step},checkpoint,last: {folder / 'last.pt'}\n")
    events.append("1.7,2,17,schedule_unfreeze,features trainable at epoch 2\n")
    events.append("2.1,2,21,applied:SetLearningRate,lr 0.05 -> 0.1\n")
    if end:
        events.append(f"{steps / 10:.1f},3,{steps},{end},\n")
    (folder / "metrics.csv").write_text("".join(rows))
    (folder / "events.csv").write_text("".join(events))
    return folder


def test_show_headless_prints_each_runs_summary_and_the_differences(tmp_path, capsys):
    a, b = fake_run(tmp_path / "run-a", 0.05), fake_run(tmp_path / "run-b", 0.1, end="")
    assert main(["show", str(a), str(b), "--headless"]) == 0
    out = capsys.readouterr().out
    assert "run finished: tiny" in out and "run interrupted: tiny" in out
    assert "test error: final" in out and "best" in out and f"run directory: {a}" in out
    assert "config differences:" in out and "optimizer.lr" in out and "0.05 | 0.1" in out


def test_show_of_a_missing_run_is_a_one_line_exit_2(tmp_path, capsys):
    assert main(["show", str(tmp_path / "nope"), "--headless"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a deeptui run directory" in err


async def test_one_finished_run_opens_read_only_with_its_plots_markers_and_events(tmp_path):
    run = fake_run(tmp_path / "run-a", 0.05)
    app = DeeptuiApp(HistorySession(run))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "finished" in text_of(app, "#header"), what="the header")
        assert "step 40" in text_of(app, "#run") and "4,242 parameters" not in text_of(app, "#run")
        assert app.view.markers == [(17, "freeze"), (21, "lr")]
        assert "SetLearningRate: lr 0.05 -> 0.1" in text_of(app, "#log")
        await pilot.press("o")
        await until(pilot, lambda: "the run has finished" in text_of(app, "#log"), what="o says why")
        await pilot.press("q")


async def test_several_runs_overlay_and_switch(tmp_path, snap_compare):
    runs = [HistorySession(fake_run(tmp_path / f"run-{x}", lr)) for x, lr in (("a", 0.05), ("b", 0.1))]
    app = ShowApp(runs)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "run-a" in text_of(app, "#run"), what="the runs table")
        assert "optimizer.lr" in text_of(app, "#timing")
        await pilot.press("x")
        assert "x: samples" in str(app.dashboard.query_one("#loss").border_title)
        await pilot.press("n")
        await until(pilot, lambda: app.session is runs[1], what="the next run")
        await pilot.press("q")


def test_show_several_runs_snapshot(snap_compare):
    import shutil
    import tempfile

    fixed = Path(tempfile.gettempdir()) / "deeptui-show-snapshot"  # the same paths in every run
    shutil.rmtree(fixed, ignore_errors=True)
    runs = [HistorySession(fake_run(fixed / f"run-{x}", lr)) for x, lr in (("a", 0.05), ("b", 0.1))]

    assert snap_compare(ShowApp(runs), terminal_size=(100, 30), run_before=settle)


@pytest.mark.e2e
def test_attach_on_a_finished_run_shows_it_and_a_headless_run_ends_with_its_summary(tmp_path, capsys):
    assert (
        main(
            [
                "quickstart",
                "--headless",
                "--log-dir",
                str(tmp_path),
                "--device",
                "cpu",
                "--max-steps",
                "6",
                "--set",
                "log.interval=2",
                "--set",
                "data.train_size=128",
                "--set",
                "data.test_size=32",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    (run_dir,) = tmp_path.iterdir()
    assert out[-1] == f"run directory: {run_dir}" and any(line.startswith("test error: final") for line in out)
    assert any(line.startswith("checkpoints: best.pt") and "last.pt" in line for line in out), out
    assert main(["attach", str(run_dir), "--headless"]) == 0
    captured = capsys.readouterr()
    assert "is not running; showing its logs" in captured.err and "run finished: quickstart" in captured.out
