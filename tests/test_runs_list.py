"""Where runs live: `deeptui ls` and `attach` find the runs of --log-dir, of $DEEPTUI_LOG_DIR and
the ones started from other folders; ls fits its columns to the terminal."""

from __future__ import annotations

import os
from pathlib import Path

from deeptui.tui.cli import main
from deeptui.tui.runs import RunInfo, ls_table, remembered
from tests.conftest import ROOT

QUICK = str(ROOT / "presets" / "quickstart.toml")
TINY = [
    "--headless",
    "--max-steps",
    "2",
    "--set",
    "log.interval=1",
    "--set",
    "data.train_size=128",
    "--set",
    "data.test_size=32",
    "--device",
    "cpu",
]


def test_ls_finds_a_run_started_from_another_folder(tmp_path, monkeypatch, capsys):
    elsewhere, here = tmp_path / "project", tmp_path / "home"
    elsewhere.mkdir(), here.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main([QUICK, *TINY]) == 0  # into ./runs of that folder
    monkeypatch.chdir(here)
    capsys.readouterr()
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "quickstart-" in out and "finished" in out and "project/runs" in out
    assert remembered()[0].parent == (elsewhere / "runs").resolve()


def test_ls_with_no_runs_says_so_and_succeeds(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["ls"]) == 0
    assert capsys.readouterr().out.strip() == "no runs"
    assert main(["ls", "--log-dir", str(tmp_path / "nowhere")]) == 0


def test_deeptui_log_dir_is_where_runs_go_and_where_ls_looks(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEEPTUI_LOG_DIR", str(tmp_path / "all-runs"))
    monkeypatch.chdir(tmp_path)
    assert main([QUICK, *TINY]) == 0
    assert len(list((tmp_path / "all-runs").iterdir())) == 1 and not (tmp_path / "runs").exists()
    (Path(os.environ["XDG_STATE_HOME"]) / "deeptui" / "runs.txt").unlink()  # only the log dir now
    capsys.readouterr()
    assert main(["ls"]) == 0
    assert "quickstart-" in capsys.readouterr().out


def test_ls_columns_never_overflow_the_terminal():
    runs = [
        RunInfo(
            Path("/very/long/folder/name/" * 4) / ("a-preset-with-a-very-long-name-" * 3 + "20261201"),
            "interrupted",
            123,
            4567890,
            1.0e26,
            4242,
        ),
        RunInfo(Path("/runs/quickstart-20261201-120000"), "finished", 5, 470, 0.35),
    ]
    for width in (80, 100, 120):
        lines = ls_table(runs, width)
        assert all(len(line) <= width for line in lines), lines
    assert "1.000e+26" in lines[1] and "…" in lines[1]
