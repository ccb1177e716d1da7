"""The command line resolved once (issue 21 item 8): one typed Request with every override applied as
values, one table from (kind of run, front end) to the function that runs it, subcommands as a
table, the engine loading its own checkpoint, the control socket as a context manager."""

from __future__ import annotations

import pytest

from deeptui.engine import events as E
from deeptui.engine.errors import RemoteError
from deeptui.tui import cli, runner
from deeptui.tui.cli import build_parser, main
from deeptui.tui.request import resolve
from tests.conftest import ROOT, EventReader


def request(*argv: str):
    return resolve(build_parser().parse_args(list(argv)), list(argv))


def test_flags_are_values_in_the_config_and_the_front_end_is_decided_once(tmp_path):
    odd = tmp_path / 'we"ird\\dir'
    req = request("quickstart", "--epochs", "3", "--seed", "7", "--log-dir", str(odd), "--set", "optimizer.lr=0.5")
    assert (req.cfg.run.epochs, req.cfg.run.seed, req.cfg.optimizer.lr) == (3, 7, 0.5)
    assert req.cfg.log.dir == str(odd)  # no TOML text made of it and read again
    assert (req.kind, req.front, req.resume) == ("plain", "headless", None)  # pytest's stdout is no terminal
    assert request("landscape").kind == "landscape" and request("compare_batch_size").kind == "compare"


def test_every_kind_and_front_end_has_its_function():
    kinds, fronts = ("plain", "compare", "landscape"), ("dashboard", "headless")
    assert set(runner.FRONT_ENDS) == {(k, f) for k in kinds for f in fronts}


def test_a_subcommand_is_one_entry_in_the_table(monkeypatch, capsys):
    monkeypatch.setitem(cli.SUBCOMMANDS, "hello", lambda argv: print("hello", *argv) or 3)
    assert main(["hello", "world"]) == 3
    assert capsys.readouterr().out == "hello world\n"
    assert {"bench", "attach", "ls", "show", "export"} <= set(cli.SUBCOMMANDS)


def test_the_engine_loads_its_own_checkpoint(make_engine):
    first = make_engine("run.max_steps=3")
    first.run()
    said = []
    again = make_engine("run.max_steps=5", run_dir=None, resume=first.run_dir, say=said.append)
    assert again.run_dir == first.run_dir and again.train.step == 3
    assert said == [f"resuming from {first.run_dir / 'last.pt'} (step 3)"]
    again.data.close()
    again.lock.release()


def test_the_control_socket_is_served_for_a_block_and_a_second_server_raises(make_engine):
    eng = make_engine("run.max_steps=2")
    with runner.serving(eng) as server:
        assert server is not None and (eng.run_dir / "control.sock").exists()
        with pytest.raises(RemoteError, match="another deeptui process serves this run"):
            with runner.serving(eng):
                pass
    assert not (eng.run_dir / "control.sock").exists()
    r = EventReader(eng)
    eng.start()
    r.wait(lambda e: isinstance(e, E.Finished))


def test_a_preset_run_goes_through_the_request(tmp_path, capsys):
    code = main(
        [str(ROOT / "presets" / "quickstart.toml"), "--headless", "--max-steps", "2", "--log-dir", str(tmp_path)]
        + ["--set", "data.train_size=64", "--set", "data.test_size=16", "--set", "model.blocks=1"]
    )
    assert code == 0, capsys.readouterr().err
    (run_dir,) = tmp_path.iterdir()
    assert f'dir = "{tmp_path}"' in (run_dir / "config.toml").read_text()
