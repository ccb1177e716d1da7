"""SVG snapshots of the dashboard's layout at 100x30 and 80x24, with a fake session that replays a
fixed list of events and a frozen clock, so nothing depends on time or training speed.

Regenerate after an intended change: pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import dataclasses
import math

from textual.widgets import OptionList

from deeptui.engine import events as E
from deeptui.tui.app import DeeptuiApp
from deeptui.tui.dialogs import OptimizerScreen
from tests.conftest import tiny_config
from tests.fake import FakeSession
from tests.pilot import until

STEPS_PER_EPOCH = 94


# The machine strip's readings: this process on the CPU, or an H200 as NVML reports it.
CPU_READING = dict(cpu_pct=187.0, rss_mb=1240.0)
GPU_READING = dict(cpu_pct=104.0, rss_mb=3420.0, gpus=(("cuda:0", 87.0, 12650.0, 143771.0, 71.0, 250.3),))


def script(epochs_done: int = 3, failed: bool = False, gpu: bool = False, both: bool = False) -> list[E.Event]:
    common = dict(
        optimizer="momentum", optimizer_params="lr=0.05 momentum=0.9 weight_decay=0", lr=0.05, frozen=True, mode="train"
    )
    evs: list[E.Event] = [
        E.RunStarted(
            0.4,
            1,
            0,
            preset="quickstart",
            run_dir="/runs/quickstart-20250101-000000",
            device="cuda:0 NVIDIA H200" if gpu else "cpu",
            model="monster",
            parameters=116_586,
            epochs=5,
            steps_per_epoch=STEPS_PER_EPOCH,
            max_steps=0,
            has_features=True,
            optimizer_choices=("momentum", "sgd", "nesterov", "adam"),
        ),
        E.StateChanged(0.5, 1, 0, state="running", **common),
        E.TimingResult(
            4.1, 1, 0, device="cpu", batch_ms=54.3, loop_ms=281.8, ratio=5.19, batch_gflops=138.0, loop_gflops=26.6
        ),
    ]
    t = 4.5
    for step in range(10, epochs_done * STEPS_PER_EPOCH + 1, 10):
        epoch = step // STEPS_PER_EPOCH + 1
        loss = 2.3 * math.exp(-step / 150) + 0.35 + 0.08 * math.sin(step / 7)
        acc = min(0.95, 1 - loss / 2.6)
        t += 0.4
        opt = "momentum" if step < 130 else "adam"
        evs.append(
            E.StepMetrics(
                round(t, 1),
                epoch,
                step,
                loss=loss,
                accuracy=acc,
                lr=0.05,
                optimizer=opt,
                frozen=step < STEPS_PER_EPOCH,
                mode="train",
                samples_per_s=1600.0,
                samples_seen=64 * step,
                train_s=round(t, 1),  # no pause: training time is the run's time
                **(dict(gpu_memory_mb=9800.0, gpu_reserved_mb=11264.0, gpu_peak_mb=10400.0) if gpu else {}),
            )
        )
        if step == 20:
            evs.append(E.SystemStats(round(t, 1), epoch, step, **(GPU_READING if gpu else CPU_READING)))
        if step == 90:
            evs.append(E.EpochEnd(round(t, 1), 1, 94, test_loss=1.9, test_accuracy=0.31, test_error_pct=69.0))
            if both:  # the test set in train mode too (run.eval_mode = "both"): a second test series
                evs.append(
                    E.EpochEnd(round(t, 1), 1, 94, test_loss=2.1, test_accuracy=0.22, test_error_pct=78.0, mode="train")
                )
            evs.append(E.CheckpointSaved(round(t, 1), 2, 94, path="/runs/quickstart-20250101-000000/checkpoint.pt"))
            evs.append(
                E.ScheduleAction(
                    round(t, 1), 2, 94, action="unfreeze", detail="features trainable at epoch 2 (schedule)"
                )
            )
        if step == 130:
            evs.append(
                E.CommandApplied(
                    round(t, 1),
                    2,
                    130,
                    command_id=1,
                    command="SwitchOptimizer",
                    detail="momentum -> adam; lr=0.05 betas=(0.9, 0.999); state starts fresh",
                )
            )
            evs.append(
                E.StateChanged(
                    round(t, 1),
                    2,
                    130,
                    state="running",
                    optimizer="adam",
                    optimizer_params="lr=0.05 betas=(0.9, 0.999) eps=1e-08",
                    lr=0.05,
                    frozen=False,
                    mode="train",
                )
            )
        if step == 180:
            evs.append(E.EpochEnd(round(t, 1), 2, 188, test_loss=1.2, test_accuracy=0.58, test_error_pct=42.0))
            if both:
                evs.append(
                    E.EpochEnd(
                        round(t, 1), 2, 188, test_loss=1.5, test_accuracy=0.45, test_error_pct=55.0, mode="train"
                    )
                )
                evs.append(  # two markers at one step: drawn side by side
                    E.CommandApplied(round(t, 1), 2, 180, command_id=3, command="SetMode", detail="train -> eval")
                )
                evs.append(
                    E.CommandApplied(round(t, 1), 2, 180, command_id=4, command="ScaleLearningRate", detail="x2")
                )
            evs.append(
                E.CommandRejected(round(t, 1), 3, 190, command_id=2, command="SetMode", reason="already in train mode")
            )
    if failed:
        evs.append(
            E.RunError(
                round(t, 1),
                3,
                280,
                message="CUDA out of memory",
                fix="use a smaller batch, e.g. --set data.batch_size=32",
            )
        )
        evs.append(
            E.StateChanged(
                round(t, 1),
                3,
                280,
                state="failed",
                reason="CUDA out of memory",
                optimizer="adam",
                optimizer_params="lr=0.05 betas=(0.9, 0.999) eps=1e-08",
                lr=0.05,
                frozen=False,
                mode="train",
            )
        )
        evs.append(
            E.Finished(
                round(t, 1),
                3,
                280,
                state="failed",
                run_dir="/runs/quickstart-20250101-000000",
                reason="CUDA out of memory",
            )
        )
    else:
        evs.append(E.EpochEnd(round(t, 1), 3, 282, test_loss=0.9, test_accuracy=0.7, test_error_pct=30.0))
    return evs


class QuietApp(DeeptuiApp):
    """No toasts: they come and go on a timer, which would make the snapshots flaky."""

    def notify(self, *args, **kwargs) -> None:
        pass


def make_app(**kw) -> DeeptuiApp:
    cfg = tiny_config("run.name='quickstart'")
    session = FakeSession(
        cfg, script(**kw), run_dir="/runs/quickstart-20250101-000000", alive=not kw.get("failed", False)
    )
    return QuietApp(session, clock=lambda: 100.0)


async def settle(pilot) -> None:
    await pilot.pause()
    pilot.app.poll()
    pilot.app.refresh_view(True)
    await pilot.pause(0.3)
    pilot.app.refresh_view(True)
    await pilot.pause()
    # the event log's auto-scroll lands after its next layout, which a busy machine may not have
    # reached yet: scroll it to the end once it has its lines, as the user would see it
    if pilot.app.dashboard is not None and pilot.app.dashboard.is_mounted:
        pilot.app.dashboard.query_one("#log").scroll_end(animate=False, immediate=True)
    await pilot.pause()


def test_running_100x30(snap_compare):
    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=settle)


def test_running_80x24(snap_compare):
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=settle)


def test_no_color_80x24(snap_compare, monkeypatch):
    """NO_COLOR: train (braille, faint), smoothed (•), test in eval (o) and train mode (+), two
    markers at one step side by side; told apart by glyph alone."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(make_app(both=True), terminal_size=(80, 24), run_before=settle)


