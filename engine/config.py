"""Preset TOML -> nested frozen dataclasses, each section checked, with one-line errors.

Every error is a ConfigError whose message names the file, the dotted key and the fix, on one
line, so the CLI can print it and exit 2 without a traceback. No torch here: a preset is checked
before torch has loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from . import registry
from .errors import ConfigError

OPTIMIZERS = registry.NAMES
Optimizer = Literal[OPTIMIZERS]  # a preset's optimizer.name: one of the registry's
EvalMode = Literal["eval", "train", "both"]
EVAL_MODES = get_args(EvalMode)
DATASETS = ("shapes", "cifar10", "mnist")
DATASET_FORMS = ("torchvision:", "imagefolder:")  # torchvision:NAME, imagefolder:PATH
DEVICES_HELP = "auto, cpu, cuda or cuda:N"


def _f(default: Any, doc: str, **rules: Any) -> Any:
    """A config field with its documentation and validation rules (min, max, gt, lt); its type,
    choices included (Literal[...]), is its annotation."""
    if isinstance(default, dict):
        return field(default_factory=lambda: FrozenDict(default), metadata={"doc": doc, **rules})
    return field(default=default, metadata={"doc": doc, **rules})


class FrozenDict(dict):
    """A table of a config: read, never changed (the config is a frozen dataclass all the way
    down; a change is a new config: replace_key)."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a config is frozen; fix: make a new one with deeptui.engine.config.replace_key")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __reduce__(self):
        return (FrozenDict, (dict(self),))


