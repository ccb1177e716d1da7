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
    row = next(line for line in lines if "1.000e+26" in line)  # under its folder's line
    assert "…" in row and lines[lines.index(row) - 1].endswith("/")


def test_a_bad_line_in_the_run_list_is_skipped_and_named_once(tmp_path, monkeypatch, capsys):
    from deeptui.tui.runs import REMEMBERED, state_dir

    monkeypatch.chdir(tmp_path)
    listed = state_dir() / REMEMBERED
    listed.parent.mkdir(parents=True, exist_ok=True)
    listed.write_bytes(b"/no/such/run\n\xff\xfe bad \x00 line\nrelative/path\n")
    assert main([QUICK, *TINY]) == 0  # the run starts, trains and is listed
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "metrics.csv").is_file()
    capsys.readouterr()
    monkeypatch.chdir(ROOT)  # ls and attach find it through the list
    assert main(["ls"]) == 0 and main(["attach"]) == 2  # no live run: one line, not an internal error
    out, err = capsys.readouterr()
    assert run_dir.name in out and "internal error" not in err, err
    assert err.count(str(listed)) == 1 and "lines 2, 3" in err, err  # named once, with its file
    assert remembered()[0] == run_dir.resolve()


def test_a_log_dir_with_a_byte_that_is_not_utf8_is_listed_and_found(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    odd = os.fsdecode(b"logs-\xff")  # a Linux file name may hold any byte but / and NUL
    assert main([QUICK, *TINY, "--log-dir", odd]) == 0
    (run_dir,) = (tmp_path / odd).iterdir()
    assert remembered()[0] == run_dir.resolve()
    assert main([QUICK, *TINY, "--log-dir", "plain"]) == 0  # the next run is not broken by it
    monkeypatch.chdir(tmp_path / "plain")
    capsys.readouterr()
    assert main(["ls"]) == 0
    out, err = capsys.readouterr()
    assert out.count("finished") == 2 and "logs-" in out and err == "", (out, err)