def test_no_color_200x60(snap_compare, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(make_app(both=True), terminal_size=(200, 60), run_before=settle)


def test_failed_run_keeps_plots_and_shows_error(snap_compare):
    assert snap_compare(make_app(failed=True), terminal_size=(100, 30), run_before=settle)


def huge_loss_app() -> DeeptuiApp:
    """A loss that blew up to 1e26 for a while: the labels and the panel must stay compact."""
    evs = script()
    for i, ev in enumerate(evs):
        if isinstance(ev, E.StepMetrics) and 100 <= ev.step <= 160:
            evs[i] = dataclasses.replace(ev, loss=1.0e26 * (1 + ev.step / 1000), accuracy=0.1)
    cfg = tiny_config("run.name='quickstart'")
    return QuietApp(FakeSession(cfg, evs, run_dir="/runs/quickstart-20250101-000000"), clock=lambda: 100.0)


def test_a_huge_loss_keeps_compact_labels_80x24(snap_compare):
    assert snap_compare(huge_loss_app(), terminal_size=(80, 24), run_before=settle)


def test_a_huge_loss_keeps_compact_labels_120x36(snap_compare):
    assert snap_compare(huge_loss_app(), terminal_size=(120, 36), run_before=settle)


def test_optimizer_picker(snap_compare):
    async def open_picker(pilot):
        await settle(pilot)
        await pilot.press("O")
        # the dialog highlights the current optimizer once mounted: wait for that, not for a time
        await until(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, OptimizerScreen)
                and pilot.app.screen.query(OptionList)
                and pilot.app.screen.query_one(OptionList).highlighted is not None
            ),
            what="the picker",
        )
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=open_picker)


def test_machine_strip_on_a_gpu_100x30(snap_compare):
    assert snap_compare(make_app(gpu=True), terminal_size=(100, 30), run_before=settle)


def test_too_small_terminal(snap_compare):
    assert snap_compare(make_app(), terminal_size=(70, 20), run_before=settle)
