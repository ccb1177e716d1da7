"""Presets and --set values from a fuzzer: random TOML of random depth and types (huge and
non-finite numbers, long and odd strings, tables where numbers belong), random keys, mangled
shipped presets. Whatever comes in: exit 0, 1 or 2, never a traceback, never an internal error,
never a file outside the log directory.

Bounded by default (a fixed seed, 120 cases); a longer run:
  DEEPTUI_FUZZ_CASES=2000 DEEPTUI_FUZZ_SEED=7 .venv/bin/python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import tomli_w

from deeptui.engine.config import SECTIONS, documented_keys
from deeptui.tui.cli import main
from tests.conftest import ROOT

SEED = int(os.environ.get("DEEPTUI_FUZZ_SEED", "0"))
CASES = int(os.environ.get("DEEPTUI_FUZZ_CASES", "120"))
KEYS = list(documented_keys())
PRESETS = sorted((ROOT / "presets").glob("*.toml"))
ODD = [
    "",
    "..",
    "../../x",
    "/etc/passwd",
    "a" * 300,
    "é🙂\u202e",
    "cuda:99",
    "auto",
    "nan",
    "-1",
    "x" * 5000,
    "sgd",
    "adam",
    "lbfgs",
    "memory",
    "dataloader",
    "mnist",
    "cifar10",
    "landscape",
    "train",
    "fp16",
    "bf16",
]


def value(rng: random.Random, depth: int = 0):
    kind = rng.choice(
        ["int", "int", "float", "float", "bool", "str", "str", "list", "table"]
        if depth < 4
        else ["int", "float", "bool", "str"]
    )
    if kind == "int":
        return rng.choice([0, 1, -1, 2, 3, 7, 64, 10**6, 2**31, -(2**63), 2**63 - 1, rng.randint(-9, 9999)])
    if kind == "float":
        return rng.choice(
            [
                0.0,
                -0.0,
                1e-320,
                1e-3,
                0.5,
                0.9999,
                1.5,
                1e30,
                1e308,
                float("inf"),
                float("-inf"),
                float("nan"),
                rng.uniform(-10, 10),
            ]
        )
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "str":
        return rng.choice(ODD)
    if kind == "list":
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        rng.choice(["a", "lr", "x", "features", "data.batch_size"]): value(rng, depth + 1)
        for _ in range(rng.randint(0, 3))
    }


def literal(v) -> str:
    """A value as TOML text (what --set reads)."""
    return (
        tomli_w.dumps({"v": v}).split("=", 1)[1].strip()
        if not isinstance(v, dict)
        else ("{" + ", ".join(f"{k!r}".replace("'", '"') + f" = {literal(x)}" for k, x in v.items()) + "}")
    )


def case(rng: random.Random, folder: Path) -> list[str]:
    """The arguments of one fuzzed command line (a preset written into folder)."""
    kind = rng.random()
    preset = folder / "fuzz.toml"
    if kind < 0.35:  # a preset of random sections and keys
        raw: dict = {}
        for _ in range(rng.randint(1, 6)):
            key = rng.choice(KEYS) if rng.random() < 0.85 else f"{rng.choice(list(SECTIONS))}.{rng.choice(ODD[:6])}"
            section, _, name = key.partition(".")
            raw.setdefault(section if rng.random() < 0.95 else "bogus", {})[name or "k"] = value(rng)
        try:
            preset.write_text(tomli_w.dumps(raw))
        except (ValueError, TypeError):
            preset.write_text("[run]\nname = 'x'\n")
    elif kind < 0.7:  # a shipped preset, mangled
        text = bytearray(rng.choice(PRESETS).read_bytes())
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(text))
            text[i : i + rng.randint(0, 3)] = bytes([rng.choice(b"=[]{}\"'#.,\n 0123456789abcdefxyz\\\xff")])
        preset.write_bytes(bytes(text))
    else:  # a shipped preset with random --set values
        preset.write_bytes(rng.choice(PRESETS).read_bytes())
    sets = []
    for _ in range(rng.randint(0, 3)):
        key = rng.choice(KEYS) if rng.random() < 0.9 else rng.choice(["run", "x.y.z", "model.", "=1", "run.name"])
        try:
            sets += ["--set", f"{key}={literal(value(rng))}"]
        except (ValueError, TypeError):
            continue
    return [str(preset), *sets]


def test_fuzzed_presets_and_settings_end_in_an_exit_code_and_one_line(tmp_path, monkeypatch, capsys):
    rng = random.Random(SEED)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    logs, nodata = tmp_path / "logs", tmp_path / "nodata"
    bounded = [
        "--headless",
        "--device",
        "cpu",
        "--log-dir",
        str(logs),
        "--data-dir",
        str(nodata),
        "--set",
        "run.max_steps=1",
        "--set",
        "run.epochs=1",
        "--set",
        "data.train_size=64",
        "--set",
        "data.test_size=16",
        "--set",
        "data.download=false",
        "--set",
        "landscape.steps=5",
        "--set",
        "data.num_workers=0",
    ]
    codes = []
    for i in range(CASES):
        argv = case(rng, tmp_path) + bounded
        code = main(argv)
        out, err = capsys.readouterr()
        assert code in (0, 1, 2), (i, code, argv, err)
        assert "Traceback" not in err + out and "internal error" not in err, (i, argv, err[-2000:])
        if code == 2:
            assert err.count("\n") == 1 and err.startswith("deeptui: "), (i, argv, err)
        codes.append(code)
        assert sorted(p.name for p in work.iterdir()) == [], (i, argv, list(work.iterdir()))  # nothing in cwd
        if logs.exists():  # run directories only, each right inside the log directory
            assert all(p.is_dir() and p.parent == logs for p in logs.iterdir()), (i, argv)
    assert codes.count(2) > CASES // 3 and codes.count(0) > 0, codes  # the fuzzer reached both kinds
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize("text", ["[run]\nname = '../../../../tmp/escaped'\n", "[run]\nname = '/abs/path'\n"])
def test_run_names_that_would_escape_stay_inside(tmp_path, text, capsys):
    p = tmp_path / "p.toml"
    p.write_text(text)
    assert (
        main(
            [
                str(p),
                "--headless",
                "--device",
                "cpu",
                "--log-dir",
                str(tmp_path / "logs"),
                "--max-steps",
                "1",
                "--set",
                "data.train_size=64",
                "--set",
                "data.test_size=16",
            ]
        )
        == 0
    )
    assert [d.parent for d in (tmp_path / "logs").iterdir()] == [tmp_path / "logs"]
