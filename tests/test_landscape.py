"""Optimizer paths on the 2-D quadratic, with the shipped preset (tests run from the repo root)."""

import csv
import subprocess
import sys

import pytest
import torch

from deeptui.engine.config import OPTIMIZERS, ConfigError, load_config
from deeptui.engine.landscape import PathSpec, Quadratic, Trajectory, from_config, path_specs
from deeptui.tui.landscape_headless import run_headless

PRESET = "presets/landscape.toml"


@pytest.fixture(scope="module")
def cfg():
    return load_config(PRESET)


@pytest.fixture(scope="module")
def finished(cfg):
    """The preset's paths, each run for landscape.steps steps (or until it diverged)."""
    run = from_config(cfg)
    run.run()
    return {t.label: t for t in run.trajectories}


def test_preset_describes_the_lecture_experiment(cfg):
    assert cfg.run.kind == "landscape"
    labels = [s.label for s in path_specs(cfg)]
    for lr in ("0.01", "0.02", "0.04", "0.05", "0.053"):
        assert f"sgd lr={lr}" in labels
    assert "momentum 0.5 lr=0.05" in labels
    adam = [s for s in path_specs(cfg) if s.optimizer == "adam"]
    assert len(adam) == 1 and adam[0].label == "adam lr=0.1"
    assert adam[0].hyper == {"lr": 0.1, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}


def test_every_preset_key_has_a_comment():
    section = None
    for line in open(PRESET, encoding="utf-8"):
        s = line.strip()
        if s.startswith("["):
            section = s
        elif section and "=" in s and not s.startswith(("#", "{")):
            assert "#" in s, f"no comment on: {s}"


def test_stability_limit_lies_between_the_two_sgd_rates(cfg):
    q = Quadratic(cfg.landscape.eigenvalues, cfg.landscape.angle_deg)
    assert 5.0e-2 < q.stability_limit() < 5.3e-2
    assert q.stability_limit() == pytest.approx(2 / 39)
    # A has the preset's eigenvalues, and the minimum is a minimum
    assert sorted(torch.linalg.eigvalsh(q.A).tolist()) == pytest.approx([1.0, 39.0])
    assert float(q.loss(q.minimum)) == 0.0 < float(q.loss(cfg.landscape.start))


def test_paths_use_the_real_torch_optimizers(cfg):
    run = from_config(cfg)
    kinds = {t.label: type(t.optimizer) for t in run.trajectories}
    assert kinds["sgd lr=0.05"] is torch.optim.SGD and kinds["adam lr=0.1"] is torch.optim.Adam
    t = run.trajectories[0]  # sgd lr=0.01: one step is p - lr * A p
    p0 = torch.tensor(cfg.landscape.start, dtype=torch.float64)
    t.step()
    expected = p0 - 0.01 * (run.quad.A @ p0)
    assert t.points[1][1:3] == pytest.approx(expected.tolist())
    assert t.points[1][3] == pytest.approx(float(run.quad.loss(expected)))


def test_sgd_converges_just_below_the_limit_and_diverges_just_above(cfg, finished):
    start = float(Quadratic(cfg.landscape.eigenvalues, cfg.landscape.angle_deg).loss(cfg.landscape.start))
    below, above = finished["sgd lr=0.05"], finished["sgd lr=0.053"]
    assert not below.diverged and below.steps == cfg.landscape.steps
    assert below.last[3] < 1e-3 * start
    assert above.diverged and above.steps < cfg.landscape.steps
    assert above.last[3] > 1e3 * start
    losses = [p[3] for p in above.points]
    assert losses[-1] > losses[-11] > losses[-21]  # growing, not a one-off spike


def test_momentum_beats_plain_sgd_at_the_same_rate(finished):
    sgd, mom = finished["sgd lr=0.05"], finished["momentum 0.5 lr=0.05"]
    assert sgd.steps == mom.steps
    assert mom.distance() < sgd.distance() / 100


def test_adam_reaches_the_minimum(finished):
    adam = finished["adam lr=0.1"]
    assert not adam.diverged
    assert adam.distance() < 0.05


def test_smaller_sgd_rates_are_slower(finished):
    d = [finished[f"sgd lr={lr}"].distance() for lr in ("0.01", "0.02", "0.04")]
    assert d[0] > d[1] > d[2]


def test_write_csv_header_and_rows(cfg, tmp_path):
    run = from_config(cfg)
    run.run(30)
    path = run.write_csv(tmp_path)
    assert path == tmp_path / "trajectories.csv"
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["optimizer", "step", "x", "y", "loss"]
    assert len(rows) - 1 == len(run.trajectories) * 31  # start point + 30 steps per path
    assert rows[1][:2] == ["sgd lr=0.01", "0"]
    assert tuple(float(v) for v in rows[1][2:4]) == cfg.landscape.start


