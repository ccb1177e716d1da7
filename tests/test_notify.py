"""Telling the user: run.notify_command with the run's summary in its environment (timeout,
failure marked in events.csv, never fatal), and in the dashboard the bell and OSC 9 / OSC 777
when a run finishes, fails or pauses on a non-finite loss while no one is looking."""

from __future__ import annotations

import contextlib
import csv
import math
import os
import signal
import time

import pytest
from textual import events as tev

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine import notify
from deeptui.tui.app import DeeptuiApp
from deeptui.tui.notify import IDLE_SECONDS, sequences
from tests.conftest import EventReader, tiny_config
from tests.fake import FakeSession
from tests.pilot import until


def marks(run_dir) -> list[tuple[str, str]]:
    return [(r["event"], r["detail"]) for r in csv.DictReader(open(run_dir / "events.csv"))]


def test_notify_command_gets_the_runs_summary_when_it_finishes(make_engine, tmp_path):
    out = tmp_path / "told.txt"
    cmd = f'printf "%s\\n" "$DEEPTUI_SUMMARY" "$DEEPTUI_EVENT" "$DEEPTUI_STEP" "$DEEPTUI_TEST_ERROR_PCT" > {out}'
    eng = make_engine("run.epochs=1", "run.max_steps=4", f"run.notify_command='{cmd}'")
    assert eng.run() == "finished"
    summary, event, step, test_error = out.read_text().splitlines()
    assert summary.startswith("deeptui: tiny finished at epoch 1/1, step 4 after 0:00:")
    assert "train loss" in summary and "test error" in summary and str(eng.run_dir) in summary
    assert (event, step) == ("finished", "4") and 0 <= float(test_error) <= 100
    names = [m[0] for m in marks(eng.run_dir)]
    assert names[-2:] == ["notify", "finished"]  # marked, and the run's last word is still its end


def test_a_failing_or_hanging_notify_command_is_logged_and_never_fatal(make_engine, monkeypatch):
    eng = make_engine("run.max_steps=2", "run.notify_command='echo boom >&2; exit 3'")
    assert eng.run() == "finished"
    said = "finished: run.notify_command exit 3: boom; the run goes on"
    assert ("notify_failed", said) in marks(eng.run_dir)  # one event: the warning and its row
    warnings = [e.message for e in eng.events.read(0)[0] if isinstance(e, E.Warning)]
    assert said in warnings

    monkeypatch.setattr(notify, "TIMEOUT_S", 0.5)
    eng = make_engine("run.max_steps=2", "run.notify_command='sleep 30 & sleep 30'")
    started = time.monotonic()
    assert eng.run() == "finished" and time.monotonic() - started < 20
    said = "finished: run.notify_command timed out after 0.5 s and was killed; the run goes on"
    assert ("notify_failed", said) in marks(eng.run_dir)


def test_a_notify_command_that_starts_its_own_session_never_holds_the_end_of_the_run(make_engine, tmp_path):
    # `setsid sleep 60 &` leaves a grandchild outside the command's process group; it inherits
    # the command's stderr, so a reader that waits for that to close waited the whole 60 s
    pid_file = tmp_path / "escaped.pid"
    cmd = f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 60' & sleep 30"
    eng = make_engine("run.max_steps=2", f'run.notify_command="{cmd}"')
    eng.notifier.timeout = 1.0
    started = time.monotonic()
    try:
        assert eng.run() == "finished"
        assert time.monotonic() - started < 25  # the timeout (1 s) and the run, not the 60 s sleep
        said = "finished: run.notify_command timed out after 1 s and was killed; the run goes on"
        assert ("notify_failed", said) in marks(eng.run_dir)
    finally:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_pause_on_a_non_finite_loss_notifies_without_holding_the_training_thread(make_engine, tmp_path):
    out = tmp_path / "told.txt"
    eng = make_engine(
        "optimizer.lr=1e30", "run.on_nan='pause'", f"run.notify_command='sleep 1; echo $DEEPTUI_EVENT > {out}'"
    )
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.StateChanged) and e.state == "paused")
    assert not out.exists()  # the command is still sleeping: the run did not wait for it
    reply = r.answer(eng.send(C.EvaluateNow()))  # commands are answered meanwhile
    assert isinstance(reply, E.CommandApplied)
    deadline = time.monotonic() + 30
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.read_text().strip() == "paused"
    assert eng.shutdown(timeout=60)
    assert any(m[0] == "notify" and m[1].startswith("paused: ") for m in marks(eng.run_dir))


