"""`deeptui show [RUN ...]`: runs that have ended (finished, stopped, failed, killed),
rebuilt from their CSV files. One run: the usual dashboard, read-only. Several: their train loss
and test error overlaid (x: step, samples seen or time: key x), a table of their final figures and
of the config keys that differ; n shows the next run's panels and events. Headless (or piped):
each run's summary and the differences, as plain lines."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.text import Text

from deeptui.engine.errors import ConfigError, SetupError
from deeptui.engine.history import HistorySession

from . import actions
from .dashboard import Panel, Plot
from .options import fail, front_end
from .plots import overlay_legend, overlay_plot, run_color, run_glyph
from .run_app import RunApp
from .runs import find_run, run_dirs
from .summary import summary_lines
from .view import RunView, Series, fmt_duration

X_AXES = ("step", "samples", "time")


def view_of(session: HistorySession) -> RunView:
    view = RunView(preset=session.cfg.run.name, batch_size=session.cfg.data.batch_size)
    for ev in session.events.read(0)[0]:
        view.apply(ev)
    return view


def curves(view: RunView, axis: str) -> tuple[Series, Series]:
    """(train loss, test error % in eval mode) of a run against step, samples seen or seconds:
    the training rows as the view's Lod holds them (bounded, whatever the run's length)."""
    lod = view.curves.train.lod
    loss = Series.of_lod(lod, axis)
    error = Series()
    for ev in view.curves.tests["eval"]:
        x = {"step": ev.step, "samples": lod.step_to("samples", ev.step), "time": ev.time_s}[axis]
        error.add(x, ev.test_error_pct)
    return loss, error


def flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and prefix == "":
            out.update(flat(v, f"{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(sessions: list[HistorySession]) -> list[tuple[str, list[str]]]:
    """The config keys whose values differ between the runs (run.name aside), with the values."""
    configs = [flat(s.cfg.to_dict()) for s in sessions]
    keys = sorted({k for c in configs for k in c} - {"run.name"})
    return [(k, [str(c.get(k, "-")) for c in configs]) for k in keys if len({str(c.get(k)) for c in configs}) > 1]


def runs_table(sessions: list[HistorySession], views: list[RunView], selected: int) -> Text:
    t = Text()
    for i, (s, v) in enumerate(zip(sessions, views)):
        t.append(f"{run_glyph(i)[1]} ", "#%02x%02x%02x" % run_color(i))
        t.append(f"{i + 1} {s.run_dir.name}\n", "bold reverse" if i == selected else "bold")
        best = f"best {v.best_test[0]:.1f}% (e{v.best_test[1]})" if v.best_test else "no test row"
        t.append(f"  {s.final_state}, {v.step} steps, {fmt_duration(v.time_s)}, {best}\n", "dim")
    t.rstrip()
    return t


def differences_text(sessions: list[HistorySession]) -> Text:
    diffs = differences(sessions)
    if not diffs:
        return Text("the same config (but run.name)", "dim")
    t = Text()
    for key, values in diffs:
        t.append(f"{key}\n", "bold")
        t.append("  " + " | ".join(values) + "\n")
    t.rstrip()
    return t


class OneRunApp(RunApp):
    """The dashboard over one run that has ended: its views and files, none of the steering keys."""

    ACTIONS = actions.SHOW_ONE
    BINDINGS = actions.bindings(actions.SHOW_ONE)


class ShowApp(RunApp):
    """Several runs that have ended, overlaid: their own keys (n, x), none of the steering ones."""

    ACTIONS = actions.SHOW_MANY
    BINDINGS = actions.bindings(actions.SHOW_MANY)

    def __init__(self, sessions: list[HistorySession], **kw):
        self.sessions = sessions
        self.views = [view_of(s) for s in sessions]  # a long run's start and end until read whole
        self.generations = [s.generation for s in sessions]
        self.selected = 0
        self.axis = "step"
        self.version = 0  # bumped when the x axis changes: the overlays are rebuilt
        super().__init__(sessions[0], **kw)

    def overlay(self, which: int):
        return [(s.run_dir.name, curves(v, self.axis)[which]) for s, v in zip(self.sessions, self.views)]

    def plots(self) -> list[Plot]:
        legend = overlay_legend([str(i + 1) for i in range(len(self.sessions))])
        return [
            Plot(
                "loss",
                lambda w, h: overlay_plot(self.overlay(0), w, h, self.log_scale),
                lambda: self.version,
                lambda compact: (f"train loss · x: {self.axis} (x switches)", legend),
            ),
            Plot(
                "accuracy",
                lambda w, h: overlay_plot(self.overlay(1), w, h),
                lambda: self.version,
                lambda compact: (f"test error % · x: {self.axis}", legend),
            ),
        ]

    def panels(self) -> list[Panel]:
        return [
            Panel("run", lambda: runs_table(self.sessions, self.views, self.selected), "runs (n: next)"),
            Panel("timing", lambda: differences_text(self.sessions), "config differences"),
        ]

    def poll(self) -> None:
        """A run read whole since (its reader thread is done): its view again, from all of it."""
        filled = False
        for i, s in enumerate(self.sessions):
            if s.generation != self.generations[i]:
                self.generations[i] = s.generation
                self.views[i] = view_of(s)
                filled = True
        if filled:
            self.version += 1
        super().poll()
        if filled:
            self.refresh_view(True)

    def action_next_run(self) -> None:
        self.selected = (self.selected + 1) % len(self.sessions)
        self.switch_session(self.sessions[self.selected], view_of(self.sessions[self.selected]))
        self.refresh_view(True)

    def action_x_axis(self) -> None:
        self.axis = X_AXES[(X_AXES.index(self.axis) + 1) % len(X_AXES)]
        self.version += 1
        if self.dashboard is not None:
            self.dashboard.apply_titles()
        self.refresh_view(True)


def show_headless(sessions: list[HistorySession]) -> int:
    for s in sessions:
        for line in summary_lines(view_of(s), s.run_dir):
            print(line)
        print()
    if len(sessions) > 1:
        diffs = differences(sessions)
        print("config differences:" if diffs else "config differences: none (but run.name)")
        width = max((len(k) for k, _ in diffs), default=0)
        for key, values in diffs:
            print(f"  {key:<{width}}  " + " | ".join(values))
    return 0


def open_runs(names: list[str], log_dir: str | None = None, progressive: bool = False) -> list[HistorySession]:
    """The runs named (run directories, or names and unique prefixes that deeptui ls prints); no
    name: the newest run. `progressive`: a long run drawn from its start and end first."""
    where = Path(log_dir) if log_dir else None
    if not names:
        newest = run_dirs(where)
        if not newest:
            raise ConfigError("no runs to show", fix="start one (deeptui PRESET), or pass --log-dir or a run directory")
        return [HistorySession(newest[0], progressive=progressive)]
    return [HistorySession(find_run(name, where), progressive=progressive) for name in names]


def show_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="deeptui show", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="run directories, or run names (or unique prefixes) as deeptui ls prints them; none: the newest run",
    )
    p.add_argument("--log-dir", help="where to look for runs too (default: $DEEPTUI_LOG_DIR, else ./runs)")
    p.add_argument("--headless", action="store_true", help="plain lines: each run's summary, the differences")
    args = p.parse_args(argv)
    dashboard = front_end(args.headless) != "headless"
    try:  # the dashboard draws each run's start and end first, then the whole of it
        sessions = open_runs(args.runs, args.log_dir, progressive=dashboard)
    except SetupError as e:
        return fail(str(e))
    if not dashboard:  # read whole: its summary's samples/s and best test error need every row
        return show_headless(sessions)
    app = OneRunApp(sessions[0]) if len(sessions) == 1 else ShowApp(sessions)
    app.run()
    return 0
