"""`deeptui send RUN COMMAND [VALUE]`: the run's own answer on stdout, exit 0 when applied, 1 when
rejected, 2 when the run cannot be reached; against a watched loop and an engine run alike."""

from __future__ import annotations

import json

import pytest

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.remote.server import ControlServer
from deeptui.tui.send import send_main
from tests.conftest import EventReader
from tests.ownloop import OwnLoop


@pytest.fixture
def watched(tmp_path):
    loop = OwnLoop(tmp_path / "runs")
    loop.reader.wait(lambda e: isinstance(e, E.StateChanged) and e.state == "paused")
    yield loop
    loop.finish()


@pytest.fixture
def engine_run(make_engine):
    eng = make_engine()
    eng.send(C.Pause())
    eng.start()
    EventReader(eng).wait(lambda e: isinstance(e, E.StateChanged) and e.state == "paused")
    server = ControlServer(eng).start()
    yield eng
    eng.shutdown(timeout=60)
    server.close()


def send(capsys, *argv) -> tuple[int, str]:
    code = send_main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, (out.out + out.err).strip()


def test_send_drives_a_watched_loop(watched, capsys):
    run_dir = watched.run.run_dir
    assert send(capsys, run_dir, "lr", "0.2") == (0, "applied SetLearningRate: lr 0.1 -> 0.2")
    assert [g["lr"] for g in watched.run.optimizer.param_groups] == pytest.approx([0.2, 0.02])
    assert send(capsys, run_dir, "lr", "x0.5") == (0, "applied ScaleLearningRate: lr 0.2 -> 0.1")
    code, said = send(capsys, run_dir, "freeze")
    assert code == 0 and said.startswith("applied SetFrozen: encoder frozen")
    assert not watched.model.encoder.weight.requires_grad
    code, said = send(capsys, run_dir, "test-mode", "both")
    assert code == 1 and said.startswith("rejected SetEvalMode: the loop evaluates its own test set")
    code, said = send(capsys, run_dir, "status")
    assert code == 0 and said.startswith("paused: own epoch 1 step 1 (pid ") and "protocol 1" in said
    code, said = send(capsys, run_dir, "save", "--json")
    answer = json.loads(said)
    assert code == 0 and answer["type"] == "CommandApplied" and (run_dir / "last.pt").is_file()
    assert send(capsys, run_dir, "stop")[0] == 0
    watched.thread.join(30)
    assert watched.run.final_state == "stopped"
    code, said = send(capsys, run_dir, "pause")  # the run has ended: nobody answers
    assert code == 2 and "not live" in said


def test_send_drives_an_engine_run(engine_run, capsys):
    run_dir = engine_run.run_dir
    assert send(capsys, run_dir, "lr", "0.1") == (0, "applied SetLearningRate: lr 0.05 -> 0.1")
    assert engine_run.trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    assert send(capsys, run_dir, "test-mode", "both")[0] == 0
    code, said = send(capsys, run_dir, "optimizer", "nope")
    assert (code, said) == (1, "rejected SwitchOptimizer: unknown optimizer 'nope'")
    code, said = send(capsys, run_dir, "resume")
    assert code == 0 and said.startswith("applied Resume")


def test_send_says_why_it_cannot_reach_a_run_or_read_the_command(tmp_path, capsys):
    code, said = send(capsys, tmp_path / "nowhere", "pause")
    assert code == 2 and "not a deeptui run directory" in said and "deeptui ls" in said
    (tmp_path / "ended").mkdir()
    (tmp_path / "ended" / "config.toml").write_text("")  # a run directory whose run has ended
    code, said = send(capsys, tmp_path / "ended", "pause")
    assert code == 2 and "no control socket" in said
    code, said = send(capsys, tmp_path / "ended", "lr", "fast")
    assert code == 2 and "not a number" in said
    code, said = send(capsys, tmp_path / "ended", "mode", "sideways")
    assert code == 2 and "mode needs one of train, eval" in said


def test_the_protocol_section_names_every_command_and_event():
    import dataclasses

    from deeptui.engine.remote.wire import PROTOCOL
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"### The control socket, protocol {PROTOCOL}", 1)[1].split("\n## ", 1)[0]
    for cls in C.ALL:
        fields = [f.name for f in dataclasses.fields(cls) if f.name != "id"]
        assert f"`{cls.__name__}" in section and all(name in section for name in fields), cls.__name__
    told = [c for c in vars(E).values() if isinstance(c, type) and issubclass(c, E.Event) and c is not E.Event]
    for cls in told:
        assert cls is E.Loading or f"`{cls.__name__}`" in section, cls.__name__  # Loading: the launcher's own


def test_a_command_sent_but_not_answered_in_time_exits_3_not_2(tmp_path, capsys):
    """Bug: no answer within --timeout exited 2, as for a run that cannot be reached, yet the
    command had been sent and applied later: a script that retried on 2 applied it twice."""
    import socket
    import threading

    from deeptui.engine.remote.wire import SOCKET_NAME

    run_dir = tmp_path / "slow"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text("")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(run_dir / SOCKET_NAME))
    server.listen()
    got = []

    def a_run_busy_in_a_long_step():  # takes the command, answers nothing yet
        conn, _ = server.accept()
        got.append(conn.recv(65536))
        threading.Event().wait(5)
        conn.close()

    thread = threading.Thread(target=a_run_busy_in_a_long_step, daemon=True)
    thread.start()
    code, said = send(capsys, run_dir, "lr", "0.5", "--timeout", "0.5")
    assert code == 3 and "sent, but no answer within 0.5 s" in said and "may still apply" in said
    import time

    deadline = time.monotonic() + 60  # the server thread's recv may come after the client gave up
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"SetLearningRate" in got[0]
    server.close()
