"""deeptui in a real terminal (issue 21 items 1 and 2): `--nproc 2` under a pseudo-terminal draws
one dashboard (rank 0's), prints one summary and exits 0, torchrun's banner in the run's log; a
dashboard run whose terminal closes (tmux kill-session) detaches and trains on, attachable."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

QUICK = str(ROOT / "presets" / "quickstart.toml")
SMALL = ["--set", "data.train_size=256", "--set", "data.test_size=32", "--set", "model.blocks=1"]
SMALL += ["--set", "model.channels=8", "--set", "log.interval=2", "--set", "log.system_seconds=0"]


class Pty:
    """A process on a pseudo-terminal of 100x30, its output collected as it comes."""

    def __init__(self, argv: list[str], env: dict, cwd: Path):
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, start_new_session=True
        )
        os.close(slave)
        self.out = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the last process holding the terminal went
                return
            if not data:
                return
            self.out += data

    def wait_for(self, text: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.out:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"no {text!r} on the terminal; its last bytes: {bytes(self.out[-1500:])!r}")
            time.sleep(0.1)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self._reader.join(5)
        os.close(self.master)


def env_for(tmp_path: Path) -> dict:
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30", PYTHONUNBUFFERED="1")
    env.pop("DEEPTUI_LOG_DIR", None)
    env["XDG_STATE_HOME"] = os.environ["XDG_STATE_HOME"]  # the test's own per-user list
    return env


@pytest.mark.timeout(300)
def test_nproc_2_in_a_terminal_draws_one_dashboard_and_prints_one_summary(tmp_path):
    """Bug: every rank drew the dashboard: the run stopped at step 0 ("another process serves this
    run", exit 2) with a garbled terminal, or another rank's summary came over the dashboard."""
    argv = [sys.executable, "-m", "deeptui", QUICK, "--nproc", "2", "--max-steps", "6", "--log-dir", "runs", *SMALL]
    term = Pty(argv, env_for(tmp_path), tmp_path)
    try:
        term.wait_for(b"run finished; run directory", timeout=240)  # in rank 0's dashboard's event log
        term.type(b"q")
        assert term.proc.wait(60) == 0, bytes(term.out[-2000:])
        time.sleep(0.5)  # the last bytes on their way through the terminal
    finally:
        term.close()
    out = bytes(term.out)
    assert out.count(b"run finished: quickstart") == 1, out[-2000:]  # one summary, rank 0's
    assert b"another deeptui process serves" not in out and b"OMP_NUM_THREADS" not in out
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = out[out.index(b"run finished: quickstart") :].decode()
    assert ", 6 steps," in summary and f"run directory: runs/{run_dir.name}" in summary, summary
    assert "OMP_NUM_THREADS" in (run_dir / "deeptui.log").read_text()  # torchrun's banner, in the run's log
