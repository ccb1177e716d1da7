"""The lecture's networks build as described, freeze as fine-tuning libraries do, and the
pretrained weights fail loudly when they cannot be had."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import AlexNet_Weights

from deeptui.engine.config import load_config
from deeptui.engine.models import MLP, MnistNet, Monster, ResBlock, WeightsError, build_model, set_frozen
from deeptui.tui.cli import main
from tests.conftest import ROOT


def test_monster_is_the_lectures_network():
    cfg = load_config(ROOT / "presets" / "cifar_monster.toml", ["model.pretrained=false"])
    m = build_model(cfg.model, 3, 32, 10)
    assert isinstance(m, Monster)
    conv = m.features[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (
        3,
        64,
        (11, 11),
        (4, 4),
        (2, 2),
    )
    assert len(m.resnet_blocks) == 16 and all(isinstance(b, ResBlock) for b in m.resnet_blocks)
    assert m.resnet_blocks[0].conv1.out_channels == 64
    assert m.final_average.kernel_size == 7
    assert (m.fc.in_features, m.fc.out_features) == (64, 10)
    assert m(torch.randn(5, 3, 32, 32)).shape == (5, 10)


def test_frozen_features_get_no_gradient():
    m = Monster(blocks=2, channels=8)
    set_frozen(m, True)
    F.cross_entropy(m(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is None for p in m.features.parameters())
    assert all(p.grad is not None for p in m.fc.parameters())
    set_frozen(m, False)
    assert all(p.requires_grad for p in m.features.parameters())


def test_mnist_net_and_mlp_shapes():
    assert MnistNet()(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert MLP(784, [64, 32])(torch.randn(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("kw", [{"dropout": 0.5}, {"batchnorm": True}])
def test_mlp_train_and_eval_modes_differ(kw):
    torch.manual_seed(0)
    m = MLP(784, [64], **kw)
    x = torch.randn(16, 1, 28, 28)
    m.train()
    a = m(x)
    m.eval()
    b = m(x)
    assert not torch.allclose(a, b)


def test_pretrained_weights_are_copied_from_torchvisions_cache(monkeypatch):
    fake = {"features.0.weight": torch.full((64, 3, 11, 11), 0.25), "features.0.bias": torch.full((64,), 0.5)}
    monkeypatch.setattr(AlexNet_Weights, "get_state_dict", lambda self, **kw: fake)
    cfg = load_config(ROOT / "presets" / "cifar_monster.toml")
    m = build_model(cfg.model, 3, 32, 10)
    assert torch.equal(m.features[0].weight, fake["features.0.weight"])


def test_missing_pretrained_weights_stop_the_run(monkeypatch, capsys, tmp_path):
    def offline(self, **kw):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(AlexNet_Weights, "get_state_dict", offline)
    with pytest.raises(WeightsError) as e:
        build_model(load_config(ROOT / "presets" / "cifar_monster.toml").model, 3, 32, 10)
    assert "model.pretrained=false" in str(e.value) and "checkpoints" in str(e.value)
    code = main(
        [
            str(ROOT / "presets" / "quickstart.toml"),
            "--headless",
            "--log-dir",
            str(tmp_path),
            "--set",
            "model.pretrained=true",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "AlexNet" in err and "--set model.pretrained=false" in err
