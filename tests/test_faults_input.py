"""Faults, round two, in one process: bad values refused in one line, files only where asked,
checkpoints and data files that are not what they claim, the run directory's lock, the socket
under abuse. Every case: an exit code, one line, never a traceback."""

from __future__ import annotations

import json
import os
import threading

import pytest
import torch

from deeptui.engine import commands as C
from deeptui.engine.remote.server import ControlServer
from deeptui.engine.remote.wire import connect, lines
from deeptui.tui.cli import main
from tests.conftest import ROOT, EventReader
from tests.datafiles import write_mnist

QUICK = str(ROOT / "presets" / "quickstart.toml")
FAST = [
    "--headless",
    "--device",
    "cpu",
    "--max-steps",
    "2",
    "--set",
    "log.interval=1",
    "--set",
    "data.train_size=128",
    "--set",
    "data.test_size=32",
]


def one_line_exit_2(capsys, argv, *words):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and "fix:" in err, err
    for w in words:
        assert w in err, err
    return err


@pytest.mark.parametrize(
    "setting,words",
    [
        ("optimizer.lr=inf", ["optimizer.lr", "not a finite number"]),
        ("optimizer.lr=nan", ["optimizer.lr", "not a finite number"]),
        ("optimizer.group_lr={features=-inf}", ["optimizer.group_lr.features", "finite"]),
        ("run.seed=99999999999999999999999", ["run.seed", "64-bit"]),
        ("model.hidden=" + "[" * 1000 + "]" * 1000, ["nested too deeply"]),
        ("run.name='" + "x" * 5000 + "'", ["run.name", "characters"]),
        ("model.channels=1000000", ["model.channels", "<= 8192"]),
        ("data.num_workers=100000", ["data.num_workers", "<= 64"]),
    ],
    ids=["lr-inf", "lr-nan", "group-lr-inf", "huge-int", "deep", "long-name", "channels", "workers"],
)
def test_values_that_cannot_work_are_refused_with_the_key(capsys, setting, words):
    one_line_exit_2(capsys, [QUICK, "--set", setting, "--headless"], *words)


def test_a_preset_nested_a_thousand_levels_deep(tmp_path, capsys):
    p = tmp_path / "deep.toml"
    p.write_text("[model]\nhidden = " + "[" * 1000 + "1" + "]" * 1000 + "\n")
    one_line_exit_2(capsys, [str(p), "--headless"], str(p), "nested")


def test_a_model_too_big_for_memory_is_refused_before_it_is_made(capsys):
    one_line_exit_2(
        capsys,
        [QUICK, "--set", "model.channels=8192", "--set", "model.blocks=1000", "--headless"],
        "parameters",
        "GiB free",
        "fix: fewer model.blocks",
    )


@pytest.mark.parametrize("name", ["../../escaped", "/etc/evil", "a/b\\0c"])
def test_a_run_name_stays_one_folder_inside_the_log_dir(tmp_path, name, capsys):
    logs = tmp_path / "logs"
    assert main([QUICK, *FAST, "--log-dir", str(logs), "--set", f"run.name='{name}'"]) == 0
    (run_dir,) = logs.iterdir()
    assert run_dir.parent == logs and run_dir.is_dir() and "/" not in run_dir.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]


def finished_run(tmp_path, capsys, *extra):
    assert main([QUICK, *FAST, "--log-dir", str(tmp_path / "logs"), *extra]) == 0
    capsys.readouterr()
    (run_dir,) = (tmp_path / "logs").iterdir()
    return run_dir


def test_a_resume_with_another_model_shape_is_refused(tmp_path, capsys):
    run_dir = finished_run(tmp_path, capsys)
    one_line_exit_2(
        capsys,
        ["--resume", str(run_dir), "--set", "model.channels=16", "--headless"],
        "model.channels was 32",
        "fix: resume without changing model.channels",
    )


