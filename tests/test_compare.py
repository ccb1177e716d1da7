"""Mini-batch size comparison: one run directory per value, run headless one after another."""

from __future__ import annotations

import csv

import pytest

from deeptui.engine.compare import variants
from deeptui.engine.config import ConfigError, load_config
from deeptui.tui.cli import main
from tests.conftest import ROOT

PRESET = str(ROOT / "presets" / "compare_batch_size.toml")


def test_variants_expand_the_compared_key():
    cfg = load_config(PRESET)
    vs = variants(cfg)
    assert [label for label, _ in vs] == ["batch_size=1", "batch_size=10", "batch_size=100", "batch_size=1000"]
    assert [c.data.batch_size for _, c in vs] == [1, 10, 100, 1000]
    assert all(c.run.compare == {} and c.run.name.startswith("compare_batch_size-") for _, c in vs)


def test_a_bad_compared_value_is_refused_before_any_run(capsys, tmp_path):
    code = main(
        [PRESET, "--headless", "--log-dir", str(tmp_path), "--set", 'run.compare={ "data.batch_size" = [10, 0] }']
    )
    err = capsys.readouterr().err
    assert code == 2 and "data.batch_size" in err and "0" in err and "fix:" in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="one key"):
        variants(load_config(PRESET, ['run.compare={ "data.batch_size" = [1], "optimizer.lr" = [0.1] }']))


def test_compare_runs_headless_one_directory_per_value(capsys, tmp_path):
    code = main(
        [
            PRESET,
            "--headless",
            "--log-dir",
            str(tmp_path),
            "--set",
            "data.dataset='shapes'",
            "--set",
            "data.train_size=400",
            "--set",
            "data.test_size=100",
            "--set",
            "data.normalize=false",
            "--set",
            "run.max_samples=400",  # one pass over the 400 samples for each batch size
            "--set",
            'run.compare={ "data.batch_size" = [10, 50, 200] }',
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "compare run 1/3: batch_size=10" in out and "compare run 3/3: batch_size=200" in out
    dirs = sorted(p.name.rsplit("-", 2)[0] for p in tmp_path.iterdir())
    assert dirs == [
        "compare_batch_size-batch_size10",
        "compare_batch_size-batch_size200",
        "compare_batch_size-batch_size50",
    ]
    for d in tmp_path.iterdir():
        rows = list(csv.DictReader(open(d / "metrics.csv")))
        assert rows and rows[-1]["split"] == "test"
        resolved = load_config(d / "config.toml")
        assert str(resolved.data.batch_size) in d.name
