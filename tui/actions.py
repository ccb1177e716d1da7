"""The one action table of the dashboards: each action once, with its keys, title, help text,
group (Steer, View, Files), footer label, the engine command it sends (a steering action) and what
it needs to act; each app's bindings, footer, command palette, `?` help and the README's key tables
come from it. An action's handler is its app's `action_<id>` method.

Adding a key: one Action in the app's table below, and its `action_<id>` method on the app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textual.app import SystemCommand
from textual.binding import Binding
from textual.markup import escape

Group = Literal["Steer", "View", "Files"]
GROUPS: tuple[Group, ...] = ("Steer", "View", "Files")


@dataclass(frozen=True)
class Action:
    id: str  # the handler is the app's action_<id>
    keys: str  # Textual's key names, comma-separated: "p,space"
    title: str  # the command palette's entry
    help: str  # one line: the ? help and the README table
    group: Group
    footer: str = ""  # the footer's label; "" keeps it out of the footer (the palette and ? list it)
    display: str = ""  # how the keys are written for people: "p, space"; default: the keys
    command: str = ""  # the engine command it sends: a steering action cannot act once the run has ended
    needs: str = ""  # a condition of NEEDS it must meet to act

    @property
    def shown_keys(self) -> str:
        return self.display or ", ".join(self.keys.split(","))


# What an action may need, and the line that says it is missing: (condition of the app) -> reason.
NEEDS = {
    "features": lambda app: "this model has no pretrained features" if app.view.has_features is False else None,
    "several runs": lambda app: "only one run is shown" if len(getattr(app, "sessions", ())) < 2 else None,
}


def why_not(app, action: Action) -> str | None:
    """Why `action` cannot act in `app` now, or None when it can."""
    v = app.view
    if action.command and (v.finished or (app.started and not app.session.alive)):
        return f"the run has {v.state if v.state.ended else 'ended'}"
    return NEEDS[action.needs](app) if action.needs else None


def bindings(actions: tuple[Action, ...]) -> list[Binding]:
    """The Textual bindings of a table: footer order is table order (quit first, so that it shows
    even on a narrow terminal)."""
    return [
        Binding(
            a.keys,
            a.id,
            a.footer or a.title,
            show=bool(a.footer),
            key_display=a.display.split(",")[0].strip() if a.display else None,
            tooltip=a.help,
            id=a.id,
        )
        for a in actions
    ]


def plain(text: str) -> str:
    """An action's help as the terminal shows it (the README's `code` marks left out)."""
    return text.replace("`", "")


def help_entries(actions: tuple[Action, ...], why=lambda action: None) -> list[tuple[str, str, str, str]]:
    """The ? help's lines: (group, keys, what it does, why it cannot act now or ""), by group."""
    entries = [(a.group, a.shown_keys, plain(a.help), why(a) or "") for a in actions]
    return sorted(entries, key=lambda e: GROUPS.index(e[0]))


def palette(actions: tuple[Action, ...], invoke, themes) -> list[SystemCommand]:
    """The command palette's entries: each action once (its title, keys and help), then Textual's
    theme picker; not Textual's own Keys, Quit, Screenshot and Maximize (the table has the first
    three, and a plot maximized is blank)."""
    commands = [  # the palette reads its help as markup: `[schedule]` would be taken for a tag
        SystemCommand(a.title, escape(f"{a.shown_keys}: {plain(a.help)}"), lambda a=a: invoke(a.id)) for a in actions
    ]
    return [*commands, SystemCommand("Theme", "Change the colours", themes)]


def markdown_table(actions: tuple[Action, ...]) -> str:
    """The README's key table of an app."""
    rows = ["| key | does |", "|---|---|"]
    for a in actions:
        keys = ", ".join(f"`{k.strip()}`" for k in a.shown_keys.split(","))
        rows.append(f"| {keys} | {a.help} |")
    return "\n".join(rows)


# ---- the tables ---------------------------------------------------------------------------------

QUIT = Action(
    "quit", "q", "Quit", "quit: stop the run at the next step, checkpoint, flush, print its summary", "Files", "quit"
)
HELP = Action(
    "help",
    "question_mark,f1",
    "Keys",
    "every key and what it does, by group; / filters, escape closes",
    "View",
    "keys",
    display="?, F1",
)
SCREENSHOT = Action(
    "screenshot",
    "ctrl+s",
    "Screenshot",
    "an SVG screenshot of the dashboard, saved in the run directory",
    "Files",
    "shot",
    display="ctrl+s",
)
LOG_SCALE = Action(
    "log_scale",
    "l",
    "Toggle log scale",
    "log-scale loss (it turns on by itself, and says so, when the loss spans orders of magnitude)",
    "View",
    "log",
)
DEPTH = Action(
    "depth",
    "d",
    "Layers by depth",
    "show the layers by depth instead of the accuracy plot: gradient norm, update/weight ratio, weight norm, "
    "activation std and mean, then accuracy again",
    "View",
    "layers",
)
EXPORT = Action(
    "export",
    "e",
    "Export logs as CSV",
    "flush the CSV logs; show them, the config and the checkpoints; copy them to a folder you type",
    "Files",
    "csv",
)

