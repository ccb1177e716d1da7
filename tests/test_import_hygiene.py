"""Each headless entry point, in a fresh interpreter, loads no terminal UI library: the engine and
the plain-text front ends stay usable where textual, rich or plotext are slow or absent.
(The import contracts in pyproject.toml check the same statically; this checks what runs.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.e2e

UI = ("textual", "rich", "plotext")
PROBE = """
import json, sys
from deeptui.tui.cli import main
code = main(json.loads(sys.argv[1]))
loaded = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print("LOADED", json.dumps(loaded))
sys.exit(code)
"""


def run_probe(argv: list[str], cwd) -> tuple[int, list[str], str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(UI)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    line = next((l for l in out.stdout.splitlines() if l.startswith("LOADED ")), "LOADED null")
    return out.returncode, json.loads(line[len("LOADED ") :]), out.stdout + out.stderr


QUICK = ["--max-steps", "2", "--set", "log.interval=1", "--set", "data.train_size=256", "--set", "data.test_size=64"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--headless", *QUICK],  # deeptui --headless
        ["--headless", *QUICK, "--run-dir", "{tmp}/child"],  # what a detached run's child process runs
        ["ls", "--log-dir", "{tmp}"],
        ["bench", "--device", "cpu", "--repeats", "1"],
    ],
    ids=["headless", "detached-child", "ls", "bench"],
)
def test_a_headless_entry_point_loads_no_ui_library(tmp_path, argv):
    (tmp_path / "child").mkdir()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, loaded, output = run_probe(argv, tmp_path)
    assert code == 0, output
    assert loaded == [], output


def test_the_detach_launcher_loads_no_ui_library(tmp_path):
    code, loaded, output = run_probe(["--detach", *QUICK, "--log-dir", str(tmp_path)], tmp_path)
    assert code == 0, output
    assert loaded == [], output
    run_dir = next(tmp_path.glob("quickstart-*"))
    # the background run ends by itself after 2 steps: wait for its record before tmp_path goes
    events = run_dir / "events.csv"
    deadline = time.monotonic() + 120
    while "finished" not in events.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "finished" in events.read_text()
