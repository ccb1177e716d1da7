"""The command line: presets load, bad input gets one clear line and exit 2, headless runs log."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from deeptui.engine.config import documented_keys, load_config
from deeptui.engine.runlog import EVENTS_HEADER, METRICS_HEADER
from deeptui.tui.cli import main
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data"
PRESETS = sorted((ROOT / "presets").glob("*.toml"))


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_preset_loads_and_documents_its_keys(path):
    cfg = load_config(path)
    assert cfg.run.name == path.stem
    text = path.read_text()
    for line in text.splitlines():
        # every key set in a shipped preset carries a comment saying what it does
        if "=" in line and not line.lstrip().startswith("#") and not line.startswith("["):
            key = line.split("=")[0].strip()
            assert "#" in line or key in ("choices",) or line.startswith(" "), f"{path.name}: {line!r} has no comment"


def test_documented_keys_cover_every_field():
    keys = documented_keys()
    assert "optimizer.lr" in keys and "schedule.freeze_features_epochs" in keys
    assert all(doc for doc in keys.values())


BAD = [
    ("syntax_error.toml", ["TOML syntax error", "line 3", "fix: correct line 3 of"]),
    ("unknown_key.toml", ["unknown key optimizer.learning_rate", "did you mean 'lr'"]),
    ("unknown_section.toml", ["unknown section [optimzer]", "did you mean 'optimizer'"]),
    ("wrong_type.toml", ["data.batch_size", "expected an integer"]),
    ("negative_lr.toml", ["optimizer.lr", "must be > 0"]),
    ("zero_batch.toml", ["data.batch_size", "must be >= 1"]),
    ("momentum_out_of_range.toml", ["optimizer.momentum", "must be < 1"]),
    ("unknown_optimizer.toml", ["optimizer.name", "must be one of", "did you mean 'adam"]),
    ("unknown_dataset.toml", ["data.dataset", "must be one of"]),
    ("nesterov_without_momentum.toml", ["nesterov", "optimizer.momentum", "fix:"]),
    ("pretrained_without_features.toml", ["model.pretrained", "no AlexNet features", "fix:"]),
]


@pytest.mark.parametrize("name,words", BAD, ids=[b[0] for b in BAD])
def test_bad_preset_exits_2_with_one_clear_line(capsys, tmp_path, name, words):
    code, out, err = run_cli(capsys, str(DATA / name), "--headless", "--log-dir", str(tmp_path))
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert name in err and "fix:" in err
    for w in words:
        assert w in err, (w, err)
    assert not any(tmp_path.iterdir())  # nothing started, no run directory


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--set", "optimizer.lrr=0.1"], ["unknown key optimizer.lrr", "did you mean 'lr'"]),
        (["--set", "optimiser.lr=0.1"], ["unknown section 'optimiser'", "did you mean 'optimizer'"]),
        (["--set", "lr=0.1"], ["section.key"]),
        (["--set", "optimizer.lr"], ["has no '='"]),
        (["--set", "optimizer.lr=[1,"], ["not valid TOML"]),
        (["--set", "optimizer.lr=abc"], ["set on the command line: optimizer.lr", "expected a number"]),
        (["--device", "cuda"], ["CUDA is not available", "--device cpu"]),
        (["--epochs", "0"], ["run.epochs", "must be >= 1"]),
        (["--set", "log.system_seconds=1e300"], ["log.system_seconds", "must be <= 86400"]),
    ],
    ids=[
        "set-unknown-key",
        "set-unknown-section",
        "set-no-section",
        "set-no-value",
        "set-bad-toml",
        "set-wrong-type",
        "cuda-absent",
        "epochs-zero",
        "system-seconds-past-a-day",  # a timed wait that long overflowed time_t in the readings' thread
    ],
)
def test_bad_command_line_exits_2(capsys, tmp_path, argv, words, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = run_cli(
        capsys, str(ROOT / "presets" / "quickstart.toml"), "--headless", "--log-dir", str(tmp_path), *argv
    )
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    for w in words:
        assert w in err, (w, err)


def test_missing_preset_file(capsys):
    code, out, err = run_cli(capsys, "presets/no_such_preset.toml", "--headless")
    assert code == 2 and "no_such_preset.toml" in err and "not found" in err


def test_log_dir_not_writable(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, out, err = run_cli(
        capsys, str(ROOT / "presets" / "quickstart.toml"), "--headless", "--log-dir", str(blocker / "runs")
    )
    assert code == 2 and "not writable" in err and "--log-dir" in err


def test_headless_run_writes_the_run_directory(capsys, tmp_path):
    code, out, err = run_cli(
        capsys,
        str(ROOT / "presets" / "quickstart.toml"),
        "--headless",
        "--log-dir",
        str(tmp_path),
        "--epochs",
        "2",
        "--max-steps",
        "12",
        "--set",
        "data.train_size=400",
        "--set",
        "data.test_size=100",
        "--set",
        "log.interval=4",
    )
    assert code == 0, err
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("quickstart-")
    assert "step 12" in out and "finished" in out and str(run_dir) in out
    metrics = list(csv.reader(open(run_dir / "metrics.csv")))
    assert metrics[0] == METRICS_HEADER
    train = [r for r in metrics[1:] if r[3] == "train"]
    test = [r for r in metrics[1:] if r[3] == "test"]
    assert train[-1][2] == "12" and len(test) == 2  # epoch 1's end and the max-steps stop
    events = list(csv.reader(open(run_dir / "events.csv")))
    assert events[0] == EVENTS_HEADER
    resolved = load_config(run_dir / "config.toml")
    assert resolved.run.max_steps == 12 and resolved.data.train_size == 400


@pytest.mark.e2e
def test_console_script_reports_errors_without_traceback(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "deeptui", str(DATA / "unknown_key.toml"), "--headless"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("deeptui: ") and "Traceback" not in out.stderr