def freeze(value: Any) -> Any:
    """TOML data as a config holds it: arrays as tuples, tables as FrozenDicts."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    return value


def thaw(value: Any) -> Any:
    """A config's data as plain lists and dicts (TOML, a user's factory)."""
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class RunConfig:
    name: str = _f("", "run name; the run directory is <log.dir>/<name>-<timestamp>; empty: the preset's file name")
    kind: Literal["train", "landscape", "watched"] = _f(
        "train",
        "train (a network on a data set) or landscape (optimizer paths on a 2-D quadratic); watched: written by "
        "deeptui.watch() for a run of your own loop (a preset cannot train it: run its script)",
    )
    seed: int = _f(0, "seed for torch, data order and augmentation; seeded CPU runs are reproducible", min=0)
    device: str = _f("auto", "auto (cuda when present, else cpu), cpu, cuda or cuda:N")
    epochs: int = _f(10, "number of epochs", min=1)
    max_steps: int = _f(0, "stop after this many training steps in total; 0: no limit", min=0)
    max_samples: int = _f(
        0, "stop after this many training samples in total (one budget for any batch size); 0: no limit", min=0
    )
    auto_timing: bool = _f(
        True,
        "the dashboard times batch vs loop once, the first time the run is paused (never before the "
        "first step); t times it any time",
    )
    on_nan: Literal["auto", "stop", "pause", "continue"] = _f(
        "auto",
        "what a non-finite loss does: stop (exit 1), pause (wait for a dashboard), "
        "continue, or auto (pause in the dashboard, stop headless)",
    )
    on_hangup: Literal["detach", "stop"] = _f(
        "detach",
        "what a dashboard run does when its terminal closes (SIGHUP: an SSH link dropped, a laptop lid): detach "
        "(train on in the background, its output in <run_dir>/deeptui.log; deeptui attach brings the dashboard "
        "back) or stop (checkpoint and exit 129)",
    )
    collective_timeout_s: float = _f(
        60.0,
        "data-parallel: how long a rank waits for the others (a dead rank ends the run after this)",
        gt=0.0,
        max=86400.0,
    )
    eval_mode: EvalMode = _f(
        "eval",
        "how the test set is evaluated: eval (dropout off, batch norm's running statistics), train (as in "
        "training: dropout on, each test batch's own statistics) or both (a test row per mode)",
    )
    compare: FrozenDict | tuple = _f(
        {},
        'run the preset once per value, e.g. { "data.batch_size" = [1, 10, 100] }, or once per table of '
        'settings, e.g. [ { label = "plain", "model.residual" = false }, { "model.residual" = true } ]',
    )
    notify_command: str = _f(
        "",
        "a shell command run when the run finishes, fails or pauses on a non-finite loss, with the run's "
        "summary in its environment ($DEEPTUI_SUMMARY, $DEEPTUI_STATE, ...); empty: none",
    )


@dataclass(frozen=True)
class DataConfig:
    dataset: str = _f(
        "shapes",
        "shapes (generated, no files), cifar10, mnist, torchvision:NAME (e.g. torchvision:CIFAR100) "
        "or imagefolder:PATH (PATH/train/<class>/*.png and PATH/test/<class>/*.png)",
    )
    factory: str = _f(
        "",
        'your own data: "package.module:function" returning (train, test) Datasets or a DataBundle, called '
        "with this table's keys that deeptui does not know; data.dataset is then not used",
    )
    kwargs: FrozenDict = _f(
        {}, "data.factory's keyword arguments: the table's keys that are not deeptui's", derived=True
    )
    loader: Literal["memory", "dataloader"] = _f(
        "memory",
        "memory (whole set as one tensor on the device, batch augmentation) "
        "or dataloader (torch DataLoader with workers)",
    )
    batch_size: int = _f(64, "training mini-batch size", min=1)
    test_batch_size: int = _f(1000, "batch size for evaluation", min=1)
    num_workers: int = _f(4, "DataLoader worker processes (dataloader path only)", min=0, max=64)
    shuffle: bool = _f(True, "shuffle the training set every epoch")
    normalize: bool = _f(False, "subtract the set's mean and divide by its std, per channel")
    crop_padding: int = _f(0, "RandomCrop(size, padding=N) on training images; 0: off", min=0, max=32)
    flip: bool = _f(False, "random horizontal flip on training images")
    train_size: int = _f(0, "use only the first N training samples (shapes: generate N); 0: all", min=0)
    test_size: int = _f(0, "use only the first N test samples (shapes: generate N); 0: all", min=0)
    download: bool = _f(True, "let torchvision download CIFAR-10 / MNIST when the files are missing")


@dataclass(frozen=True)
class ModelConfig:
    name: Literal["monster", "mnist_net", "mlp"] = _f("monster", "monster, mnist_net or mlp")
    pretrained: bool = _f(False, "monster: load AlexNet's ImageNet weights into the first conv")
    blocks: int = _f(16, "monster: number of residual blocks", min=1, max=1000)
    channels: int = _f(64, "monster: channels in the residual blocks", min=1, max=8192)
    residual: bool = _f(
        True, "monster: each block adds its input, x + block(x) (a ResNet); false: x = relu(block(x)), a plain net"
    )
    hidden: tuple[int, ...] = _f((200,), "mlp: sizes of the hidden layers")
    dropout: float = _f(
        0.0,
        "dropout probability: mlp after each hidden layer, monster before fc, mnist_net after fc1",
        min=0.0,
        lt=1.0,
    )
    batchnorm: Literal["auto", True, False] = _f(
        "auto",
        "batch normalization: auto (the model's own: the Monster's blocks have it, the mlp has none), true "
        "(mlp: BatchNorm1d after each hidden linear layer) or false (monster: blocks without BatchNorm2d)",
    )
    init: Literal["default", "xavier", "kaiming"] = _f(
        "default",
        "conv and linear weights: default (PyTorch's), xavier (Glorot & Bengio) or kaiming (He et al.)",
    )
    factory: str = _f(
        "",
        'your own model: "package.module:function" (e.g. torchvision.models:resnet18) returning an nn.Module, '
        "called with the table's other keys as keyword arguments (name, blocks, channels, ...: only when it "
        "takes them)",
    )
    freeze: tuple[str, ...] = _f(
        (),
        'the modules that the freeze key (f) and schedule.freeze_features_epochs act on, e.g. ["features", '
        '"layer1"] (dotted names reach inside); empty: the module called features, if there is one',
    )
    kwargs: FrozenDict = _f({}, "model.factory's keyword arguments: the table's other keys", derived=True)


@dataclass(frozen=True)
class OptimizerConfig:
    name: Optimizer = _f("sgd", "optimizer to start with: " + ", ".join(OPTIMIZERS))
    lr: float = _f(1e-2, "learning rate", gt=0.0)
    momentum: float = _f(0.9, "momentum for the momentum and nesterov choices (sgd uses 0)", min=0.0, lt=1.0)
    weight_decay: float = _f(0.0, "L2 penalty; for adamw the decoupled weight decay (a typical value is 0.01)", min=0.0)
    betas: tuple[float, float] = _f((0.9, 0.999), "adam, adamw, adamax, nadam: (beta1, beta2)")
    eps: float = _f(1e-8, "adam, adamw, adamax, nadam, adagrad, rmsprop: epsilon", gt=0.0)
    rho: float = _f(0.9, "adadelta: decay of the running averages", min=0.0, max=1.0)
    alpha: float = _f(0.99, "rmsprop: smoothing constant", min=0.0, max=1.0)
    lbfgs_max_iter: int = _f(4, "lbfgs: inner iterations per step (torch's default is 20)", min=1, max=100)
    choices: tuple[str, ...] = _f(tuple(OPTIMIZERS), "optimizers that 'next optimizer' cycles through, in order")
    group_lr: FrozenDict = _f({}, "learning rate per top-level module, e.g. { features = 1e-3 }; others use lr")
    loss_reduction: Literal["mean", "sum"] = _f(
        "mean",
        "the training loss over a batch: mean (PyTorch's default) or sum (the gradient grows with the "
        "batch size, so the lr means less per sample); logged losses are per sample either way",
    )
    clip_grad_norm: float = _f(
        0.0,
        "clip the gradients' total norm to this before each step (torch.nn.utils.clip_grad_norm_); the share "
        "of clipped steps is in the run panel and metrics.csv's clipped column; 0: off",
        min=0.0,
    )


LrSchedule = Literal["constant", "step", "cosine", "warmup_cosine"]


@dataclass(frozen=True)
class ScheduleConfig:
    freeze_features_epochs: int = _f(
        0, "keep the pretrained features (or model.freeze's modules) frozen for the first N epochs", min=0
    )
    lr: LrSchedule = _f(
        "constant",
        "the learning rate over the run, from optimizer.lr: constant, step (x lr_gamma every lr_step_epochs), "
        "cosine (down to lr_min_ratio x lr at the last step) or warmup_cosine (up from 0 over lr_warmup_steps, "
        "then cosine); a typed or scaled lr (L, +, -) overrides it",
    )
    lr_step_epochs: int = _f(30, 'lr = "step": multiply the lr by lr_gamma every N epochs', min=1)
    lr_gamma: float = _f(0.1, 'lr = "step": the factor at each step', gt=0.0, max=1.0)
    lr_warmup_steps: int = _f(
        100, 'lr = "warmup_cosine": training steps over which the lr rises linearly from 0 to optimizer.lr', min=0
    )
    lr_min_ratio: float = _f(
        0.0, 'lr = "cosine", "warmup_cosine": the lr at the end, as a fraction of optimizer.lr', min=0.0, max=1.0
    )


@dataclass(frozen=True)
class LogConfig:
    dir: str = _f("runs", "where run directories are created (--log-dir overrides)")
    interval: int = _f(50, "training steps per logged row (loss and accuracy averaged over them)", min=1)
    interval_samples: int = _f(
        0, "log a row every N training samples instead (N / batch_size steps, at least 1); 0: use interval", min=0
    )
    layers_interval: int = _f(
        50, "per-layer statistics (layers.csv, the d key) of one training step in every N; 0: off", min=0
    )
    flush_seconds: float = _f(2.0, "flush the CSV files at least this often", gt=0.0)
    checkpoint_every: int = _f(
        0, "save a checkpoint (last.pt and epoch-N.pt) every N epochs; 0: only on demand and on exit", min=0
    )
    keep_checkpoints: int = _f(3, "epoch-N.pt checkpoints to keep (the newest); last.pt and best.pt stay", min=0)
    tensorboard: bool = _f(
        False, "also write TensorBoard event files in the run directory (pip install 'deeptui[tensorboard]')"
    )
    system_seconds: float = _f(
        1.0,
        "read the machine's figures (system.csv, the strip) every N seconds, N >= 1; 0: off",
        min=0.0,
        max=86400.0,  # a day; beyond, a timed wait overflows the platform's time_t
    )


@dataclass(frozen=True)
class PerfConfig:
    amp: Literal["off", "bf16", "fp16"] = _f(
        "off", "mixed precision: off, bf16 or fp16 (autocast; fp16 with a gradient scaler), on CUDA and on the CPU"
    )
    channels_last: bool = _f(False, "channels_last memory format for the model and batches")
    compile: bool = _f(False, "torch.compile the model (one compiled variant per freeze state and mode)")
    cudnn_benchmark: bool = _f(True, "torch.backends.cudnn.benchmark on CUDA")
    fused: Literal["auto", True, False] = _f(
        "auto", "fused optimizer kernels for sgd, momentum, nesterov and adam: auto (on CUDA only), true or false"
    )
    foreach: Literal["auto", True, False] = _f(
        "auto",
        "multi-tensor (foreach) kernels where no fused kernel is in use: auto (torch's choice: on CUDA only), "
        "true (what a CUDA run takes, forced on the CPU too) or false (one tensor at a time)",
    )


@dataclass(frozen=True)
class LandscapeConfig:
    eigenvalues: tuple[float, ...] = _f(
        (1.0, 39.0), "run.kind = landscape: the quadratic's two curvatures; SGD is stable below 2 / max"
    )
    angle_deg: float = _f(30.0, "rotation of the quadratic's axes, in degrees")
    start: tuple[float, ...] = _f((-1.5, 1.0), "starting point (x, y); the minimum is at (0, 0)")
    steps: int = _f(100, "optimizer steps per path", min=1, max=100_000)
    paths: tuple[FrozenDict, ...] = _f(
        (),
        'one inline table per path: { optimizer = "sgd", lr = 1e-2, momentum = 0.5, betas = [0.9, 0.999], eps = 1e-8 }',
    )


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    log: LogConfig = field(default_factory=LogConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
    landscape: LandscapeConfig = field(default_factory=LandscapeConfig)
    source: str = field(default="<defaults>", compare=False)  # the preset file, for messages

    def to_dict(self) -> dict:
        """The resolved preset as plain TOML-ready data (without `source`), written as a preset is:
        a factory's keyword arguments are keys of their table again."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "source":
                continue
            d = thaw(dataclasses.asdict(getattr(self, f.name)))
            kwargs = d.pop("kwargs", {})
            if f.name == "model" and d["factory"]:
                d = {"factory": d["factory"], "freeze": d["freeze"]}
            out[f.name] = {**d, **kwargs}
        return out


SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Config) if f.name != "source"}


def _type_name(t: type | tuple) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        list: "an array",
        dict: "a table",
    }[t]


# Names people often write for our keys, from other tools' configs.
ALIASES = {
    "timing_at_start": "auto_timing",  # its name before deeptui 0.2
    "learning_rate": "lr",
    "lr_rate": "lr",
    "batch": "batch_size",
    "batchsize": "batch_size",
    "workers": "num_workers",
    "epoch": "epochs",
    "optim": "optimizer",
    "opt": "optimizer",
    "wd": "weight_decay",
    "beta": "betas",
    "nesterov": "name",
    "arch": "name",
}


def _close(word: str, options) -> str:
    options = list(options)
    if ALIASES.get(word) in options:
        return f"did you mean '{ALIASES[word]}'?"
    best = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f"did you mean '{best[0]}'?" if best else "valid keys: " + ", ".join(options)


def _expected(hint) -> tuple[type | tuple, tuple]:
    """(the TOML types a field takes, its choices) from its annotation: Literal[...] is a choice,
    tuple[...] an array, FrozenDict a table, X | Y either."""
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        return tuple({type(c) for c in choices}), choices
    if get_origin(hint) in (types.UnionType, typing.Union):
        return tuple(_expected(h)[0] for h in get_args(hint)), ()
    if hint is tuple or get_origin(hint) is tuple:
        return list, ()
    if hint is FrozenDict:
        return dict, ()
    return hint, ()


