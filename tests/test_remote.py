"""Detach and reattach: the control socket (JSON lines over a Unix socket), RemoteSession, a
detached run steered by Pilot-driven dashboards, bad input on the socket, clients that die."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.errors import RemoteError
from deeptui.engine.events import EventBuffer
from deeptui.engine.remote.client import RemoteSession
from deeptui.engine.remote.server import ControlServer
from deeptui.engine.remote.wire import (
    SOCKET_NAME,
    address,
    connect,
    decode_command,
    decode_event,
    encode_event,
    is_live,
)
from tests.conftest import ROOT, EventReader
from tests.test_faults import QUICK, SMALL, assert_csv_complete, only_run_dir

# ---- in-process: an engine on tiny data with its control server ----------------------------


@pytest.fixture
def served(make_engine):
    """served(*overrides) -> (engine, server), the engine started; both stopped at teardown."""
    made = []

    def make(*overrides, start=True, buffer: EventBuffer | None = None):
        eng = make_engine(*overrides)
        if buffer is not None:
            eng.report.events = buffer
        srv = ControlServer(eng).start()
        made.append(srv)
        if start:
            eng.start()
        return eng, srv

    yield make
    for srv in made:
        if srv.engine.alive:
            srv.engine.shutdown(timeout=30)
        srv.close()


class Raw:
    """A bare client: raw bytes out, JSON lines in."""

    def __init__(self, path: Path):
        self.sock = connect(path)
        self.sock.settimeout(30)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next(self, type_: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.file.readline()
            assert line, f"connection closed before a {type_} line"
            obj = json.loads(line)
            if obj["type"] == type_:
                return obj
        raise AssertionError(f"no {type_} line")

    def close(self) -> None:
        self.sock.close()


def test_wire_format_round_trips_events_and_checks_commands():
    ev = E.RunStarted(
        0.5,
        1,
        0,
        preset="p",
        run_dir="/r",
        device="cpu",
        model="m",
        parameters=3,
        epochs=2,
        steps_per_epoch=4,
        max_steps=0,
        has_features=True,
        optimizer_choices=("sgd", "adam"),
    )
    assert decode_event(json.loads(encode_event(ev))) == ev  # the list comes back as a tuple
    assert decode_event({"type": "NoSuchEvent"}) is None
    assert decode_command({"type": "SwitchOptimizer", "name": "adam", "id": 7}) == C.SwitchOptimizer(name="adam", id=7)
    assert decode_command({"type": "RunTiming", "sizes": [4, 2, 2]}).sizes == (4, 2, 2)
    assert decode_command({"type": "SetLearningRate", "lr": 1}).lr == 1.0
    for bad, words in [
        ([], "JSON object"),
        ({"type": "Explode"}, "unknown command"),
        ({"type": "SetLearningRate", "lr": "fast"}, "must be a number"),
        ({"type": "SetFrozen", "frozen": 1}, "true or false"),
        ({"type": "Pause", "id": "x"}, "integer"),
        ({"type": "Pause", "force": True}, "no field"),
    ]:
        with pytest.raises(ValueError, match=words):
            decode_command(bad)


def test_socket_is_0600_serves_history_and_is_removed_when_the_run_ends(served):
    eng, srv = served("run.epochs=1")
    mode = os.stat(srv.path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600  # only the owner may connect
    assert (srv.path.parent / "deeptui.pid").read_text().strip() == str(os.getpid())
    EventReader(eng).wait(lambda e: isinstance(e, E.Finished))
    session = RemoteSession(eng.run_dir)
    # The server goes away after the run ends; a client that connected in time got all of it.
    deadline = time.monotonic() + 10
    while srv.path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not srv.path.exists() and not (srv.path.parent / "deeptui.pid").exists()
    with pytest.raises(RemoteError, match="not live"):
        session.start()


def test_remote_session_gets_the_history_then_the_live_stream_and_steers(served):
    eng, srv = served("run.epochs=50")
    reader = EventReader(eng)
    eng.send(C.Pause())
    reader.wait(lambda e: isinstance(e, E.StateChanged) and e.state == "paused")
    s1, s2 = RemoteSession(eng.run_dir), RemoteSession(srv.path)  # a run dir or the socket path
    s1.start()
    s2.start()
    r1 = EventReader(s1)
    r1.wait(lambda e: isinstance(e, E.CommandApplied) and e.command == "Pause")
    started = r1.seen[0]
    assert isinstance(started, E.RunStarted) and started.preset == "tiny"  # history from the start
    cid = s2.send(C.SwitchOptimizer(name="adam"))
    applied = r1.answer(cid)  # s1 sees what s2 caused, with s2's command id
    assert isinstance(applied, E.CommandApplied) and eng.train.optimizer == "adam"
    assert EventReader(s2).answer(cid) == applied
    assert s1.alive and srv.clients == 2
    s2.detach()
    assert not s2.alive and eng.alive  # detaching leaves the run alone
    assert s1.shutdown("stop from a remote", timeout=30)
    assert s1.final_state == "stopped" and not eng.alive
    assert r1.wait(lambda e: isinstance(e, E.Finished)).reason == "stop from a remote"


def test_bad_input_gets_an_error_reply_and_the_run_goes_on(served):
    eng, srv = served("run.epochs=50")
    reader = EventReader(eng)
    c = Raw(srv.path)
    for data, words in [
        (b"garbage\n", "not a JSON line"),
        (b'{"type": "SwitchOptimizer", "name": \n', "not a JSON line"),  # truncated
        (b"\xff\xfe\n", "not a JSON line"),
        (b"[1, 2]\n", "JSON object"),
        (b'{"type": "FormatDisk"}\n', "unknown command"),
        (b'{"name": "adam"}\n', "unknown command"),
        (b'{"type": "SetLearningRate", "lr": "1e9", "id": 5}\n', "must be a number"),
        (b'{"type": "Pause", "verbose": true}\n', "no field"),
    ]:
        c.send(data)
        assert words in c.next("Error")["message"], data
    # 10 MB without a newline, in pieces: answered once, skipped without being buffered.
    c.send(b'{"type": "Pause", "pad": "' + b"x" * (10 * 2**20) + b'"}\n')
    assert "longer than" in c.next("Error")["message"]
    before = eng.train.step
    c.send(b'{"type": "SwitchOptimizer", "name": "momentum", "id": 424242}\n')  # still understood
    ev = reader.answer(424242)
    assert isinstance(ev, E.CommandApplied) and eng.train.optimizer == "momentum"
    # A client that leaves in the middle of a line changes nothing.
    c.send(b'{"type": "Stop", "reas')
    c.close()
    reader.wait(lambda e: isinstance(e, E.StepMetrics) and e.step > before + 8)
    assert eng.alive and eng.state == "running" and not eng.final_state
    assert not any(isinstance(e, E.CommandApplied) and e.command == "Stop" for e in reader.seen)
    status = Raw(srv.path)
    status.send(b'{"type": "Status"}\n')
    st = status.next("Status")
    assert st["state"] == "running" and st["pid"] == os.getpid() and st["step"] > 0, (
        st,
        eng.train.step,
        srv._thread.is_alive(),
        srv._feed.cursor,
        len(eng.events),
    )
    status.close()


def leave_stale_socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    with address(path) as addr:
        sock.bind(addr)
    sock.close()


def test_stale_socket_from_a_crashed_run_is_detected_and_removed(served, tmp_path):
    eng, srv = served(start=False)
    srv.close()
    # What a SIGKILLed run leaves: a socket file nobody listens on.
    leave_stale_socket(srv.path)
    assert srv.path.exists() and not is_live(srv.path)
    assert not srv.path.exists()  # the client side removed it
    leave_stale_socket(srv.path)
    again = ControlServer(eng).start()  # the server side replaces it
    try:
        assert is_live(again.path)
        with pytest.raises(RemoteError, match="another deeptui process"):
            ControlServer(eng).start()  # a live one is never taken over
    finally:
        again.close()
    assert not again.path.exists()


def test_history_dropped_by_the_bounded_buffer_comes_from_the_journal(make_engine):
    """A server that starts (or falls) behind a tiny buffer folds the events it missed from
    events.jsonl: the client's fold has every step once, and the test row."""
    from deeptui.tui.view import RunView

    eng = make_engine("run.epochs=3", "log.interval=1", "log.flush_seconds=0.001")
    eng.report.events = EventBuffer(maxlen=20)
    reader = EventReader(eng)
    eng.start()
    reader.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= 30)
    cid = eng.send(C.Pause())
    reader.answer(cid)
    srv = ControlServer(eng).start()
    try:
        s = RemoteSession(eng.run_dir)
        s.start()
        r = EventReader(s)
        r.answer(cid)
        assert isinstance(r.seen[0], E.RunStarted) and eng.events.dropped > 0
        view = RunView()
        for ev in r.seen:
            view.apply(ev)
        assert view.curves.train_loss.x == list(range(1, eng.train.step + 1))  # every step once
        assert [e.step for e in view.curves.tests["eval"]] == [16]
        s.detach()
    finally:
        eng.shutdown(timeout=30)
        srv.close()


