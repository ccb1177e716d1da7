"""The lecture's networks: mnist_net, mlp (dropout / batchnorm) and the Monster, with the switches
the lecture argues about (residual connections, batch normalization, initialisation, dropout)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, WeightsError


class MnistNet(nn.Module):
    """The lecture's full MNIST example: two conv+maxpool layers, two fully connected layers;
    `dropout` > 0 adds dropout after fc1's ReLU (the lecture has none)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=5)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5)
        self.fc1 = nn.Linear(256, 200)
        self.fc2 = nn.Linear(200, num_classes)
        self.dropout = dropout

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), kernel_size=3, stride=3))
        x = F.relu(F.max_pool2d(self.conv2(x), kernel_size=2, stride=2))
        x = F.relu(self.fc1(x.flatten(1)))
        if self.dropout:
            x = F.dropout(x, self.dropout, self.training)
        return self.fc2(x)


class MLP(nn.Module):
    """Flatten, then Linear -> [BatchNorm1d] -> ReLU -> [Dropout] per hidden layer: eval mode matters."""

    def __init__(
        self, in_features: int, hidden: list[int], num_classes: int = 10, dropout: float = 0.0, batchnorm: bool = False
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class ResBlock(nn.Module):
    """The lecture's make_resnet_block, conv-BN-ReLU-conv-BN, and its use in the Monster's forward:
    x + block(x), with no ReLU after the sum. residual=False drops the skip connection and adds
    the ReLU a plain net has after every conv (x = relu(block(x)): He et al.'s plain net, where
    Kaiming's initialisation keeps the scale); batchnorm=False drops the two BatchNorm2d."""

    def __init__(self, channels: int, kernel_size: int = 3, residual: bool = True, batchnorm: bool = True):
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.bn1 = nn.BatchNorm2d(channels) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.bn2 = nn.BatchNorm2d(channels) if batchnorm else nn.Identity()
        self.residual = residual

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return x + y if self.residual else F.relu(y)


class Monster(nn.Module):
    """AlexNet's first conv (+ReLU) as `features`, a 3x3 converter, residual blocks, global average
    pooling over the 7x7 maps of a 32x32 input, one linear layer; `dropout` > 0 adds dropout
    before that layer (the lecture has none)."""

    ALEXNET_CHANNELS = 64

    def __init__(
        self,
        blocks: int = 16,
        channels: int = 64,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        *,
        residual: bool = True,
        batchnorm: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        # AlexNet's conv1: Conv2d(3, 64, kernel_size=11, stride=4, padding=2); 32x32 -> 7x7
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, self.ALEXNET_CHANNELS, 11, stride=4, padding=2), nn.ReLU(inplace=True)
        )
        self.converter = nn.Sequential(nn.Conv2d(self.ALEXNET_CHANNELS, channels, 3, padding=1), nn.ReLU(inplace=True))
        # each block adds its own input (x = x + b(x)), as the lecture's loop over its ModuleList
        self.resnet_blocks = nn.Sequential(
            *(ResBlock(channels, residual=residual, batchnorm=batchnorm) for _ in range(blocks))
        )
        map_size = (image_size + 2 * 2 - 11) // 4 + 1  # 7 for CIFAR's 32x32, as in the lecture
        self.final_average = nn.AvgPool2d(map_size)
        self.fc = nn.Linear(channels, num_classes)
        self.dropout = dropout

    def forward(self, x):
        x = self.features(x)
        x = self.converter(x)
        x = self.resnet_blocks(x)
        x = self.final_average(x).flatten(1)
        if self.dropout:
            x = F.dropout(x, self.dropout, self.training)
        return self.fc(x)


