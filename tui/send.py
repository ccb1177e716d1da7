"""`deeptui send RUN COMMAND [VALUE]`: one command to a live run (the engine's or a watched loop's)
over its control socket, for scripts and agents. Prints the run's answer; exit 0 when applied,
1 when rejected, 2 when the run cannot be reached (or the command line is wrong), 3 when it was
sent and no answer came in time (it may still apply: a script must not simply send it again).
Imports no terminal UI library."""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from deeptui.engine import commands as C
from deeptui.engine.errors import EXIT_FAILED, EXIT_OK, EXIT_SETUP, RemoteError, SetupError
from deeptui.engine.remote.wire import MAX_EVENT_LINE, SOCKET_NAME, as_message, connect, encode, lines

from .options import fail, printable
from .runs import find_run, stopped_pid


def _lr(value: str | None) -> C.Command:
    """'0.01' sets the learning rate; 'x0.5' (or '*0.5') scales it."""
    if not value:
        raise ValueError("lr needs a value: a learning rate (lr 0.01) or a factor (lr x0.5)")
    scale = value[:1] in ("x", "*")
    try:
        number = float(value[1:] if scale else value)
    except ValueError:
        raise ValueError(f"lr {value!r}: not a number; fix: lr 0.01, or lr x0.5 to scale") from None
    return C.ScaleLearningRate(factor=number) if scale else C.SetLearningRate(lr=number)


def _needs(command: str, choices: tuple[str, ...], make):
    def build(value: str | None) -> C.Command:
        if value not in choices:
            raise ValueError(f"{command} needs one of {', '.join(choices)}, not {value!r}")
        return make(value)

    return build


# The words a script types, and the command each sends (its value, when it takes one).
VERBS = {
    "pause": lambda v: C.Pause(),
    "resume": lambda v: C.Resume(),
    "stop": lambda v: C.Stop(reason=v or "stopped by deeptui send"),
    "save": lambda v: C.SaveCheckpoint(),
    "lr": _lr,
    "freeze": lambda v: C.SetFrozen(frozen=True),
    "unfreeze": lambda v: C.SetFrozen(frozen=False),
    "mode": _needs("mode", ("train", "eval"), lambda v: C.SetMode(mode=v)),
    "test-mode": _needs("test-mode", ("eval", "train", "both"), lambda v: C.SetEvalMode(mode=v)),
    "optimizer": lambda v: C.SwitchOptimizer(name=v or ""),
    "evaluate": lambda v: C.EvaluateNow(),
    "flush": lambda v: C.FlushLogs(),
    "time": lambda v: C.RunTiming(),  # the batch-vs-loop timing (the t key)
    "restore": lambda v: C.RestoreCheckpoint(which=v or "last"),
}
STATUS = "status"
EXIT_NO_ANSWER = 3  # sent, unanswered: the run applies it at its next step, or not at all


class NoAnswer(RemoteError):
    """The command went to the run, and its answer did not come within the timeout."""


def ask(run_dir: Path, message: dict, timeout: float) -> dict:
    """Send one message; the line that answers it: the command's CommandApplied, CommandRejected
    or Error (matched by id), or a Status. RemoteError when no answer comes."""
    deadline = time.monotonic() + timeout
    sock = connect(run_dir / SOCKET_NAME, timeout=min(5.0, timeout))
    try:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        sock.sendall(encode(message))
        cid, kind = message.get("id"), message["type"]
        for line in lines(sock.makefile("rb"), MAX_EVENT_LINE):  # the history first, then the live events
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            got = obj.get("type") if isinstance(obj, dict) else None
            if got == STATUS.title() and kind == got:
                return obj
            if got in ("CommandApplied", "CommandRejected") and obj.get("command_id") == cid:
                return obj
            if got == "Error" and obj.get("id") == cid:
                return obj
            sock.settimeout(max(0.1, deadline - time.monotonic()))
    except TimeoutError:
        raise NoAnswer(
            f"{run_dir}: sent, but no answer within {timeout:g} s; it may still apply at the run's next step",
            fix="do not send it again blindly: look at the run (deeptui attach), or use a longer --timeout",
        ) from None
    except OSError as e:
        raise RemoteError(f"{run_dir}: the connection failed ({e.strerror or e})") from None
    finally:
        sock.close()
    raise RemoteError(f"{run_dir}: the run ended before it answered", fix="deeptui show it")


def describe(answer: dict) -> str:
    kind = answer.get("type")
    if kind == "CommandApplied":
        return f"applied {answer.get('command')}: {answer.get('detail')}"
    if kind == "CommandRejected":
        return f"rejected {answer.get('command')}: {answer.get('reason')}"
    if kind == "Error":
        return f"refused: {answer.get('message')}"
    loss = answer.get("loss")
    figures = f" loss {loss:.4g}" if isinstance(loss, (int, float)) else ""
    return (
        f"{answer.get('state')}: {answer.get('preset')} epoch {answer.get('epoch')} step {answer.get('step')}"
        f"{figures} (pid {answer.get('pid')}, protocol {answer.get('protocol', '?')})"
    )


def send_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="deeptui send",
        description="Send one command to a live run and print its answer: exit 0 applied, 1 rejected, "
        "2 the run cannot be reached, 3 sent and not answered in time (it may still apply). "
        "Commands: " + ", ".join([*VERBS, STATUS]) + ".",
    )
    p.add_argument("run", help="the run directory, or its name as deeptui ls lists it")
    p.add_argument("command", choices=[*VERBS, STATUS], metavar="COMMAND", help="what to do: " + ", ".join(VERBS))
    p.add_argument("value", nargs="?", help="lr: 0.01 or x0.5; mode: train|eval; test-mode: eval|train|both; ...")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answer (default 60)")
    p.add_argument("--json", action="store_true", help="print the answer as the socket's JSON line")
    p.add_argument("--log-dir", help="where to look for a run by name too (default: $DEEPTUI_LOG_DIR, else ./runs)")
    args = p.parse_args(argv)
    if args.command == STATUS:
        message = {"type": "Status"}
    else:
        try:
            command = VERBS[args.command](args.value)
        except ValueError as e:
            return fail(str(e))
        message = {**as_message(command), "id": random.randrange(1, 2**40) << 16}
    target = Path(args.run)
    try:  # a run directory (or its control.sock), or a name or unique prefix that `deeptui ls` prints
        run_dir = find_run(
            str(target.parent if target.name == SOCKET_NAME else target), args.log_dir and Path(args.log_dir)
        )
    except SetupError as e:
        return fail(str(e))
    pid = stopped_pid(run_dir)
    if pid is not None:
        return fail(f"{run_dir}: the run's process (pid {pid}) is stopped (SIGSTOP or ctrl+z); fix: kill -CONT {pid}")
    try:
        answer = ask(run_dir, message, args.timeout)
    except NoAnswer as e:
        return fail(str(e), EXIT_NO_ANSWER)
    except RemoteError as e:
        return fail(str(e), EXIT_SETUP)
    print(json.dumps(answer) if args.json else printable(describe(answer)), flush=True)
    return EXIT_OK if answer.get("type") in ("CommandApplied", "Status") else EXIT_FAILED