@pytest.mark.e2e
def test_a_client_killed_mid_stream_leaves_the_run_training(served):
    eng, srv = served("run.epochs=50")
    reader = EventReader(eng)
    # The real client, `deeptui attach --headless`, in its own process.
    # No run directory given: attach picks the most recent live run under --log-dir.
    proc = subprocess.Popen(
        [sys.executable, "-m", "deeptui", "attach", "--log-dir", str(eng.run_dir.parent), "--headless"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(200):
            line = proc.stdout.readline()
            if line.startswith("epoch 1/50 step "):  # a training row, history or live
                break
        else:
            raise AssertionError(proc.stderr.read())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    step = eng.train.step
    reader.wait(lambda e: isinstance(e, E.StepMetrics) and e.step >= step + 12)
    assert eng.alive and eng.state == "running"
    deadline = time.monotonic() + 10
    while srv.clients and time.monotonic() < deadline:  # the dead client's threads ended
        time.sleep(0.05)
    assert srv.clients == 0 and is_live(srv.path)


# ---- a detached run in its own process, steered from Pilot-driven dashboards --------------


@pytest.fixture
def detached(tmp_path, capsys):
    """Start `deeptui QUICK --detach` with small data; yields the run directory; kills the
    background process at teardown if a test left it running."""
    from deeptui.tui.cli import main

    code = main([QUICK, "--detach", "--log-dir", str(tmp_path), "--device", "cpu", *SMALL, "--max-steps", "30"])
    out = capsys.readouterr().out
    assert code == 0, out
    run_dir = only_run_dir(tmp_path)
    assert f"run directory: {run_dir}" in out
    pid = int((run_dir / "deeptui.pid").read_text())
    yield run_dir
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _text(app, selector: str) -> str:
    from tests.test_app import text_of

    return text_of(app, selector)


async def until(pilot, pred, timeout: float = 30.0, what: str = ""):
    """tests.test_app.until, saying more when it fails: what the session got, the app's own
    exception, and the detached run's log."""
    from tests.test_app import until as app_until

    try:
        await app_until(pilot, pred, timeout, what)
    except AssertionError as e:
        app, session = pilot.app, pilot.app.session
        seen, _ = session.events.read(max(0, len(session.events) - 5))
        log = (Path(session.run_dir) / "deeptui.log").read_text()[-1500:]
        raise AssertionError(
            f"{e}; alive={session.alive} last events={seen} "
            f"app exception={getattr(app, '_exception', None)!r}; log tail:\n{log}"
        ) from None


@pytest.mark.e2e
async def test_detached_run_attach_pause_switch_detach_reattach_finish(detached, capsys):
    from deeptui.tui.app import DeeptuiApp
    from deeptui.tui.dialogs import QuitScreen
    from deeptui.tui.runs import ls_main

    run_dir = detached
    s1 = RemoteSession(run_dir)
    app = DeeptuiApp(s1, attached=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "running" in _text(app, "#header"), what="running")
        await pilot.press("p")
        await until(pilot, lambda: "paused" in _text(app, "#header"), what="paused")
        await pilot.press("o")  # momentum -> sgd, applied by the other process
        await until(pilot, lambda: "sgd" in _text(app, "#run"), what="sgd")
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitScreen), what="quit dialog")
        await pilot.press("enter")  # the default: detach
    assert s1.detached and not app.stop_on_quit
    assert is_live(run_dir / SOCKET_NAME)  # the run goes on without a dashboard

    capsys.readouterr()
    assert ls_main(["--log-dir", str(run_dir.parent)]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()  # under the header and its folder's line
    assert row[0] == run_dir.name and row[1] == "paused" and row[-1] == (run_dir / "deeptui.pid").read_text().strip()

    s2 = RemoteSession(run_dir)
    app = DeeptuiApp(s2, attached=True)
    async with app.run_test(size=(100, 30)) as pilot:
        # The state and the events of the first dashboard, replayed from the run's history.
        await until(
            pilot, lambda: "paused" in _text(app, "#header") and "sgd" in _text(app, "#run"), what="paused with sgd"
        )
        log = _text(app, "#log")
        assert "Pause: paused at step" in log and "SwitchOptimizer: momentum -> sgd" in log
        await pilot.press("p")
        await until(pilot, lambda: "finished" in _text(app, "#header"), timeout=180, what="finished")
        await pilot.press("q")  # the run has ended: nothing to ask
    assert s2.final_state == "finished" and not s2.alive

    metrics, events = assert_csv_complete(run_dir)
    names = [e["event"] for e in events]
    assert names[0] == "start" and names[-1] == "finished"
    assert "applied:Pause" in names and "applied:SwitchOptimizer" in names and "applied:Resume" in names
    train = [m for m in metrics if m["split"] == "train"]
    assert int(train[-1]["step"]) == 30 and train[-1]["optimizer"] == "sgd"
    deadline = time.monotonic() + 15
    while (run_dir / SOCKET_NAME).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (run_dir / SOCKET_NAME).exists()
    assert ls_main(["--log-dir", str(run_dir.parent)]) == 0
    header, _, row = (line.split() for line in capsys.readouterr().out.splitlines()[:3])
    cells = dict(zip(header[1:], [row[1], " ".join(row[2:4]), *row[4:]]))  # started is a date and a time
    assert (cells["state"], cells["epoch"], cells["step"]) == ("finished", "1", "30") and "pid" not in cells
    log = run_dir / "deeptui.log"  # the detached process prints its last line as its engine thread ends
    while "finished" not in log.read_text() and time.monotonic() < deadline + 10:
        time.sleep(0.1)
    assert "finished" in log.read_text()


def test_a_local_headless_run_serves_its_socket_too(tmp_path):
    from tests.test_faults import read_until, start_headless

    proc = start_headless(tmp_path)
    try:
        read_until(proc, "step 10 ")
        s = RemoteSession(only_run_dir(tmp_path))
        s.start()
        assert s.shutdown("stopped over the socket", timeout=60) and s.final_state == "stopped"
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "stopped over the socket" in out, err
    assert not (only_run_dir(tmp_path) / SOCKET_NAME).exists()


def ready(screen, kind) -> bool:
    """A dialog of `kind` whose option list has the focus."""
    from textual.widgets import OptionList

    return isinstance(screen, kind) and bool(screen.query(OptionList)) and screen.query_one(OptionList).has_focus


async def test_detaching_from_a_paused_run_offers_to_resume_it_first(served):
    from textual.widgets import OptionList

    from deeptui.tui.app import DeeptuiApp
    from deeptui.tui.dialogs import QuitScreen

    eng, _ = served("run.epochs=50", start=False)
    eng.send(C.Pause())
    eng.start()
    session = RemoteSession(eng.run_dir)
    app = DeeptuiApp(session, attached=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "paused" in _text(app, "#header"), what="paused")
        await pilot.press("q")
        # the dialog is ready once mounted (it highlights its default) and its list has the focus:
        # a choice made before that is undone by its mount, or an enter goes elsewhere
        await until(pilot, lambda: ready(app.screen, QuitScreen) and app.screen.query_one(OptionList).highlighted == 0)
        options = app.screen.query_one(OptionList)
        assert [o.id for o in options._options] == ["detach", "resume_detach", "stop"]
        options.highlighted = 1
        await pilot.press("enter")
        # the choice acts once the dialog is dismissed: on a busy machine after press() returns
        await until(pilot, lambda: app.resumed_on_detach, what="resume and detach")
    assert not app.stop_on_quit and app.resumed_on_detach
    r = EventReader(eng)
    r.wait(lambda e: isinstance(e, E.CommandApplied) and e.command == "Resume")
    assert eng.state == "running"
