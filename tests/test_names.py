"""Names carry (issue 21 item 6): the run names `deeptui ls` prints, or a unique prefix, work in
`show`, `attach`, `--resume` and `export`; `deeptui show` alone opens the newest run; `ls` tells when
each run started, how long it ran and its best test error, grouped by folder."""

from __future__ import annotations

import pytest

from deeptui.tui.cli import main
from tests.conftest import ROOT

QUICK = str(ROOT / "presets" / "quickstart.toml")
TINY = ["--headless", "--max-steps", "2", "--set", "log.interval=1", "--set", "data.train_size=64"]
TINY += ["--set", "data.test_size=16", "--set", "model.blocks=1", "--device", "cpu"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two finished runs in <folder>/runs, quickstart-* and quickstart_b-*, made once for the
    module (its own per-user state while it makes them)."""
    import os

    folder = tmp_path_factory.mktemp("names")
    here, state = os.getcwd(), os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(folder / "state")
    os.chdir(folder)
    try:
        assert main([QUICK, *TINY]) == 0
        second = ["--epochs", "1", "--max-steps", "0", "--set", "log.interval=4", "--set", "run.name='quickstart_b'"]
        assert main([QUICK, *TINY, *second]) == 0  # another name: two runs in one second have nested names
    finally:
        os.chdir(here)
        if state is None:
            del os.environ["XDG_STATE_HOME"]
        else:
            os.environ["XDG_STATE_HOME"] = state
    return folder


@pytest.fixture
def two_runs(made, monkeypatch, capsys, tmp_path):
    """The module's two runs, a copy of them in ./runs of this test's folder, newest last."""
    import shutil

    shutil.copytree(made / "runs", tmp_path / "runs", symlinks=True)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    first, second = sorted((tmp_path / "runs").iterdir())
    (second / "events.csv").touch()  # the newest by its last write, as a copy keeps no order
    return first, second


def test_show_export_and_resume_take_a_name_or_a_unique_prefix(two_runs, tmp_path, capsys):
    first, second = two_runs
    assert main(["show", "--headless", first.name]) == 0
    out = capsys.readouterr().out
    assert f"run directory: {first}" in out and str(second) not in out
    assert main(["show", "--headless", "quickstart_"]) == 0  # a prefix only the second has
    assert f"run directory: {second}" in capsys.readouterr().out
    assert main(["export", first.name, "--tensorboard", "--out", str(tmp_path / "tb")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main([*TINY[:1], "--resume", first.name, "--max-steps", "3"]) == 0
    out, err = capsys.readouterr()
    assert f"resuming from {first / 'last.pt'} (step 2)" in err and "step 3" in out


def test_show_alone_opens_the_newest_run_and_attach_by_name_shows_an_ended_one(two_runs, capsys):
    first, second = two_runs
    assert main(["show", "--headless"]) == 0
    out = capsys.readouterr().out
    assert f"run directory: {second}" in out and str(first) not in out
    assert main(["attach", "--headless", first.name]) == 0  # not running: its logs, as show does
    out, err = capsys.readouterr()
    assert "is not running" in err and f"run directory: {first}" in out


def test_a_name_that_fits_several_or_none_is_one_line(two_runs, capsys):
    assert main(["show", "--headless", "quickstart"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 runs start with it" in err and "fix: type more of the name" in err
    assert main(["attach", "nothing-like-it"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run of that name" in err and "deeptui ls" in err and "preset" not in err
    assert main([*TINY[:1], "--resume", "nothing-like-it"]) == 2
    assert "no run of that name" in capsys.readouterr().err


def test_ls_groups_by_folder_with_start_duration_and_best_error(two_runs, capsys):
    first, second = two_runs
    assert main(["ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[:5] == ["run", "state", "started", "time", "epoch"] and "best" in header
    assert lines[1].rstrip("/").endswith("runs") and sum(line.endswith("/") for line in lines) == 1
    rows = {line.split()[0]: line for line in lines[2:]}
    assert all(rows[r.name].split()[-1] == "e1" and rows[r.name].split()[-2].endswith("%") for r in two_runs)
    started = rows[second.name].split()[2:4]  # e.g. 12-07 04:18
    assert len(started) == 2 and ":" in started[1] and "-" in started[0]