def _check_value(src: str, key: str, value: Any, f: dataclasses.Field, hint) -> Any:
    want, choices = _expected(hint)
    if any(type(value) is type(c) and value == c for c in choices):  # e.g. perf.fused: "auto" or a bool
        return value
    if choices and any(isinstance(c, bool) for c in choices):
        names = ", ".join(str(c).lower() if isinstance(c, bool) else f'"{c}"' for c in choices)
        raise ConfigError(f"{src}: {key} = {value!r} is out of range", fix=f"{key} must be one of {names}")
    flat = tuple(_flatten(want))
    got_ok = isinstance(value, flat) and not (bool not in flat and isinstance(value, bool))
    if flat == (float,) and isinstance(value, int) and not isinstance(value, bool):
        value, got_ok = float(value), True
    if not got_ok:
        name = _type_name(flat if len(flat) > 1 else flat[0])
        raise ConfigError(
            f"{src}: {key} = {value!r} is {type(value).__name__}, expected {name}",
            fix=f"set {key} to {name} ({f.metadata['doc']})",
        )
    m = f.metadata
    bad = None
    if choices and value not in choices:
        hint = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.4)
        bad = "must be one of " + ", ".join(choices) + (f" (did you mean '{hint[0]}'?)" if hint else "")
    elif "min" in m and value < m["min"]:
        bad = f"must be >= {m['min']}"
    elif "gt" in m and value <= m["gt"]:
        bad = f"must be > {m['gt']}"
    elif "lt" in m and value >= m["lt"]:
        bad = f"must be < {m['lt']}"
    elif "max" in m and value > m["max"]:
        bad = f"must be <= {m['max']}"
    if bad:
        raise ConfigError(f"{src}: {key} = {value!r} is out of range", fix=f"{key} {bad}")
    return freeze(value)


def _flatten(want):
    for w in want if isinstance(want, tuple) else (want,):
        yield from _flatten(w) if isinstance(w, tuple) else (w,)


MAX_DEPTH = 8  # tables and arrays inside a key's value
MAX_INT = 2**63 - 1
MAX_STRING = 4096