def test_a_resume_applies_and_says_a_new_optimizer_and_lr(tmp_path, capsys):
    run_dir = finished_run(tmp_path, capsys)
    assert (
        main(
            [
                "--resume",
                str(run_dir),
                "--set",
                "optimizer.name='adam'",
                "--set",
                "optimizer.lr=0.001",
                "--max-steps",
                "4",
                "--headless",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "resumed with changes" in out and "optimizer.name 'momentum' -> 'adam'" in out
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert rows[-2].split(",")[7] == "adam" and float(rows[-2].split(",")[6]) == 0.001


@pytest.mark.parametrize("damage", ["missing", "mistyped"])
def test_a_checkpoint_with_missing_or_mistyped_parts_is_refused(tmp_path, capsys, damage):
    run_dir = finished_run(tmp_path, capsys)
    for path in run_dir.glob("*.pt"):
        st = torch.load(path, weights_only=True)
        if damage == "missing":
            del st["train"]
        else:
            st["train"]["step"] = "many"
        torch.save(st, path)
    one_line_exit_2(capsys, ["--resume", str(run_dir), "--headless"], "not a deeptui checkpoint")


def test_the_max_steps_of_a_resumed_run_count_from_its_start(tmp_path, capsys):
    run_dir = finished_run(tmp_path, capsys)  # reached max_steps = 2
    assert main(["--resume", str(run_dir), "--headless", "--max-steps", "2"]) == 0
    steps = [int(r.split(",")[2]) for r in (run_dir / "metrics.csv").read_text().splitlines()[1:]]
    assert max(steps) == 2 and steps == sorted(steps)  # not one more step at each resume


@pytest.mark.parametrize(
    "dims",
    [(-5, 28, 28), (-20, -28, 28), (2**31 - 1, 28, 28), (3, 0, 28)],
    ids=["negative", "negative-pair", "huge", "zero"],  # -20 x -28 x 28: the size the data has
)
def test_malformed_mnist_headers_are_a_one_line_data_error(tmp_path, capsys, dims):
    import struct

    folder = write_mnist(tmp_path / "data", n_train=20, n_test=10)
    path = folder / "train-images-idx3-ubyte"
    raw = path.read_bytes()
    path.write_bytes(struct.pack(">4i", 0x0803, *dims) + raw[16:])
    one_line_exit_2(
        capsys,
        [
            str(ROOT / "presets" / "mnist_net.toml"),
            "--data-dir",
            str(tmp_path / "data"),
            "--headless",
            "--set",
            "data.download=false",
        ],
        "train-images-idx3-ubyte",
    )


def test_an_empty_training_set_is_refused(tmp_path, capsys):
    write_mnist(tmp_path / "data", n_train=0, n_test=10)
    one_line_exit_2(
        capsys,
        [
            str(ROOT / "presets" / "mnist_net.toml"),
            "--data-dir",
            str(tmp_path / "data"),
            "--headless",
            "--set",
            "data.download=false",
        ],
        "training set is empty",
    )


def test_files_of_a_resumed_run_are_never_written_through_a_symlink(tmp_path, capsys):
    run_dir = finished_run(tmp_path, capsys)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (run_dir / "events.csv").unlink()
    (run_dir / "events.csv").symlink_to(victim)
    (run_dir / ".last.pt.stale.tmp").write_bytes(b"left by a kill -9")
    one_line_exit_2(capsys, ["--resume", str(run_dir), "--headless", "--max-steps", "4"], "symbolic link")
    assert victim.read_text() == "precious\n"
    assert not (run_dir / ".last.pt.stale.tmp").exists()  # removed at start


def test_a_second_run_in_the_same_directory_stops_at_once(make_engine, capsys):
    eng = make_engine("run.epochs=50")
    eng.send(C.Pause())
    eng.start()
    EventReader(eng).answer(eng.send(C.SaveCheckpoint()))
    err = one_line_exit_2(capsys, ["--resume", str(eng.run_dir), "--headless"], "another deeptui process")
    assert f"pid {os.getpid()}" in err


def test_a_resume_of_a_live_run_without_a_checkpoint_yet_says_it_is_live(make_engine, capsys):
    """Bug: --resume of a run still starting said "no checkpoint to resume from" (after importing
    torch): the live process is the answer, at once, one line."""
    eng = make_engine("run.epochs=50")
    eng.send(C.Pause())
    eng.start()
    assert not list(eng.run_dir.glob("*.pt"))
    err = one_line_exit_2(capsys, ["--resume", str(eng.run_dir), "--headless"], "another deeptui process")
    assert f"pid {os.getpid()}" in err and "importing torch" not in err


def test_the_socket_takes_a_hundred_clients_and_survives_abuse(make_engine):
    eng = make_engine("run.epochs=50")
    eng.send(C.Pause())
    srv = ControlServer(eng).start()
    eng.start()
    try:
        results = []

        def client():
            try:
                s = connect(srv.path, timeout=30)
                s.settimeout(30)
                first = s.makefile("rb").readline()
                results.append(json.loads(first)["type"])
                s.close()
            except OSError as e:
                results.append(str(e))

        threads = [threading.Thread(target=client) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results.count("RunStarted") == 100, results[:5]
        s = connect(srv.path, timeout=30)
        s.settimeout(30)
        s.sendall(b"[" * 50000 + b"\n")  # deeper than json can take, within the line limit
        s.sendall(json.dumps({"type": "RunTiming", "repeats": 10**9}).encode() + b"\n")
        f = s.makefile("rb")
        errors, answers = [], []
        for line in f:
            obj = json.loads(line)
            if obj["type"] == "Error":
                errors.append(obj["message"])
            if obj["type"] == "CommandRejected" and obj["command"] == "RunTiming":
                answers.append(obj["reason"])
                break
        assert any("nested too deeply" in m for m in errors) and "repeats must be 1..1001" in answers[0]
        s.close()
        assert eng.alive and eng.state == "paused"
    finally:
        eng.shutdown(timeout=30)
        srv.close()


def test_a_client_reads_lines_of_bounded_length():
    import io

    stream = io.BytesIO(b"short\n" + b"x" * 5000 + b"\nafter\n")
    assert list(lines(stream, 100)) == [b"short\n", b"after\n"]


def test_the_dashboard_is_not_started_with_a_closed_stdin(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "deeptui", QUICK, *FAST, "--log-dir", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.close(0),
    )
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert "deeptui: finished" in out.stdout