# The plots' own keys (plot_controls.PlotControls): view state, so they act in every dashboard.
PLOTS: tuple[Action, ...] = (
    Action(
        "smoothing",
        "S",
        "Smoothing 0 / 0.6 / 0.9 / 0.99",
        "smoothing of the train curves: 0, 0.6, 0.9, 0.99 (TensorBoard's debiased EMA; the raw line stays, "
        "faint, behind; the title says the value)",
        "View",
        "smooth",
    ),
    Action(
        "x_axis",
        "x",
        "X axis: step / samples / time",
        "the plots' x axis: step, samples seen, or the run's clock (in s, m, h or d)",
        "View",
        "x axis",
    ),
    Action(
        "zoom_in",
        "right_square_bracket",
        "Zoom in on the newest points",
        "x zoom in (the newest half, then quarter, ...: the latest points stay in view while training); "
        "also the mouse wheel over a plot",
        "View",
        "zoom",
        display="]",
    ),
    Action(
        "zoom_out",
        "left_square_bracket",
        "Zoom out",
        "x zoom out (twice the x range); also the mouse wheel over a plot",
        "View",
        display="[",
    ),
    Action("zoom_reset", "0", "Zoom: the whole run", "x zoom: the whole run", "View"),
    Action(
        "outliers",
        "i",
        "Ignore outliers",
        "ignore outliers: the y axis leaves the outermost 2% of the points out (the title says so)",
        "View",
    ),
)

DASHBOARD: tuple[Action, ...] = (
    QUIT,
    Action("pause", "p,space", "Pause / resume", "pause / resume", "Steer", "pause", command="Pause"),
    Action(
        "next_optimizer",
        "o",
        "Next optimizer",
        "next optimizer in `optimizer.choices`",
        "Steer",
        "optim",
        command="SwitchOptimizer",
    ),
    Action(
        "pick_optimizer",
        "O",
        "Pick optimizer ...",
        "pick any optimizer from a list (the preset's choices first)",
        "Steer",
        "pick",
        command="SwitchOptimizer",
    ),
    Action(
        "freeze",
        "f",
        "Freeze / unfreeze features",
        "freeze / unfreeze the pretrained features, or `model.freeze`'s modules (overrides the schedule)",
        "Steer",
        "freeze",
        command="SetFrozen",
        needs="features",
    ),
    Action(
        "mode",
        "m",
        "Train / eval mode",
        "run the training steps in train / eval mode",
        "Steer",
        "mode",
        command="SetMode",
    ),
    Action(
        "eval_mode",
        "M",
        "Test in eval / both / train mode",
        "evaluate the test set in eval mode, in both modes, or in train mode (`run.eval_mode`)",
        "Steer",
        "test mode",
        command="SetEvalMode",
    ),
    Action(
        "lr_up",
        "plus",
        "Learning rate x2",
        "learning rate x2 (overrides `[schedule] lr`)",
        "Steer",
        "lr×2",
        display="+",
        command="ScaleLearningRate",
    ),
    Action(
        "lr_down",
        "minus",
        "Learning rate x0.5",
        "learning rate x0.5 (overrides `[schedule] lr`)",
        "Steer",
        "lr÷2",
        display="-",
        command="ScaleLearningRate",
    ),
    Action(
        "set_lr",
        "L",
        "Set learning rate ...",
        "set the learning rate to a typed value (overrides `[schedule] lr`)",
        "Steer",
        "lr=",
        command="SetLearningRate",
    ),
    Action(
        "time_batch",
        "t",
        "Batch-vs-loop timing",
        "time a batched product against a loop (training pauses meanwhile, with its progress shown); with "
        "`run.auto_timing` the dashboard times it once by itself, the first time the run is paused",
        "Steer",
        "time",
        command="RunTiming",
    ),
    Action("save", "s", "Save checkpoint", "save a checkpoint", "Files", "save", command="SaveCheckpoint"),
    EXPORT,
    LOG_SCALE,
    DEPTH,
    *PLOTS,
    HELP,
    SCREENSHOT,
)

# deeptui show: runs that have ended. One run: the dashboard's views; several: overlaid.
SHOW_QUIT = Action("quit", "q", "Quit", "quit (the run has ended: nothing is stopped)", "Files", "quit")
SHOW_ONE: tuple[Action, ...] = (SHOW_QUIT, EXPORT, LOG_SCALE, DEPTH, *PLOTS, HELP, SCREENSHOT)
SHOW_MANY: tuple[Action, ...] = (
    SHOW_QUIT,
    Action(
        "next_run",
        "n",
        "Next run",
        "next run: its panels and events",
        "View",
        "next run",
        needs="several runs",
    ),
    Action("x_axis", "x", "X axis", "x axis: step, samples seen or time", "View", "x axis"),
    EXPORT,
    LOG_SCALE,
    DEPTH,
    HELP,
    SCREENSHOT,
)

LANDSCAPE: tuple[Action, ...] = (
    Action("quit", "q", "Quit", "write trajectories.csv and quit", "Files", "quit"),
    Action(
        "run",
        "space,p",
        "Run / pause",
        "run / pause every path, a few steps per tick, until `landscape.steps`",
        "Steer",
        "run/pause",
    ),
    Action("step", "n,full_stop", "Step", "one step of the highlighted path", "Steer", "step", display="n, ."),
    Action("next_path", "j,down", "Next path", "highlight the next path", "View", "next", display="j, ↓"),
    Action("previous_path", "k,up", "Previous path", "highlight the previous path", "View", "prev", display="k, ↑"),
    Action("reset", "r", "Reset", "every path back to the start", "Steer", "reset"),
    Action("export", "e", "Write trajectories.csv", "write trajectories.csv into the run directory", "Files", "csv"),
    HELP,
    SCREENSHOT,
)


if __name__ == "__main__":  # python -m deeptui.tui.actions DASHBOARD: a README table
    import sys

    print(markdown_table(globals()[sys.argv[1] if len(sys.argv) > 1 else "DASHBOARD"]))