def _check_plain(src: str, key: str, value: Any, depth: int = 0) -> None:
    """Plain data only: finite numbers, 64-bit integers, short strings, shallow nesting."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"{src}: {key} is nested more than {MAX_DEPTH} levels deep", fix="a flat value")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{src}: {key} = {value!r} is not a finite number", fix="a finite value")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ConfigError(f"{src}: {key} = {value} is out of range", fix="a 64-bit integer")
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise ConfigError(f"{src}: {key} is a string of {len(value)} characters", fix=f"at most {MAX_STRING}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(src, f"{key}.{k}", v, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_plain(src, f"{key}[{i}]", v, depth + 1)


def safe_name(name: str) -> str:
    """A run name as one path component: the run directory stays inside the log directory."""
    cleaned = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name).strip("._")[:100]
    return cleaned or "run"


def _build(src: str, raw: dict) -> Config:
    _check_plain(src, "the preset", raw)
    sections = {}
    for sname, sraw in raw.items():
        if sname not in SECTIONS:
            raise ConfigError(f"{src}: unknown section [{sname}]", fix=f"{_close(sname, SECTIONS)}")
        if not isinstance(sraw, dict):
            raise ConfigError(f"{src}: {sname} must be a table [{sname}]", fix="write it as a section")
        cls = SECTIONS[sname]
        fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("derived")}
        hints = get_type_hints(cls)
        values, kwargs = {}, {}
        for k, v in sraw.items():
            if _factory_takes(sname, sraw, k, fields):
                kwargs[k] = v
                continue
            if k not in fields:
                raise ConfigError(f"{src}: unknown key {sname}.{k}", fix=f"{_close(k, fields)}")
            values[k] = _check_value(src, f"{sname}.{k}", v, fields[k], hints[k])
        if kwargs:
            values["kwargs"] = freeze(kwargs)
        sections[sname] = cls(**values)
    cfg = Config(**sections, source=src)
    _check_consistency(cfg)
    return cfg


def _factory_takes(section: str, raw: dict, key: str, fields: dict) -> bool:
    """Whether a key of [model] or [data] is a keyword argument of that table's factory: with
    model.factory set, every key of [model] but factory and freeze is; with data.factory set, the
    keys of [data] that are not deeptui's are (its own keys still drive the loaders)."""
    if not raw.get("factory") or section not in ("model", "data"):
        return False
    return key not in ("factory", "freeze") if section == "model" else key not in fields


def _check_consistency(cfg: Config) -> None:
    """Settings that are valid alone but contradict each other."""
    src, o, m = cfg.source, cfg.optimizer, cfg.model
    for i, name in enumerate(o.choices):
        if name not in OPTIMIZERS:
            hint = difflib.get_close_matches(str(name), OPTIMIZERS, n=1)
            raise ConfigError(
                f"{src}: optimizer.choices[{i}] = {name!r} is not an optimizer; fix: use one of "
                + ", ".join(OPTIMIZERS)
                + (f" (did you mean '{hint[0]}'?)" if hint else "")
            )
    if o.name in ("nesterov", "momentum") and o.momentum == 0:
        raise ConfigError(
            f"{src}: optimizer.name = '{o.name}' with optimizer.momentum = 0: Nesterov/momentum needs momentum > 0",
            fix="set optimizer.momentum (e.g. 0.9) or use name = 'sgd'",
        )
    if len(o.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in o.betas):
        raise ConfigError(f"{src}: optimizer.betas = {o.betas!r}", fix="two numbers in [0, 1), e.g. [0.9, 0.999]")
    for k, v in o.group_lr.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"{src}: optimizer.group_lr.{k} = {v!r}", fix="a learning rate > 0")
    if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in m.hidden):
        raise ConfigError(f"{src}: model.hidden = {m.hidden!r}", fix="a list of positive integers, e.g. [200]")
    for key, spec in (("model.factory", m.factory), ("data.factory", cfg.data.factory)):
        if spec and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", spec):
            raise ConfigError(
                f"{src}: {key} = {spec!r}",
                fix='write it as "package.module:function", e.g. "examples.tiny:make_model"',
            )
    if not all(isinstance(n, str) and n.strip() for n in m.freeze):
        raise ConfigError(f"{src}: model.freeze = {m.freeze!r}", fix='a list of module names, e.g. ["features"]')
    ds = cfg.data.dataset
    if ds not in DATASETS and not (ds.startswith(DATASET_FORMS) and ds.split(":", 1)[1]):
        hint = difflib.get_close_matches(ds, DATASETS, n=1, cutoff=0.4)
        raise ConfigError(
            f"{src}: data.dataset = {ds!r} is out of range; fix: data.dataset must be one of "
            + ", ".join(DATASETS)
            + ", torchvision:NAME or imagefolder:PATH"
            + (f" (did you mean '{hint[0]}'?)" if hint else "")
        )
    if 0 < cfg.log.system_seconds < 1:
        raise ConfigError(
            f"{src}: log.system_seconds = {cfg.log.system_seconds}",
            fix="1 or more (the readings run at most once a second), or 0 for none",
        )
    if m.pretrained and m.name != "monster":
        raise ConfigError(
            f"{src}: model.pretrained = true but model.name = '{m.name}' has no AlexNet features",
            fix="set model.pretrained = false or model.name = 'monster'",
        )
    if not m.residual and m.name != "monster":
        raise ConfigError(
            f"{src}: model.residual = false but model '{m.name}' has no residual blocks; "
            "fix: set model.residual = true or model.name = 'monster'"
        )
    if m.batchnorm is True and m.name == "mnist_net":
        raise ConfigError(
            f"{src}: model.batchnorm = true but mnist_net is the lecture's net without batch norm; "
            "fix: set model.batchnorm = \"auto\", or use model.name = 'mlp' or 'monster'"
        )
    if cfg.schedule.freeze_features_epochs and m.name != "monster" and not (m.factory or m.freeze):
        raise ConfigError(
            f"{src}: schedule.freeze_features_epochs = {cfg.schedule.freeze_features_epochs} "
            f"but model '{m.name}' has no features to freeze",
            fix="set it to 0, or name modules in model.freeze",
        )
    dev = cfg.run.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError(f"{src}: run.device = {dev!r}", fix=f"use {DEVICES_HELP}")
    if cfg.run.kind == "landscape":  # the paths are checked with the rest of the preset
        check_landscape(cfg)
    check_compare(cfg)


