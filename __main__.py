"""`python -m deeptui` and the `deeptui` command: the command line (deeptui.tui.cli). The build maps
this folder to the package `deeptui` (see pyproject.toml), so this file is deeptui/__main__.py once
installed; it is what --detach and --nproc start in their child processes."""

import os
import signal


def _stopped_while_starting(signum, frame):
    """A signal before deeptui has even been imported: exit as a signal stop does, quietly."""
    os.write(2, f"deeptui: stopped by {signal.Signals(signum).name} while starting; nothing was trained\n".encode())
    os._exit(128 + signum)


def run() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if not (sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN):  # nohup: stays ignored
            signal.signal(sig, _stopped_while_starting)
    from deeptui.tui.cli import entry  # the handlers above cover this import

    entry()


if __name__ == "__main__":
    run()