def test_osc_sequences_carry_the_notification_and_pass_through_tmux():
    text = sequences("deeptui: quickstart finished", "done;\x1b[31m red")
    assert text.startswith("\a")
    assert "\x1b]9;deeptui: quickstart finished: done; [31m red\x07" in text
    assert "\x1b]777;notify;deeptui: quickstart finished;done; [31m red\x07" in text
    wrapped = sequences("t", "b", tmux=True)
    assert "\x1bPtmux;\x1b\x1b]9;t: b\x07\x1b\\" in wrapped


def start_script() -> list[E.Event]:
    common = dict(optimizer="sgd", optimizer_params="lr=0.05", lr=0.05, frozen=False, mode="train")
    return [
        E.RunStarted(
            0.1, 1, 0, preset="tiny", run_dir="/runs/tiny", device="cpu", model="monster", parameters=10, epochs=1,
            steps_per_epoch=10, max_steps=0, has_features=True, optimizer_choices=("sgd",),
        ),
        E.StateChanged(0.2, 1, 0, state="running", **common),
    ]  # fmt: skip


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.asyncio
async def test_the_dashboard_rings_only_when_no_one_is_looking():
    session = FakeSession(tiny_config(), start_script(), run_dir="/runs/tiny")
    app = DeeptuiApp(session)
    written: list[str] = []
    async with app.run_test(size=(100, 30)) as pilot:
        clock = Clock()
        app.alerts.write, app.alerts.clock = written.append, clock
        app.alerts.input_seen()
        await until(pilot, lambda: "running" in app.view.state, what="running")
        nan = "training loss is nan at step 8: paused; resume, restore the last checkpoint or halve the lr"
        session.events.append(E.NonFiniteLoss(1.0, 1, 8, loss=math.nan, policy="pause", message=nan))
        await until(pilot, lambda: "warning: training loss is nan" in "\n".join(t for _, t in app.view.log))
        assert written == []  # the terminal has the focus and a key was pressed just now
        clock.now += IDLE_SECONDS + 1  # a minute without a key: no one is looking
        session.events.append(E.NonFiniteLoss(1.5, 1, 9, loss=math.nan, policy="pause", message=nan))
        await until(pilot, lambda: len(written) == 1, what="the bell for the pause")
        assert written[0].startswith("\a") and "\x1b]9;deeptui: tiny paused: training loss is nan" in written[0]
        await pilot.press("l")  # a key: someone is back
        app.post_message(tev.AppBlur())  # ... then the terminal loses the focus (another window)
        await until(pilot, lambda: not app.app_focus, what="blur")
        session.events.append(E.Finished(2.0, 1, 10, state="finished", run_dir="/runs/tiny"))
        await until(pilot, lambda: len(written) == 2, what="the bell for the end")
        assert "\x1b]777;notify;deeptui: tiny finished;finished (/runs/tiny)\x07" in written[1]
        await pilot.press("q")


def test_the_end_of_a_run_waits_one_notify_timeout_not_one_per_command_still_running(make_engine, tmp_path):
    """Bug: at the run's end the final notify_command started only once a pause's was over, so the
    end could wait two timeouts. Now it starts at once, and both are waited for together."""
    import threading

    started, release = tmp_path / "started", tmp_path / "release"
    cmd = f'echo "$DEEPTUI_EVENT" >> {started}; while [ ! -f {release} ]; do sleep 0.05; done'
    eng = make_engine("run.max_steps=2", f"run.notify_command='{cmd}'")
    eng.notifier.timeout = 120.0
    eng.notifier.fire("paused", "a test")
    ending = threading.Thread(target=eng.notifier.fire, args=("finished",), kwargs={"wait": True})
    ending.start()
    try:
        deadline = time.monotonic() + 60
        while not (started.exists() and sorted(started.read_text().split()) == ["finished", "paused"]):
            assert time.monotonic() < deadline, "the final command waited for the pause's to end"
            time.sleep(0.05)
        assert ending.is_alive()  # the end waits for both
    finally:
        release.write_text("")
    ending.join(60)
    assert not ending.is_alive()
    eng.report.log.flush()
    told = [m[1].split(":")[0] for m in marks(eng.run_dir) if m[0] == "notify"]
    assert sorted(told) == ["finished", "paused"]  # each marked once