def check_compare(cfg: Config) -> None:
    """run.compare's shape: a table of arrays, or an array of tables of dotted keys; the values
    themselves are checked when engine.compare builds one config per variant."""
    src, compare = cfg.source, cfg.run.compare
    if isinstance(compare, dict):
        for k, vals in compare.items():
            if not isinstance(vals, tuple) or not vals:
                raise ConfigError(
                    f'{src}: run.compare."{k}" must be a non-empty array of values; '
                    f'fix: e.g. {{ "{k}" = [1, 10, 100] }}'
                )
        return
    example = '{ label = "plain", "model.residual" = false }'
    if not compare:
        raise ConfigError(f"{src}: run.compare = []: nothing to compare", fix=f"one table per run, e.g. [ {example} ]")
    for i, table in enumerate(compare):
        if not isinstance(table, dict) or not table:  # { label = "..." } alone: the preset as it is
            raise ConfigError(f"{src}: run.compare[{i}] = {table!r} is not a table of settings", fix=f"e.g. {example}")
        if not isinstance(table.get("label", ""), str):
            raise ConfigError(f"{src}: run.compare[{i}].label = {table['label']!r}", fix='a string, e.g. "plain"')


# ---- [landscape] paths: one table per optimizer path, checked against engine.registry


@dataclass
class PathSpec:
    label: str  # e.g. "sgd lr=0.05", "momentum 0.5 lr=0.05", "adam lr=0.1"
    optimizer: str  # a name from engine.registry
    hyper: dict = field(default_factory=dict)  # keyword arguments of the torch optimizer, lr included


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _path_keys(name: str) -> dict[str, Any]:
    """The keys a path of optimizer `name` may set, with their defaults (lr is required)."""
    entry = registry.OPTIMIZERS[name]
    keys = (*entry.keys, *entry.path_only)
    return {k: list(v) if isinstance(v := entry.default(k), tuple) else v for k in keys}


def _check_hyper(src: str, key: str, name: str, k: str, v: Any) -> Any:
    """One path value, checked; returns it in the form torch wants."""

    def bad(want: str, example: str) -> ConfigError:
        return ConfigError(f"{src}: {key}.{k} = {v!r} for {name}", fix=f"{want}, e.g. {k} = {example}")

    if k == "lr":
        if not _num(v) or v <= 0:
            raise bad("a learning rate > 0", "1e-2")
        return float(v)
    if k == "betas":
        if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(_num(b) and 0 <= b < 1 for b in v)):
            raise bad("two numbers in [0, 1)", "[0.9, 0.999]")
        return [float(b) for b in v]
    if k == "eps":
        if not _num(v) or v <= 0:
            raise bad("a number > 0", "1e-8")
        return float(v)
    if k == "momentum":
        low_ok = name == "rmsprop"  # SGD momentum 0 would be plain sgd: say so
        if not _num(v) or not (0 <= v < 1) or (v == 0 and not low_ok):
            raise bad('a number in (0, 1) (or optimizer = "sgd" for none)', "0.9")
        return float(v)
    if k in ("rho", "alpha"):
        if not _num(v) or not (0 <= v <= 1):
            raise bad("a number in [0, 1]", "0.9")
        return float(v)
    if k == "weight_decay":
        if not _num(v) or v < 0:
            raise bad("a number >= 0", "0.0")
        return float(v)
    if k == "max_iter":
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise bad("an integer >= 1", "4")
        return v
    raise AssertionError(k)  # pragma: no cover - the registry and this function list the same keys


