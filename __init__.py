"""deeptui: run, watch and steer PyTorch training from a terminal. `deeptui.watch(model, optimizer)`
puts a training loop of your own under deeptui (see README, "Your own training loop"). Importing
deeptui loads nothing heavy: torch and the engine load when watch() is called. The build maps this
folder to the package `deeptui` (pyproject.toml), so this file is deeptui/__init__.py once installed."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deeptui.engine.watch import WatchedRun

__all__ = ["watch"]


def watch(
    model,
    optimizer,
    *,
    name: str = "watched",
    freeze=(),
    optimizers: dict | None = None,
    log_every: int = 50,
    epochs: int = 0,
    steps_per_epoch: int = 0,
    log_dir=None,
    on_nan: str = "auto",
    notify_command: str = "",
) -> WatchedRun:
    """Watch and steer your own training loop; returns the run (use it as a context manager).

    Call `run.step(loss, batch_size=len(x))` after each optimizer step: it logs the loss (kept on
    the device, read back once every `log_every` steps) and applies the commands that came in
    from the dashboard, `deeptui attach`, `deeptui send` (a pause waits there); it returns False
    once a stop was asked for. `run.test(loss, accuracy=...)` logs an evaluation (and ends an
    epoch, unless `steps_per_epoch` counts them). `run.optimizer` is the optimizer in force.

    - name: the run directory is <log_dir>/<name>-<timestamp> (log_dir: $DEEPTUI_LOG_DIR, else ./runs);
      under `deeptui run`, the one that command made.
    - freeze: the modules that freeze and unfreeze act on (dotted names reach inside); default:
      the model's `features` module, if it has one.
    - optimizers: names to factories, e.g. {"adam": lambda params: torch.optim.Adam(params, lr=1e-3)}:
      what an optimizer switch may pick (none given: the switch says why it cannot act).
    - epochs, steps_per_epoch: for the progress bar and the ETA (0: unknown).
    - on_nan: auto (pause with a dashboard, else stop), stop, pause or continue; notify_command: a
      shell command run when the run finishes, fails or pauses on a non-finite loss.
    """
    from deeptui.engine.watch import WatchedRun
    from deeptui.tui.runs import remember

    run = WatchedRun(
        model,
        optimizer,
        name=name,
        freeze=freeze,
        optimizers=optimizers,
        log_every=log_every,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        log_dir=log_dir,
        on_nan=on_nan,
        notify_command=notify_command,
    )
    remember(run.run_dir)  # deeptui ls and attach find it from any folder
    return run
