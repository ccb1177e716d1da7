"""deeptui in a real terminal (issue 21 items 1 and 2): `--nproc 2` under a pseudo-terminal draws
one dashboard (rank 0's), prints one summary and exits 0, torchrun's banner in the run's log; a
dashboard run whose terminal closes (tmux kill-session) detaches and trains on, attachable."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
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
        """Kill what is left: the process, and torchrun's ranks (each in a session of its own)."""
        import psutil

        if self.proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    child.kill()
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self._reader.join(5)
        os.close(self.master)


def env_for(tmp_path: Path) -> dict:
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30", PYTHONUNBUFFERED="1")
    env.pop("DEEPTUI_LOG_DIR", None)
    env["XDG_STATE_HOME"] = os.environ["XDG_STATE_HOME"]  # the test's own per-user list
    return env


def in_tmux(tmp_path: Path, cmd: list[str]) -> tuple[list[str], Path]:
    """`cmd` in a 100x30 session of a tmux server of the test's own, once its run serves its
    socket: (the tmux command to drive that server, the run directory)."""
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock")]
    line = " ".join(f"'{a}'" for a in cmd)
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "t", "-x", "100", "-y", "30", line], env=env_for(tmp_path), check=True
    )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("runs/*/control.sock")) and time.monotonic() < deadline:
            time.sleep(0.2)
        (run_dir,) = (tmp_path / "runs").iterdir()
    except BaseException:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        raise
    return tmux, run_dir


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


@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_a_closed_terminal_leaves_a_dashboard_run_training_and_attachable(tmp_path):
    """Bug: closing the terminal (SIGHUP: a dropped SSH link) stopped a dashboard run; users had to
    remember --detach beforehand. Now the run goes on detached (run.on_hangup = "detach")."""
    from deeptui.engine import commands as C
    from deeptui.engine import events as E
    from deeptui.engine.remote.client import RemoteSession
    from tests.conftest import EventReader

    cmd = [sys.executable, "-m", "deeptui", QUICK, "--epochs", "500", "--log-dir", str(tmp_path / "runs"), *SMALL]
    tmux, run_dir = in_tmux(tmp_path, cmd)
    try:
        pid = int((run_dir / "deeptui.pid").read_text())
        session = RemoteSession(run_dir)
        session.start()
        r = EventReader(session)
        r.wait(lambda e: isinstance(e, E.StepMetrics), timeout=120)  # it trains on the dashboard
        session.detach()
        subprocess.run([*tmux, "kill-session", "-t", "t"], check=True)  # the terminal closes
        session = RemoteSession(run_dir)  # deeptui attach's session: the run is still there, training
        session.start()
        r = EventReader(session)
        note = r.wait(lambda e: isinstance(e, E.Note) and e.kind == "detached", timeout=60)
        r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step > note.step, timeout=120)
        assert os.path.exists(f"/proc/{pid}")
        r.answer(session.send(C.Stop(reason="the test is done")), timeout=60)
        r.wait(lambda e: isinstance(e, E.Finished), timeout=120)
        session.detach()
        deadline = time.monotonic() + 60
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
        assert ",detached," in (run_dir / "events.csv").read_text()
        log = (run_dir / "deeptui.log").read_text()
        assert "the run goes on detached" in log and "run stopped: quickstart" in log, log[-2000:]
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_a_closed_terminal_leaves_a_script_run_training_and_attachable(tmp_path):
    """Bug: `deeptui run SCRIPT.py` on a terminal that closed ended in "internal error
    (AttributeError: 'RemoteSession' object has no attribute 'report')", and the script, its output
    pipe gone, failed with BrokenPipeError at its next print. Now deeptui keeps copying the
    script's output into the run's log; the run trains on, attachable, and stops when asked."""
    from deeptui.engine import commands as C
    from deeptui.engine import events as E
    from deeptui.engine.remote.client import RemoteSession
    from tests.conftest import EventReader

    script = str(ROOT / "examples" / "own_loop.py")
    cmd = [sys.executable, "-m", "deeptui", "run", "--log-dir", str(tmp_path / "runs"), script, "--epochs", "500"]
    tmux, run_dir = in_tmux(tmp_path, cmd)
    try:
        session = RemoteSession(run_dir)
        session.start()
        r = EventReader(session)
        r.wait(lambda e: isinstance(e, E.StepMetrics), timeout=120)
        session.detach()
        subprocess.run([*tmux, "kill-session", "-t", "t"], check=True)  # the terminal closes
        log = run_dir / "deeptui.log"
        deadline = time.monotonic() + 60
        while "goes on: deeptui attach" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        session = RemoteSession(run_dir)
        session.start()
        r = EventReader(session)
        seen = r.wait(lambda e: isinstance(e, E.StepMetrics), timeout=60)
        r.wait(lambda e: isinstance(e, E.StepMetrics) and e.step > seen.step, timeout=120)  # trains on
        r.answer(session.send(C.Stop(reason="the test is done")), timeout=60)
        end = r.wait(lambda e: isinstance(e, E.Finished), timeout=120)
        session.detach()
        assert end.state == "stopped", end
        text = log.read_text()
        assert "goes on: deeptui attach" in text and "internal error" not in text, text[-2000:]
        assert "BrokenPipeError" not in (run_dir / "events.csv").read_text()
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
