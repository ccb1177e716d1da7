"""The lecture's networks build as described, freeze as fine-tuning libraries do, and the
pretrained weights fail loudly when they cannot be had."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
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


# ---- the lecture's code, as Fleuret writes it, beside deeptui's networks ---------------------


def lecture_monster(nb_residual_blocks: int, nb_channels: int) -> nn.Module:
    """The lecture's Monster, verbatim but for an untrained AlexNet (no downloads here)."""

    def make_resnet_block(nb_channels, kernel_size=3):
        return nn.Sequential(
            nn.Conv2d(nb_channels, nb_channels, kernel_size=kernel_size, padding=(kernel_size - 1) // 2),
            nn.BatchNorm2d(nb_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(nb_channels, nb_channels, kernel_size=kernel_size, padding=(kernel_size - 1) // 2),
            nn.BatchNorm2d(nb_channels),
        )

    class Monster(nn.Module):
        def __init__(self, nb_residual_blocks, nb_channels):
            super().__init__()
            alexnet = torchvision.models.alexnet()
            self.features = nn.Sequential(alexnet.features[0], nn.ReLU(inplace=True))
            self.converter = nn.Sequential(nn.Conv2d(64, nb_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True))
            self.resnet_blocks = nn.ModuleList()
            for k in range(nb_residual_blocks):  # noqa: B007 - the lecture's code as written
                self.resnet_blocks.append(make_resnet_block(nb_channels, 3))
            self.final_average = nn.AvgPool2d(7)
            self.fc = nn.Linear(nb_channels, 10)

        def forward(self, x):
            x = self.features(x)
            x = self.converter(x)
            for b in self.resnet_blocks:
                x = x + b(x)
            x = self.final_average(x).view(x.size(0), -1)
            x = self.fc(x)
            return x

    return Monster(nb_residual_blocks, nb_channels)


class LectureNet(nn.Module):
    """The lecture's MNIST Net, verbatim."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=5)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5)
        self.fc1 = nn.Linear(256, 200)
        self.fc2 = nn.Linear(200, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), kernel_size=3, stride=3))
        x = F.relu(F.max_pool2d(self.conv2(x), kernel_size=2, stride=2))
        x = x.view(-1, 256)
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return x


BLOCK_KEYS = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2"}  # the lecture's Sequential -> ResBlock


def to_deeptui_keys(state: dict) -> dict:
    """resnet_blocks.K.I.* (the lecture's Sequential) -> resnet_blocks.K.conv1/bn1/conv2/bn2.*"""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "resnet_blocks":
            parts[2] = BLOCK_KEYS[parts[2]]
        out[".".join(parts)] = value
    return out


def randomise_batchnorm(model: nn.Module) -> None:
    """Running statistics and affine weights away from their identity start, so eval mode tests them."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_the_monster_gives_the_lectures_outputs_with_the_same_weights():
    torch.manual_seed(0)
    lecture = lecture_monster(16, 64)
    randomise_batchnorm(lecture)
    ours = build_model(
        load_config(ROOT / "presets" / "cifar_monster.toml", ["model.pretrained=false"]).model, 3, 32, 10
    )
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in lecture.parameters()) == 1_246_666
    ours.load_state_dict(to_deeptui_keys(lecture.state_dict()))  # strict: every key maps, none is left
    x = torch.rand(8, 3, 32, 32)
    for train in (False, True):  # running statistics, then each batch's own
        lecture.train(train)
        ours.train(train)
        with torch.no_grad():
            assert torch.equal(ours(x), lecture(x)), f"train={train}"


def test_the_mnist_net_gives_the_lectures_outputs_and_starts_from_the_same_weights():
    torch.manual_seed(0)
    lecture = LectureNet()
    torch.manual_seed(0)
    ours = build_model(load_config(ROOT / "presets" / "mnist_net.toml").model, 1, 28, 10)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), lecture.state_dict().values()))
    for p in lecture.parameters():  # other weights than the initial ones: the forward is compared
        p.data.normal_()
    ours.load_state_dict(lecture.state_dict())
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(ours(x), lecture(x))


def test_residual_and_batchnorm_switches_make_a_plain_deep_net():
    cfg = load_config(ROOT / "presets" / "quickstart.toml", ["model.residual=false", "model.batchnorm=false"])
    plain = build_model(cfg.model, 3, 32, 10)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    block = plain.resnet_blocks[0]
    x = torch.randn(2, 32, 7, 7)
    with torch.no_grad():
        assert torch.equal(block(x), F.relu(block.conv2(F.relu(block.conv1(x)))))  # no skip: relu(b(x))
    resnet = build_model(load_config(ROOT / "presets" / "quickstart.toml").model, 3, 32, 10)
    block = resnet.resnet_blocks[0].eval()
    with torch.no_grad():
        y = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
        assert torch.equal(block(x), x + y)


@pytest.mark.parametrize("scheme,std", [("kaiming", lambda fan_in, fan_out: (2 / fan_in) ** 0.5), ("xavier", None)])
def test_init_schemes_set_the_weights_scale(scheme, std):
    torch.manual_seed(0)
    cfg = load_config(ROOT / "presets" / "quickstart.toml", [f"model.init={scheme!r}", "model.blocks=8"])
    m = build_model(cfg.model, 3, 32, 10)
    conv = m.resnet_blocks[3].conv1
    fan_in = fan_out = conv.weight[0].numel()
    want = std(fan_in, fan_out) if std else (2 / (fan_in + fan_out)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(want, rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0
    default = build_model(load_config(ROOT / "presets" / "quickstart.toml", ["model.blocks=8"]).model, 3, 32, 10)
    assert default.resnet_blocks[3].conv1.weight.std().item() < 0.7 * want  # PyTorch's default is smaller


@pytest.mark.parametrize("preset,shape", [("mnist_net", (8, 1, 28, 28)), ("quickstart", (8, 3, 32, 32))])
def test_dropout_in_the_conv_nets_differs_between_train_and_eval(preset, shape):
    torch.manual_seed(0)
    m = build_model(load_config(ROOT / "presets" / f"{preset}.toml", ["model.dropout=0.5"]).model, *shape[1:3], 10)
    x = torch.randn(*shape)
    with torch.no_grad():
        m.eval()
        a, b = m(x), m(x)
        m.train()
        c = m(x)
    assert torch.equal(a, b) and not torch.allclose(a, c)


@pytest.mark.parametrize(
    "override,words",
    [
        ("model.residual=false", ["model.residual", "no residual blocks", "fix:"]),
        ("model.batchnorm=true", ["model.batchnorm", "mnist_net", "fix:"]),
        ("model.init='he'", ["model.init", "must be one of", "kaiming"]),
    ],
)
def test_switches_that_do_not_fit_the_model_are_refused(capsys, tmp_path, override, words):
    code = main([str(ROOT / "presets" / "mnist_net.toml"), "--headless", "--log-dir", str(tmp_path), "--set", override])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert all(w in err for w in words), err
