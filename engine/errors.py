"""Errors that mean "the run could not start", and the one table from outcomes to exit codes.

Every SetupError carries its message (naming the file or thing at fault) and its fix as fields;
its str() is the one line a front end prints before it exits 2, without a traceback.
"""

from __future__ import annotations

import signal

from .state import RunState


class SetupError(Exception):
    """The run could not start: what is wrong (naming the file or thing at fault) and its fix,
    each a field; str() is the one line for the user (exit 2)."""

    def __init__(self, message: str = "", fix: str = ""):
        super().__init__(message, fix)
        self.message, self.fix = message, fix

    def __str__(self) -> str:
        return f"{self.message}; fix: {self.fix}" if self.fix else self.message

    def __reduce__(self):
        return (type(self), (self.message, self.fix))


class ConfigError(SetupError, ValueError):
    """A preset or override that cannot be used."""


class DataError(SetupError):
    """A data set that cannot be used: the path, the fault, the fix."""


class DeviceError(SetupError):
    """The device asked for is not available; the message says what to use instead."""


class FactoryError(SetupError):
    """A model or data factory (model.factory, data.factory) that cannot be imported, called or used."""


class WeightsError(SetupError):
    """Pretrained weights asked for but not available."""


class RunDirError(SetupError):
    """The log directory cannot be used."""


class CheckpointError(SetupError):
    """A checkpoint that cannot be used."""


class RemoteError(SetupError):
    """No live run at the given place, or its control socket cannot be served."""


EXIT_OK, EXIT_FAILED, EXIT_SETUP = 0, 1, 2
# Stopped by a signal: 128 + its number, after a checkpoint (130 Ctrl+C, 143 SIGTERM, 129 SIGHUP).
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129, signal.SIGPIPE: 141}
# SIGPIPE stands for a closed output (`deeptui ... | head`): Python ignores the signal itself and
# a write raises BrokenPipeError, which the headless front end turns into the same clean stop.
# Its output could not be written (a full disk behind a redirect, an I/O error, a reader that
# stopped reading): stopped as for a signal, exit 74 (EX_IOERR of sysexits.h).
EXIT_OUTPUT = 74
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # the ones a run installs handlers for


def stop_signals(wanted=STOP_SIGNALS) -> list:
    """The signals of `wanted` that may stop a run: SIGHUP only where it is not ignored, since
    `nohup deeptui ...` asks the run to outlive its terminal."""
    return [s for s in wanted if not (s == signal.SIGHUP and signal.getsignal(s) == signal.SIG_IGN)]


def exit_code(final_state: str, bad_input: bool = False) -> int:
    """0 for a run that finished or that the user stopped; 1 for one that failed (or never ended);
    2 for one that failed on its input (a corrupt sample met while training), as before the start."""
    if final_state and RunState.of(final_state).ok:
        return EXIT_OK
    return EXIT_SETUP if bad_input and final_state == RunState.FAILED else EXIT_FAILED
