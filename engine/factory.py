"""Your own model and data: model.factory and data.factory ("package.module:function") imported
from the current directory and PYTHONPATH, called with their table's keys, their results checked.

Every fault is a one-line FactoryError naming the preset key and the fix: a module that is not
there, a missing attribute, a keyword the function does not take, a wrong return type, or the
first line of what the factory itself raised.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .config import thaw
from .errors import FactoryError

# What a data factory may ask for by naming a parameter: deeptui passes them (a factory that
# returns its own DataBundle needs the device and, in a data-parallel run, its rank).
DATA_CONTEXT = ("cfg", "device", "rank", "world")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def resolve(spec: str, key: str, src: str) -> Callable:
    """'package.module:function' -> the function, imported as `python -m` would: the current
    directory first, then PYTHONPATH."""
    module_name, _, attr = spec.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # a console script's sys.path starts at its own folder, not here
    importlib.invalidate_caches()  # a module written since the last import is found too
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise FactoryError(
                f"{src}: {key} = {spec!r}: no module named '{e.name}' in the current directory ({cwd}) "
                "or on PYTHONPATH",
                fix="check the name, run deeptui from the folder that holds it, or add that folder to PYTHONPATH",
            ) from None
        raise FactoryError(
            f"{src}: {key} = {spec!r}: importing {module_name} failed ({first_line(e)}); "
            f"fix: install what {module_name} imports"
        ) from None
    except Exception as e:  # a syntax error, or the module's own code raised
        raise FactoryError(
            f"{src}: {key} = {spec!r}: importing {module_name} raised {first_line(e)}", fix=f"correct {module_name}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            hint = difflib.get_close_matches(part, names, n=1)
            raise FactoryError(
                f"{src}: {key} = {spec!r}: {getattr(obj, '__name__', module_name)} has no attribute '{part}'; fix: "
                + (f"did you mean '{hint[0]}'?" if hint else f"name a function of {module_name}")
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise FactoryError(f"{src}: {key} = {spec!r} is a {type(obj).__name__}, not a function", fix="name a function")
    return obj


def _parameters(fn: Callable) -> set[str]:
    """The names fn takes as keyword arguments (empty when its signature cannot be read)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return set()
    return {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_arguments(fn: Callable, kwargs: dict, spec: str, section: str, src: str, supplied=()) -> None:
    """The table's keys against the function's parameters, before it is called: a key it does not
    take, or a parameter without a default that the table does not give, named with the fix."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin or C function: let the call say
        return
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for k in kwargs:
        if k in supplied:
            raise FactoryError(f"{src}: {section}.{k}: deeptui passes {k} to {spec} itself", fix="remove the key")
        if k not in named and not takes_any:
            hint = difflib.get_close_matches(k, [n for n in named if n not in supplied], n=1)
            takes = ", ".join(n for n in named if n not in supplied) or "no arguments"
            raise FactoryError(
                f"{src}: unknown key {section}.{k}: {spec} takes no argument '{k}'; fix: "
                + (f"did you mean '{hint[0]}'?" if hint else f"it takes {takes}")
            )
    for n, p in params.items():
        if (
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.default is p.empty
            and n not in kwargs
            and n not in supplied
        ):
            raise FactoryError(f"{src}: {spec} needs '{n}'", fix=f"add {n} = ... to [{section}]")


def call(fn: Callable, kwargs: dict, spec: str, key: str, src: str) -> Any:
    try:
        return fn(**thaw(kwargs))  # plain lists and dicts, as the preset wrote them: the function may change them
    except Exception as e:
        raise FactoryError(
            f"{src}: {key} = {spec!r} raised {first_line(e)}", fix="correct the factory or the keys it is called with"
        ) from None


def make_model(mcfg, src: str) -> nn.Module:
    """model.factory called with [model]'s other keys; it must return an nn.Module. The built-in
    models' keys (name, blocks, channels, ...) go to it only when it names them as parameters, so
    `--set model.factory=...` works on a preset written for a built-in model."""
    spec = mcfg.factory
    fn = resolve(spec, "model.factory", src)
    builtin = {f.name for f in dataclasses.fields(mcfg)} - {"factory", "freeze", "kwargs"}
    kwargs = {k: v for k, v in mcfg.kwargs.items() if k not in builtin or k in _parameters(fn)}
    check_arguments(fn, kwargs, spec, "model", src)
    model = call(fn, kwargs, spec, "model.factory", src)
    if not isinstance(model, nn.Module):
        raise FactoryError(
            f"{src}: model.factory = {spec!r} returned a {type(model).__name__}, not an nn.Module; "
            "fix: return the model"
        )
    return model


def call_data(cfg, device: torch.device, rank: int, world: int) -> Any:
    """data.factory called with [data]'s keys that deeptui does not know, plus whichever of cfg,
    device, rank and world it names; engine.datasets checks and bundles what it returns."""
    spec, src = cfg.data.factory, cfg.source
    fn = resolve(spec, "data.factory", src)
    kwargs = dict(cfg.data.kwargs)
    check_arguments(fn, kwargs, spec, "data", src, supplied=DATA_CONTEXT)
    context = {"cfg": cfg, "device": device, "rank": rank, "world": world}
    kwargs.update({k: v for k, v in context.items() if k in _parameters(fn)})
    return call(fn, kwargs, spec, "data.factory", src)


def probe(model: nn.Module, data, cfg) -> None:
    """One forward pass of two zero samples, in eval mode without gradients, before anything
    trains: a model that does not fit the data fails here, as a one-line error naming the keys,
    not at the first step. Outputs must be (batch, classes) with at least the data's classes."""
    shape = tuple(data.sample_shape) or (data.in_channels, data.image_size, data.image_size)
    what = cfg.model.factory or cfg.model.name
    where = "model.factory" if cfg.model.factory else "model.name"
    source = cfg.data.factory or cfg.data.dataset
    was_training = model.training
    try:
        p = next(model.parameters(), None)
        x = torch.zeros(2, *shape, device=p.device if p is not None else "cpu")
        model.eval()
        with torch.no_grad():
            out = model(x)
    except Exception as e:
        raise FactoryError(
            f"{cfg.source}: {where} = {what!r} cannot take the data's samples of shape {shape} ({source}): "
            f"{first_line(e)}",
            fix="make the model fit the data (in_channels, image size, num_classes)",
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise FactoryError(
            f"{cfg.source}: {where} = {what!r} returns {got} for a batch of 2, not (batch, classes) logits; "
            "fix: return one row of class scores per sample"
        )
    if data.num_classes and out.shape[1] < data.num_classes:
        raise FactoryError(
            f"{cfg.source}: {where} = {what!r} gives {out.shape[1]} outputs per sample but {source} has "
            f"{data.num_classes} classes",
            fix=f"set model.num_classes = {data.num_classes} (or your factory's equivalent)",
        )