def load_alexnet_conv1(model: Monster) -> None:
    """Copy ImageNet-pretrained AlexNet conv1 weights into model.features[0], through torchvision's
    weights API and its cache ($TORCH_HOME). Raises WeightsError when they cannot be had."""
    from torchvision.models import AlexNet_Weights

    weights = AlexNet_Weights.IMAGENET1K_V1
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except Exception as e:  # offline, proxy, corrupt cache: all mean "no weights"
        cache = torch.hub.get_dir()
        raise WeightsError(
            f"model.pretrained = true but AlexNet's ImageNet weights could not be loaded "
            f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})",
            fix=f"put "
            f"{weights.url.rsplit('/', 1)[-1]} in {cache}/checkpoints/ (set TORCH_HOME to move the cache), "
            "or run with --set model.pretrained=false",
        ) from None
    model.features[0].weight.data.copy_(state["features.0.weight"])
    model.features[0].bias.data.copy_(state["features.0.bias"])


def init_weights(model: nn.Module, scheme: str) -> None:
    """model.init: "default" keeps PyTorch's; "xavier" (Glorot & Bengio, uniform) or "kaiming"
    (He et al., normal, for ReLU) on every conv and linear weight, their biases 0."""
    if scheme == "default":
        return
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_model(mcfg, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    bn = mcfg.batchnorm
    if mcfg.name == "monster":
        model = Monster(
            mcfg.blocks,
            mcfg.channels,
            num_classes,
            in_channels,
            image_size,
            residual=mcfg.residual,
            batchnorm=bn is not False,  # "auto": the lecture's blocks have it
            dropout=mcfg.dropout,
        )
    elif mcfg.name == "mnist_net":
        if image_size != 28:
            raise ConfigError(
                f"model.name = 'mnist_net' needs 28x28 images, the data set has {image_size}x{image_size}",
                fix="data.dataset = 'mnist', or another model",
            )
        model = MnistNet(in_channels, num_classes, mcfg.dropout)
    else:
        model = MLP(in_channels * image_size * image_size, list(mcfg.hidden), num_classes, mcfg.dropout, bn is True)
    init_weights(model, mcfg.init)
    if mcfg.name == "monster" and mcfg.pretrained:
        load_alexnet_conv1(model)
    return model


def freeze_targets(model: nn.Module, names=()) -> list[nn.Module]:
    """The modules that freezing acts on: model.freeze's names (dotted names reach inside), or the
    module called `features` when none are named and there is one."""
    if names:
        return [model.get_submodule(n) for n in names]
    features = getattr(model, "features", None)
    return [features] if isinstance(features, nn.Module) else []


def missing_modules(model: nn.Module, names) -> list[str]:
    """The names in model.freeze that the model has no module for."""
    have = {n for n, _ in model.named_modules()}
    return [n for n in names if n not in have]


def has_features(model: nn.Module, names=()) -> bool:
    """Whether the model has something to freeze (model.freeze's modules, or `features`)."""
    return any(any(True for _ in m.parameters()) for m in freeze_targets(model, names))


def set_frozen(model: nn.Module, frozen: bool, names=()) -> int:
    """requires_grad=False on the features or model.freeze's modules (as Lightning's
    freeze_module and the lecture's freeze_features do); a frozen parameter gets no gradient, so
    the optimizer skips it. Returns the number of parameters touched."""
    n = 0
    for m in freeze_targets(model, names):
        for p in m.parameters():
            p.requires_grad_(not frozen)
            if frozen:
                p.grad = None
            n += p.numel()
    return n


def is_frozen(model: nn.Module, names=()) -> bool:
    targets = [p for m in freeze_targets(model, names) for p in m.parameters()]
    return bool(targets) and not any(p.requires_grad for p in targets)


def all_finite(model: nn.Module) -> bool:
    """Every floating-point weight and buffer of the model finite (one host read)."""
    tensors = [t for t in model.state_dict().values() if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()) if tensors else True


def freeze_label(names) -> str:
    """What events call the frozen part: 'features', or model.freeze's names."""
    return ", ".join(names) if names else "features"


def label(mcfg, model: nn.Module) -> str:
    """What the run calls its model: the built-in name, or a factory model's class name."""
    return type(model).__name__ if mcfg.factory else mcfg.name
