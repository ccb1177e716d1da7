"""The machine strip under the dashboard's header: the run's latest SystemStats as one line, as
nvitop would show it (per GPU: utilisation, the device's memory used/total with the allocator's
share beside it, temperature, power; then this process's CPU % and resident memory)."""

from __future__ import annotations

import math

from rich.text import Text

from .view import RunView


def _n(v: float, fmt: str) -> str:
    return "?" if v is None or math.isnan(v) else format(v, fmt)


def machine_strip(v: RunView, enabled: bool = True) -> Text:
    t = Text(" machine ", "bold", no_wrap=True, overflow="ellipsis")
    ev = v.system
    if ev is None:
        if not enabled:
            t.append("off (log.system_seconds = 0)", "dim")
        else:  # a finished run (deeptui show) with no readings will get none
            t.append("no readings in this run" if v.finished else "first reading in a second …", "dim")
        return t
    for name, util, used, total, temp, power in ev.gpus:
        t.append(name, "bold cyan")
        t.append(f" {_n(util, '.0f')}%")
        t.append(f"  {_n(used / 1024, '.1f')}/{_n(total / 1024, '.1f')} GiB")
        if v.device.startswith(name) and v.gpu_reserved_mb:  # the allocator's share of the device's memory
            t.append(f" (torch {v.gpu_reserved_mb / 1024:.1f})", "dim")
        t.append(f"  {_n(temp, '.0f')}°C  {_n(power, '.0f')} W")
        t.append("  │  ", "dim")
    t.append("cpu", "bold")
    t.append(f" {_n(ev.cpu_pct, '.0f')}%")
    t.append("  rss", "dim")
    t.append(f" {_n(ev.rss_mb / 1024, '.2f')} GiB")
    if ev.note:
        t.append(f"  {ev.note}", "yellow")
    return t
