"""Shared helpers: tiny engines on generated data, and waiting for engine events."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

from deeptui.engine import events as E
from deeptui.engine.config import load_config

ROOT = Path(__file__).resolve().parent.parent
# The per-user list of runs of anything started before a test's own folder is set (a module's
# fixture, a module-level environment) goes here, never into the real ~/.local/state: a run left
# there by one test showed up in another's `deeptui ls` (with a live pid, its columns too).
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="deeptui-test-state-")
# pytest-xdist's workers inherit COLUMNS=80 from it: the tests' output (deeptui ls in a pipe) is
# as wide as a program sees without a terminal, 100 columns, however the suite is run.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)
# The device of the engine tests' tiny preset: benchmarks/gpu_check.sh runs some of them with cuda.
TEST_DEVICE = os.environ.get("DEEPTUI_TEST_DEVICE", "cpu")

TINY = f"""
[run]
name = "tiny"
epochs = 2
seed = 0
device = "{TEST_DEVICE}"
auto_timing = false
[data]
dataset = "shapes"
batch_size = 16
train_size = 256
test_size = 64
[model]
name = "monster"
blocks = 2
channels = 8
[optimizer]
name = "sgd"
lr = 0.05
choices = ["sgd", "adam", "momentum"]
[schedule]
freeze_features_epochs = 1
[log]
interval = 4
"""


def tiny_config(*overrides: str, text: str = TINY):
    return load_config(None, list(overrides), embedded=text)


@pytest.fixture(autouse=True)
def isolated_user_state(tmp_path_factory, monkeypatch):
    """Every test (and the deeptui processes it starts) keeps its per-user list of runs in a folder
    of its own, never in the real ~/.local/state; and no $DEEPTUI_LOG_DIR leaks in."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    monkeypatch.delenv("DEEPTUI_LOG_DIR", raising=False)


@pytest.fixture(autouse=True)
def pilot_keys_wait_briefly(monkeypatch):
    """Textual's Pilot waits after each key until the process's CPU time stops advancing, for at
    most a second, twice. A training engine thread never lets it stop, so every key cost 2 s.
    Our tests wait on conditions (tests.pilot.until), so a short wait for the UI loop is enough.
    Only where Textual is loaded already: tests of what loads no UI library stay so."""
    if "textual.app" not in sys.modules:
        return
    import textual.app
    import textual.pilot
    from textual._wait import wait_for_idle

    async def brief(min_sleep: float = 0.02, max_sleep: float = 1) -> None:
        await wait_for_idle(min_sleep, min(max_sleep, 0.1))

    monkeypatch.setattr(textual.app, "wait_for_idle", brief)
    monkeypatch.setattr(textual.pilot, "wait_for_idle", brief)


@pytest.fixture
def make_engine(tmp_path):
    """make_engine(*overrides) -> an Engine on tiny shapes data, logging under tmp_path."""
    from deeptui.engine.build import build_engine

    made = []

    def make(*overrides: str, text: str = TINY, **kw):
        cfg = tiny_config(*overrides, text=text)
        eng = build_engine(cfg, data_root=tmp_path / "data", log_dir=tmp_path / "runs", **kw)
        made.append(eng)
        return eng

    yield make
    for eng in made:
        if eng.alive:
            eng.shutdown(timeout=30)
        else:
            eng.data.close()


SYNC_METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")  # a value reaches Python


def count_host_syncs(monkeypatch, engine) -> tuple[list[str], list[int]]:
    """Count every way a tensor's value can reach Python while `engine` runs: (each sync's method,
    in order; how many had happened before each training step)."""
    import torch

    syncs: list[str] = []
    for name in SYNC_METHODS:
        real = getattr(torch.Tensor, name)

        def counting(self, *a, _real=real, _name=name, **kw):
            syncs.append(_name)
            return _real(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, counting)
    before_step: list[int] = []
    real_step = type(engine)._train_step
    monkeypatch.setattr(
        type(engine), "_train_step", lambda s, x, y: (before_step.append(len(syncs)), real_step(s, x, y))
    )
    return syncs, before_step


class EventReader:
    """Reads an engine's events; `wait(pred)` returns the first event matching pred."""

    def __init__(self, engine):
        self.engine = engine
        self.cursor = 0
        self.seen: list[E.Event] = []
        self.looked = 0  # seen[:looked] were offered to a wait: the next one starts after its match

    def poll(self) -> list[E.Event]:
        new, self.cursor = self.engine.events.read(self.cursor)
        self.seen.extend(new)
        return new

    def wait(self, pred, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            while self.looked < len(self.seen):  # events read with an earlier match are not skipped
                ev = self.seen[self.looked]
                self.looked += 1
                if pred(ev):
                    return ev
            self.engine.events.wait(self.cursor, 0.2)
        raise AssertionError(f"no matching event within {timeout}s; last: {self.seen[-5:]}")

    def last(self, pred):
        """The latest event already read that matches pred (or None)."""
        self.poll()
        return next((e for e in reversed(self.seen) if pred(e)), None)

    def answer(self, command_id: int, timeout: float = 60.0):
        return self.wait(
            lambda e: isinstance(e, (E.CommandApplied, E.CommandRejected)) and e.command_id == command_id, timeout
        )
