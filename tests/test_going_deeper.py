"""The lecture's points made visible, on the engine: per-layer statistics in layers.csv (read back
once per interval), the test set in train mode as well as eval mode, step limits and log
intervals in samples, the loss summed over a batch, and run.compare over tables of settings."""

from __future__ import annotations

import csv

import pytest
import torch

from deeptui.engine import commands as C
from deeptui.engine import events as E
from deeptui.engine.compare import variants
from deeptui.engine.config import ConfigError, load_config
from deeptui.engine.runlog import LAYERS_HEADER
from deeptui.tui.cli import main
from tests.conftest import ROOT, EventReader, count_host_syncs, tiny_config

MLP_BN = [
    "model.name='mlp'",
    "model.hidden=[64]",
    "model.batchnorm=true",
    "schedule.freeze_features_epochs=0",
    "optimizer.name='momentum'",
]


def rows(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def picked(metrics: list[dict], split: str, mode: str) -> list[tuple]:
    return [(x["step"], x["loss"], x["accuracy"]) for x in metrics if x["split"] == split and x["mode"] == mode]


def test_layers_csv_has_a_row_per_layer_of_one_step_per_interval(make_engine):
    eng = make_engine("run.max_steps=15", "log.layers_interval=5")  # steps 5, 10 and 15, the last
    r = EventReader(eng)
    eng.run()
    with open(eng.run_dir / "layers.csv") as f:
        assert f.readline().strip() == ",".join(LAYERS_HEADER)
    got = rows(eng.run_dir / "layers.csv")
    names = ["features.0", "converter.0", "resnet_blocks.0", "resnet_blocks.1", "fc"]  # a block is one layer
    assert [int(x["step"]) for x in got] == [s for s in (5, 10, 15) for _ in names]
    assert [x["layer"] for x in got[:5]] == names and [int(x["depth"]) for x in got[:5]] == [0, 1, 2, 3, 4]
    first = {x["layer"]: x for x in got[:5]}
    assert float(first["features.0"]["grad_norm"]) == 0.0  # frozen by the schedule in epoch 1
    assert float(first["features.0"]["update_ratio"]) == 0.0
    fc = eng.model.fc
    weights = torch.cat([fc.weight.flatten(), fc.bias])
    assert float(got[-1]["weight_norm"]) == pytest.approx(weights.norm().item(), rel=1e-5)  # the CSV keeps 6 digits
    assert all(float(x["grad_norm"]) > 0 and float(x["update_ratio"]) > 0 for x in got if x["layer"] != "features.0")
    assert all(float(x["activation_std"]) > 0 for x in got)
    stats = [e for e in r.poll() if isinstance(e, E.LayerStats)]
    assert [e.step for e in stats] == [5, 10, 15] and stats[0].layers == tuple(names)
    assert eng.layers.readbacks == 3


def test_layer_statistics_read_back_once_per_interval_and_never_inside_a_step(make_engine, monkeypatch):
    eng = make_engine("run.epochs=1", "log.interval=4", "log.layers_interval=4", "schedule.freeze_features_epochs=0")
    syncs, before_step = count_host_syncs(monkeypatch, eng)
    eng.run()
    assert eng.layers.readbacks == 4 and eng.sums.readbacks == 4
    increases = [b - a for a, b in zip(before_step, before_step[1:]) if b != a]
    assert increases == [2, 2, 2]  # at each boundary: the interval's sums and the layers, nothing else
    # between the first step and the last, one kind of read (the checkpoints at the end check
    # finiteness with a bool of their own, outside any step)
    assert set(syncs[before_step[0] : before_step[-1]]) == {"tolist"}


def test_layer_statistics_can_be_turned_off(make_engine):
    eng = make_engine("run.max_steps=6", "log.layers_interval=0")
    eng.run()
    assert not (eng.run_dir / "layers.csv").exists() and eng.layers.readbacks == 0


def test_both_eval_modes_write_a_test_row_each_and_testing_in_train_mode_changes_nothing(make_engine):
    """The train-mode evaluation restores batch norm's running statistics and the random numbers
    dropout draws, so the run itself is the same as one tested in eval mode only."""
    model = [*MLP_BN, "model.dropout=0.3", "run.epochs=2", "data.test_batch_size=8"]
    plain = make_engine(*model)
    plain.run()
    both = make_engine(*model, "run.eval_mode='both'")
    both.run()
    a, b = rows(plain.run_dir / "metrics.csv"), rows(both.run_dir / "metrics.csv")
    assert [(x["split"], x["mode"]) for x in b if x["split"] == "test"] == [("test", "eval"), ("test", "train")] * 2
    for split, mode in (("train", "train"), ("test", "eval")):  # the same training, the same eval-mode tests
        assert picked(a, split, mode) == picked(b, split, mode) != []
    assert all(torch.equal(p, q) for p, q in zip(plain.model.state_dict().values(), both.model.state_dict().values()))


def stripes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Digit-sized images a small MLP learns in two epochs: class k is a faint band at rows 2k+4,
    in shuffled order (as MNIST's test set: a small batch mixes classes)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randperm(n, generator=g) % 10
    x = torch.randint(0, 100, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    for k in range(10):
        x[y == k, :, 2 * k + 4 : 2 * k + 6, :] += 20
    return x, y


def test_batch_norm_tested_in_train_mode_on_small_batches_is_worse(tmp_path):
    """The lecture's point: a batch-norm net must be tested in eval mode; in train mode each small
    test batch is normalised by its own statistics, and the error goes up."""
    from deeptui.engine.data import bundle_from_tensors
    from deeptui.engine.loop import Engine
    from deeptui.engine.models import build_model

    cfg = tiny_config(*MLP_BN, "run.epochs=2", "data.test_batch_size=2", "run.eval_mode='both'", "data.normalize=true")
    data = bundle_from_tensors(stripes(1000, 0), stripes(200, 1), cfg.data, 0, torch.device("cpu"))
    eng = Engine(cfg, device=torch.device("cpu"), data=data, model=build_model(cfg.model, 1, 28, 10), run_dir=tmp_path)
    assert eng.run() == "finished"
    last = {x["mode"]: 1 - float(x["accuracy"]) for x in rows(tmp_path / "metrics.csv") if x["split"] == "test"}
    assert last["eval"] < 0.2  # it has learned (chance is 0.9)
    assert last["train"] > last["eval"] + 0.1, last


def test_the_eval_mode_command_changes_the_next_evaluation(make_engine):
    eng = make_engine(*MLP_BN, "run.epochs=1")
    r = EventReader(eng)
    eng.send(C.Pause())
    eng.start()
    ev = r.answer(eng.send(C.SetEvalMode(mode="train")))
    assert isinstance(ev, E.CommandApplied) and "train mode" in ev.detail
    assert r.last(lambda e: isinstance(e, E.StateChanged)).eval_mode == "train"
    assert isinstance(r.answer(eng.send(C.SetEvalMode(mode="train"))), E.CommandRejected)
    assert "must be one of" in r.answer(eng.send(C.SetEvalMode(mode="test"))).reason
    eng.send(C.Resume())
    assert r.wait(lambda e: isinstance(e, E.EpochEnd)).mode == "train"
    r.wait(lambda e: isinstance(e, E.Finished))
    assert [x["mode"] for x in rows(eng.run_dir / "metrics.csv") if x["split"] == "test"] == ["train"]


def test_max_samples_and_interval_samples_count_samples_not_steps(make_engine):
    eng = make_engine("run.epochs=5", "run.max_samples=100", "log.interval_samples=32")  # batch 16
    r = EventReader(eng)
    eng.run()
    assert eng.train.step == 7  # ceil(100 / 16)
    seen = [e.samples_seen for e in r.poll() if isinstance(e, E.StepMetrics)]
    assert seen == [32, 64, 96, 112]  # every 2 steps, and the last at the limit
    started = next(e for e in r.seen if isinstance(e, E.RunStarted))
    assert started.max_steps == 7  # the progress bar knows the limit


def test_summed_loss_scales_the_gradient_and_logs_the_same_loss(make_engine):
    mean = make_engine("run.max_steps=1", "schedule.freeze_features_epochs=0", "log.interval=1")
    summed = make_engine(
        "run.max_steps=1", "schedule.freeze_features_epochs=0", "log.interval=1", "optimizer.loss_reduction='sum'"
    )
    for eng in (mean, summed):
        eng.run()
    a, b = rows(mean.run_dir / "metrics.csv")[0], rows(summed.run_dir / "metrics.csv")[0]
    assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-5)  # per sample in both
    ga, gb = mean.model.fc.bias.grad, summed.model.fc.bias.grad
    assert torch.allclose(gb, 16 * ga, rtol=1e-4, atol=1e-6)  # batch 16: the sum's gradient is 16x


def test_compare_over_tables_sets_several_keys_per_run():
    cfg = tiny_config(
        'run.compare=[ { label = "plain net", "model.residual" = false, "model.batchnorm" = false }, '
        '{ "model.residual" = true, "optimizer.lr" = 0.1 } ]'
    )
    (l1, c1), (l2, c2) = variants(cfg)
    assert (l1, c1.model.residual, c1.model.batchnorm, c1.optimizer.lr) == ("plain net", False, False, 0.05)
    assert (l2, c2.model.residual, c2.optimizer.lr) == ("residual=True, lr=0.1", True, 0.1)
    assert c1.run.name == "tiny-plain_net" and c2.run.name.startswith("tiny-residual=True")


@pytest.mark.parametrize(
    "compare,words",
    [
        ("[]", ["run.compare = []", "fix:"]),
        ("[ 3 ]", ["run.compare[0]", "not a table", "fix:"]),
        ("[ {} ]", ["run.compare[0]", "not a table of settings"]),
        ('[ { label = 3, "model.blocks" = 2 } ]', ["run.compare[0].label = 3", "a string"]),
        ('[ { "model.blocks" = 0 } ]', ["run.compare[0]: model.blocks = 0", "must be >= 1"]),
        ('[ { "model.blokcs" = 2 } ]', ["model.blokcs", "did you mean 'blocks'"]),
        ('[ { "run.epochs" = 2 } ]', ["run settings cannot be compared"]),
        ("3", ["run.compare", "expected a table or an array"]),
    ],
)
def test_bad_compare_tables_get_one_clear_line(capsys, tmp_path, compare, words):
    preset = str(ROOT / "presets" / "quickstart.toml")
    code = main([preset, "--headless", "--log-dir", str(tmp_path), "--set", f"run.compare={compare}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert all(w in err for w in words), err


def test_going_deeper_preset_compares_the_same_net_with_and_without_residuals():
    cfg = load_config(ROOT / "presets" / "going_deeper.toml")
    runs = dict(variants(cfg))
    assert len(runs) >= 2 and len({c.model.blocks for c in runs.values()}) == 1
    assert {(c.model.residual, c.model.batchnorm) for c in runs.values()} >= {(True, True), (False, False)}
    assert cfg.data.dataset == "shapes" and cfg.log.layers_interval > 0
    with pytest.raises(ConfigError, match="one key"):
        variants(tiny_config('run.compare={ "model.blocks" = [1], "model.channels" = [4] }'))


@pytest.mark.e2e
def test_going_deeper_shows_the_plain_nets_first_layers_get_smaller_gradients(capsys, tmp_path):
    """A short run of the preset (a few steps per variant): layers.csv of the plain deep net has
    far smaller gradient norms at its first layers than the ResNet's."""
    code = main(
        [
            str(ROOT / "presets" / "going_deeper.toml"),
            "--headless",
            "--log-dir",
            str(tmp_path),
            "--set",
            "run.max_steps=4",
            "--set",
            "log.layers_interval=2",
            "--set",
            "data.train_size=128",
            "--set",
            "data.test_size=32",
        ]
    )
    assert code == 0, capsys.readouterr().err
    grads = {}
    for d in tmp_path.iterdir():
        got = rows(d / "layers.csv")
        last = max(int(x["step"]) for x in got)
        model = load_config(d / "config.toml").model  # the run's resolved settings
        grads[model.residual, model.batchnorm] = [float(x["grad_norm"]) for x in got if int(x["step"]) == last]
    assert len(grads) == 4  # residual x batch norm
    plain, resnet = grads[False, False], grads[True, True]
    assert len(plain) == len(resnet) == 11  # features, converter, 8 blocks, fc
    for depth in range(3):  # the first layers: vanished in the plain net
        assert plain[depth] < 1e-3 * resnet[depth], (depth, plain, resnet)
    assert plain[-1] > 1e-2 * resnet[-1]  # not at the output: the gradient dies on its way down