def _path_label(name: str, hyper: dict) -> str:
    lr = f"lr={hyper['lr']:g}"
    if name in ("momentum", "nesterov"):
        return f"{name} {hyper['momentum']:g} {lr}"
    return f"{name} {lr}"


def path_specs(cfg: Config) -> list[PathSpec]:
    """landscape.paths as PathSpecs; any bad table raises ConfigError naming the key and the fix."""
    src = cfg.source
    paths = cfg.landscape.paths
    if not paths:
        raise ConfigError(
            f"{src}: landscape.paths is empty",
            fix='add at least one path, e.g. paths = [ { optimizer = "sgd", lr = 1e-2 } ]',
        )
    specs: list[PathSpec] = []
    for i, table in enumerate(paths):
        key = f"landscape.paths[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(
                f"{src}: {key} = {table!r} is not a table", fix='write it as { optimizer = "sgd", lr = 1e-2 }'
            )
        name = table.get("optimizer")
        if name is None:
            raise ConfigError(
                f'{src}: {key} has no optimizer; fix: add optimizer = "sgd" (one of ' + ", ".join(OPTIMIZERS) + ")"
            )
        if name not in OPTIMIZERS:
            hint = difflib.get_close_matches(str(name), OPTIMIZERS, n=1)
            raise ConfigError(
                f"{src}: {key}.optimizer = {name!r} is not an optimizer; fix: use one of "
                + ", ".join(OPTIMIZERS)
                + (f" (did you mean '{hint[0]}'?)" if hint else "")
            )
        defaults = _path_keys(name)
        allowed = ["optimizer", "lr", *defaults]
        for k in table:
            if k not in allowed:
                hint = difflib.get_close_matches(k, allowed, n=1, cutoff=0.6)
                extra = f"did you mean '{hint[0]}'? " if hint else ""
                if k == "momentum" and name == "sgd":
                    extra = 'for momentum use optimizer = "momentum"; '
                raise ConfigError(
                    f"{src}: unknown key {key}.{k} for optimizer '{name}'; fix: {extra}"
                    f"'{name}' takes " + ", ".join(allowed[1:])
                )
        if "lr" not in table:
            raise ConfigError(f"{src}: {key} has no lr", fix="add lr = 1e-2 (the learning rate)")
        hyper = {k: _check_hyper(src, key, name, k, table[k]) for k in allowed[1:] if k in table}
        hyper = {**defaults, **hyper}  # defaults for what the table leaves out
        label = _path_label(name, hyper)
        n_same = sum(s.label == label or s.label.startswith(label + " #") for s in specs)
        if n_same:  # the label is the CSV's key: keep it unique
            label = f"{label} #{n_same + 1}"
        specs.append(PathSpec(label=label, optimizer=name, hyper=hyper))
    return specs


def check_landscape(cfg: Config) -> None:
    """The [landscape] section of a run.kind = "landscape" preset, paths included."""
    src, ls = cfg.source, cfg.landscape
    ev = ls.eigenvalues
    if not (len(ev) == 2 and all(_num(e) and e > 0 for e in ev)):
        raise ConfigError(f"{src}: landscape.eigenvalues = {ev!r}", fix="two curvatures > 0, e.g. [1.0, 39.0]")
    if not (len(ls.start) == 2 and all(_num(s) for s in ls.start)):
        raise ConfigError(f"{src}: landscape.start = {ls.start!r}", fix="a point [x, y], e.g. [-1.5, 1.0]")
    if not math.isfinite(ls.angle_deg):
        raise ConfigError(f"{src}: landscape.angle_deg = {ls.angle_deg!r}", fix="an angle in degrees, e.g. 30")
    path_specs(cfg)


# ---- overrides and loading


