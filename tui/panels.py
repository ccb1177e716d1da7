"""The dashboard's text panels as pure functions of the RunView: header, run, timing, error."""

from __future__ import annotations

import math

from rich.text import Text

from deeptui.engine.state import RunState

from .view import RunView, fmt_count, fmt_duration, fmt_number

STATE_STYLE = {
    RunState.RUNNING: "bold green",
    RunState.PAUSED: "bold yellow",
    RunState.TIMING: "bold cyan",
    RunState.COMPILING: "bold cyan",
    RunState.FINISHED: "bold blue",
    RunState.STOPPED: "bold magenta",
    RunState.FAILED: "bold red",
    RunState.INTERRUPTED: "bold red",
    RunState.STARTING: "dim",
}
PALETTE_HINT = " ? keys  ^p commands"  # the footer is cut short on most widths: both hints here


def header(v: RunView, elapsed: float, width: int) -> Text:
    """One line: preset, device, state (and why), elapsed time; the palette hint at the right."""
    t = Text.assemble(
        (" deeptui ", "bold reverse"),
        " ",
        (v.preset or "?", "bold"),
        "  ",
        (v.device or "…", ""),
        "  ",
        (f"● {v.state}", STATE_STYLE.get(v.state, "bold")),
        "  ",
        (fmt_duration(elapsed), ""),
    )
    if v.reason and v.state not in (RunState.RUNNING, RunState.TIMING, RunState.COMPILING, RunState.FINISHED):
        t.append(f"  ({v.reason})", "dim")
    room = max(0, width - len(PALETTE_HINT) - 1)
    t.truncate(room)
    t.pad_right(max(0, room - len(t)))
    t.append(PALETTE_HINT, "dim")
    return t


def run_panel(v: RunView) -> Text:
    """Progress, speed, model, optimizer and its hyperparameters, freeze state, mode, last figures."""
    t = Text()
    ep_total = f"/{v.epochs}" if v.epochs else ""
    total = v.total_steps
    epoch = min(v.epoch, v.epochs) if v.epochs else v.epoch
    t.append(f"epoch {epoch}{ep_total}  step {v.step}" + (f"/{total}" if total else "") + "\n")
    bar_w = 18
    filled = int(round(v.progress * bar_w))
    t.append("█" * filled, "green")
    t.append("░" * (bar_w - filled), "dim")
    t.append(f" {100 * v.progress:3.0f}%\n")
    if v.finished:  # the run's result instead of an ETA and the last interval's speed
        result_lines(t, v)
    else:
        t.append(f"ETA {fmt_duration(v.eta_s())}  {v.samples_per_s:,.0f} samples/s\n")
    if v.model:
        t.append(f"{v.model} ", "bold")
        t.append(f"{fmt_count(v.parameters)} parameters\n", "dim")
    t.append(f"{v.optimizer or '…'}", "bold")
    t.append(f"  lr {v.lr:.4g}" if v.lr else "")
    t.append(f" {v.lr_schedule}\n" if v.lr_schedule else "\n", "dim")
    params = " ".join(p for p in v.optimizer_params.split() if not p.startswith("lr="))
    if params:
        t.append(f"  {params}\n", "dim")
    if math.isfinite(v.clipped):
        t.append("  clipped ", "dim")
        t.append(f"{100 * v.clipped:.0f}%", "bold yellow" if v.clipped > 0.5 else "")
        t.append(" of the last steps\n", "dim")
    feats = "n/a" if v.has_features is False else ("frozen" if v.frozen else "trainable")
    t.append((", ".join(v.freeze_modules) or "features") + " ", "dim")
    t.append(feats, "bold cyan" if v.frozen else "")
    t.append("  mode ", "dim")
    t.append(v.mode + "\n", "bold yellow" if v.mode == "eval" else "")
    c = v.curves
    if c.train_loss:
        t.append("loss ", "dim")
        t.append(fmt_number(c.last_loss), "" if math.isfinite(c.last_loss) else "bold red")
        if math.isfinite(c.last_accuracy):  # a watched loop may not count its right predictions
            t.append("  acc ", "dim")
            t.append(f"{100 * c.last_accuracy:.1f}%")
        t.append("\n")
    if math.isfinite(c.test_error("eval")):
        t.append("test error ", "dim")
        t.append(f"{c.test_error('eval'):.2f}%\n")
    if math.isfinite(c.test_error("train")):
        t.append("test error ", "dim")
        t.append(f"{c.test_error('train'):.2f}%", "bold")
        t.append(" in train mode\n", "dim")
    elif v.eval_mode != "eval":
        t.append(f"test set in {'eval+train' if v.eval_mode == 'both' else v.eval_mode} mode\n", "dim")
    if v.device.startswith("cuda"):
        t.append("GPU ", "dim")  # allocated / reserved now, and the interval's peak
        t.append(f"{v.gpu_memory_mb:,.0f}/{v.gpu_reserved_mb:,.0f} MiB")
        t.append(f" peak {v.gpu_peak_mb:,.0f}\n", "dim")
    t.rstrip()
    return t


def result_lines(t: Text, v: RunView) -> None:
    """A run that has ended: its best test error and epoch, wall time and average throughput,
    one fact a line so that each fits the side panel's narrowest width (30 columns)."""
    best = v.best_test
    t.append(f"{v.state} ", STATE_STYLE.get(v.state, "bold"))
    t.append(f"after {fmt_duration(v.time_s)}\n", "")
    if best is not None:
        t.append("best ", "dim")
        t.append(f"{best[0]:.2f}%", "bold")
        t.append(f" at epoch {best[1]}\n", "dim")
    if v.average_samples_per_s > 0:
        t.append(f"{v.average_samples_per_s:,.0f} samples/s average\n", "dim")


def timing_shown(v: RunView) -> bool:
    """The timing panel takes room once a timing exists or runs."""
    return v.timing is not None or v.state == RunState.TIMING or v.timing_progress[1] > 0


def timing_panel(v: RunView) -> Text:
    """The batch-vs-loop ratio and both forms' times, or how to get them."""
    tr = v.timing
    if tr is None:
        done, total = v.timing_progress
        busy = f"timing ... {done}/{total} runs\n" if total else "timing ...\n"
        t = Text(busy if v.state == RunState.TIMING else "press t to time\n", "dim")
        t.append("x @ w.T batched vs a loop", "dim")
        return t
    t = Text()
    t.append(f"{tr.ratio:.1f}x", "bold")
    t.append(" faster batched\n", "dim")
    t.append("batch ", "dim")
    t.append(f"{tr.batch_ms:6.1f} ms {tr.batch_gflops:4.0f} GFLOP/s\n")
    t.append("loop  ", "dim")
    t.append(f"{tr.loop_ms:6.1f} ms {tr.loop_gflops:4.0f} GFLOP/s")
    return t


def error_banner(v: RunView) -> Text | None:
    """Why the run failed and the fix, or None while it has not."""
    err = v.error
    if err is None:
        return None
    t = Text("✖ run failed: ", "bold")
    t.append(err.message)
    if err.fix:
        t.append(f"\nfix: {err.fix}")
    return t