def test_run_headless_writes_csv_and_one_line_per_path(cfg, tmp_path):
    lines = []
    assert run_headless(cfg, tmp_path / "run", out=lines.append) == 0
    with (tmp_path / "run" / "trajectories.csv").open() as f:
        n_rows = sum(1 for _ in f) - 1
    by_label = {ln.split("  ")[0].strip(): ln for ln in lines[1:-1]}
    assert len(by_label) == 7
    diverged_at = int(by_label["sgd lr=0.053"].rsplit(" ", 1)[1])
    assert "diverged at step" in by_label["sgd lr=0.053"] and 10 < diverged_at < cfg.landscape.steps
    # six paths ran every step; the diverged one stopped (start point + steps rows each)
    assert n_rows == 6 * (cfg.landscape.steps + 1) + diverged_at + 1
    assert by_label["sgd lr=0.05"].endswith(" converged")
    assert by_label["sgd lr=0.01"].endswith("not converged")


def test_current_path_selection(cfg):
    run = from_config(cfg)
    n = len(run.trajectories)
    assert run.current == 0
    run.next_optimizer()
    run.step_current(3)
    assert [t.steps for t in run.trajectories] == [0, 3] + [0] * (n - 2)
    for _ in range(n - 1):
        run.next_optimizer()
    assert run.current == 0  # wraps round
    run.step_all(2)
    assert [t.steps for t in run.trajectories] == [2, 5] + [2] * (n - 2)
    run.reset()
    assert all(t.steps == 0 and len(t.points) == 1 for t in run.trajectories)


def test_contours_lie_on_their_level():
    q = Quadratic((1.0, 39.0), 30.0)
    ((xs, ys),) = q.contours([2.0], n_points=17)
    assert len(xs) == 17
    for x, y in zip(xs, ys):
        assert float(q.loss([x, y])) == pytest.approx(2.0)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_name_steps_downhill(name):
    hyper = {"lr": {"adadelta": 1.0, "lbfgs": 0.5, "adagrad": 0.3}.get(name, 0.02)}
    if name in ("momentum", "nesterov"):
        hyper["momentum"] = 0.5
    t = Trajectory(PathSpec(name, name, hyper), Quadratic(), (-1.5, 1.0))
    for _ in range(20):
        t.step()
    assert not t.diverged and t.last[3] < 0.9 * t.points[0][3]


def _bad(tmp_path, paths: str, extra: str = ""):
    p = tmp_path / "bad.toml"
    p.write_text(f'[run]\nkind = "landscape"\n[landscape]\n{extra}paths = {paths}\n')
    with pytest.raises(ConfigError) as e:
        from_config(load_config(p))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(p)) and "fix:" in msg
    return msg


def test_bad_path_tables_name_the_key_and_the_fix(tmp_path):
    ok = '{ optimizer = "sgd", lr = 0.01 }'
    msg = _bad(tmp_path, f'[{ok}, {ok}, {ok}, {{ optimizer = "sgd", lr = -1 }}]')
    assert "landscape.paths[3].lr = -1" in msg and "> 0" in msg
    msg = _bad(tmp_path, '[{ optimizer = "sgd", lr = "fast" }]')
    assert "landscape.paths[0].lr = 'fast'" in msg
    msg = _bad(tmp_path, '[{ optimizer = "sdg", lr = 0.1 }]')
    assert "landscape.paths[0].optimizer = 'sdg'" in msg and "did you mean 'sgd'" in msg
    msg = _bad(tmp_path, f'[{ok}, {{ optimizer = "adam", lr = 0.1, beta = [0.9, 0.99] }}]')
    assert "unknown key landscape.paths[1].beta" in msg and "did you mean 'betas'" in msg
    msg = _bad(tmp_path, '[{ optimizer = "sgd", lr = 0.1, momentum = 0.5 }]')
    assert "landscape.paths[0].momentum" in msg and 'optimizer = "momentum"' in msg
    msg = _bad(tmp_path, '[{ optimizer = "adam", lr = 0.1, betas = [0.9] }]')
    assert "landscape.paths[0].betas" in msg
    msg = _bad(tmp_path, '[{ optimizer = "sgd" }]')
    assert "landscape.paths[0] has no lr" in msg
    msg = _bad(tmp_path, '["sgd"]')
    assert "landscape.paths[0] = 'sgd' is not a table" in msg
    msg = _bad(tmp_path, "[]")
    assert "landscape.paths is empty" in msg
    msg = _bad(tmp_path, f"[{ok}]", extra="eigenvalues = [1.0, -39.0]\n")
    assert "landscape.eigenvalues" in msg


def test_duplicate_paths_get_distinct_labels(tmp_path):
    p = tmp_path / "dup.toml"
    p.write_text(
        '[landscape]\npaths = [{ optimizer = "sgd", lr = 0.01 }, '
        '{ optimizer = "sgd", lr = 0.01 }, { optimizer = "sgd", lr = 0.01 }]\n'
    )
    assert [s.label for s in path_specs(load_config(p))] == ["sgd lr=0.01", "sgd lr=0.01 #2", "sgd lr=0.01 #3"]


def test_engine_modules_do_not_import_textual():
    code = "import sys, deeptui.engine.landscape, deeptui.engine.timing; sys.exit('textual' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