def _set_dotted(src: str, raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(
            f"{src}: --set {key}: the key must be section.key, e.g. optimizer.lr; fix: "
            "use one of the sections " + ", ".join(SECTIONS)
        )
    sec, k = parts
    if sec not in SECTIONS:
        raise ConfigError(f"{src}: --set {key}: unknown section '{sec}'", fix=f"{_close(sec, SECTIONS)}")
    names = [f.name for f in dataclasses.fields(SECTIONS[sec]) if not f.metadata.get("derived")]
    if k not in names and sec not in ("model", "data"):  # a factory's argument: checked with the table
        raise ConfigError(f"{src}: --set {key}: unknown key {key}", fix=f"{_close(k, names)}")
    raw.setdefault(sec, {})[k] = value


def parse_override(src: str, text: str) -> tuple[str, Any]:
    """'optimizer.lr=0.1' -> ('optimizer.lr', 0.1); the value is read as TOML, bare words as strings."""
    if "=" not in text:
        raise ConfigError(
            f"{src}: --set {text!r} has no '='", fix="write --set section.key=value, e.g. --set optimizer.lr=0.1"
        )
    key, val = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {val}")["v"]
    except RecursionError:
        raise ConfigError(f"{src}: --set {key}=...: the value is nested too deeply", fix="a flat value") from None
    except tomllib.TOMLDecodeError:
        if val and all(c.isalnum() or c in "_-:./" for c in val):
            value = val  # a bare word such as adam or cuda:0
        else:
            raise ConfigError(
                f"{src}: --set {key}={val}: the value is not valid TOML",
                fix=f"quote strings, e.g. --set {key}='\"text\"'",
            ) from None
    return key, value


# Keys whose value is code deeptui runs: a function it imports and calls, a shell command.
CODE_KEYS = ("model.factory", "data.factory", "run.notify_command")


def code_keys(cfg: Config) -> dict[str, str]:
    """The CODE_KEYS that cfg sets, with their values."""
    values = {"model.factory": cfg.model.factory, "data.factory": cfg.data.factory}
    values["run.notify_command"] = cfg.run.notify_command
    return {k: v for k, v in values.items() if v}


def default_data_root(cli_value: str | None) -> Path:
    """--data-dir, else $PYTORCH_DATA_DIR (as the lecture's code), else ./data."""
    value = cli_value or os.environ.get("PYTORCH_DATA_DIR") or "data"
    return Path(value).expanduser()


def from_table(raw: dict, source: str) -> Config:
    """A config from TOML-shaped data (deeptui.watch's settings), validated as a preset is; errors
    name `source`."""
    return _build(source, raw)


def load_config(
    path: str | Path | None, overrides: list[str | tuple[str, Any]] = (), embedded: str | None = None
) -> Config:
    """Read a preset (or the embedded text), apply the overrides (`--set`'s "key=value" texts, or
    (dotted key, value) pairs, e.g. a flag's typed value), validate everything."""
    src = str(path) if path is not None else "<embedded quickstart>"
    if embedded is not None:
        text = embedded
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(
                f"{src}: preset file not found", fix="check the path, or see presets/ for the shipped presets"
            )
        try:
            text = p.read_text(encoding="utf-8", errors="surrogateescape")  # a path's odd bytes, as written
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{src}: cannot read the preset ({e})", fix="check the file") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        at = re.search(r"at line (\d+)", str(e))  # tomllib names the line in its message (no lineno before 3.14)
        fix = f"correct line {at[1]} of {src} (TOML syntax: https://toml.io)" if at else "correct the TOML syntax"
        raise ConfigError(f"{src}: TOML syntax error: {e}", fix=fix) from None
    except RecursionError:
        raise ConfigError(f"{src}: the preset is nested too deeply", fix="plain tables and arrays") from None
    given = []  # the keys the command line set: an error in one says so, not only the file's name
    for item in overrides:
        key, value = item if isinstance(item, tuple) else parse_override(src, item)
        _set_dotted(src, raw, key, value)
        given.append(key)
    try:
        cfg = _build(src, raw)
    except ConfigError as e:
        key = next((k for k in given if e.message.startswith(f"{src}: {k} ")), None)
        if key is None:
            raise
        raise ConfigError(f"{src}, set on the command line: {e.message[len(src) + 2 :]}", fix=e.fix) from None
    name = cfg.run.name or (Path(path).stem if path is not None else "quickstart")
    if safe_name(name) != cfg.run.name:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, name=safe_name(name)))
    return cfg


def replace_key(cfg: Config, dotted: str, value: Any) -> Config:
    """A copy of cfg with one dotted key changed, validated like a --set."""
    return replace_keys(cfg, {dotted: value})


def replace_keys(cfg: Config, settings: dict[str, Any]) -> Config:
    """A copy of cfg with several dotted keys changed at once, validated like --set's."""
    raw = cfg.to_dict()
    for dotted, value in settings.items():
        _set_dotted(cfg.source, raw, dotted, value)
    return _build(cfg.source, raw)


def documented_keys() -> dict[str, str]:
    """Every preset key with its documentation, for the README and the commented presets' tests."""
    return {
        f"{s}.{f.name}": f.metadata["doc"]
        for s, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
        if not f.metadata.get("derived")
    }
