"""`[run] compare`: the same preset once per compared value, or once per table of settings.

`compare = { "data.batch_size" = [1, 10, 100, 1000] }` varies one key; `compare = [ { label =
"plain", "model.residual" = false }, { "model.residual" = true, "optimizer.lr" = 0.1 } ]` runs
once per table, each setting any keys together (e.g. a learning rate per batch size). Each
variant is a complete run with its own run directory (its name says the variant); they run one
after another, so each gets the whole machine and their speeds can be compared too.
"""

from __future__ import annotations

import dataclasses
import re

from .config import Config, ConfigError, replace_keys


def settings(cfg: Config) -> list[tuple[str, str, dict]]:
    """[(label, run-name suffix, {dotted key: value})], one per variant."""
    compare = cfg.run.compare
    if isinstance(compare, dict):
        if len(compare) != 1:
            raise ConfigError(
                f"{cfg.source}: run.compare has {len(compare)} keys",
                fix="compare one key at a time, e.g. "
                '{ "data.batch_size" = [1, 10, 100] }, or give one table of settings per run: '
                '[ { "data.batch_size" = 1, "optimizer.lr" = 0.01 }, ... ]',
            )
        ((key, values),) = compare.items()
        leaf = key.split(".")[-1]
        return [(f"{leaf}={v}", f"{leaf}{v}", {key: v}) for v in values]
    out = []
    for table in compare:
        keys = {k: v for k, v in table.items() if k != "label"}
        label = table.get("label") or ", ".join(f"{k.split('.')[-1]}={v}" for k, v in keys.items()) or "as is"
        out.append((label, re.sub(r"[^A-Za-z0-9_.=+-]+", "_", label).strip("_"), keys))
    return out


def title(cfg: Config) -> str:
    """What a series compares, for the dashboard: the compared key, or the tables' keys' names."""
    if isinstance(cfg.run.compare, dict):
        return next(iter(cfg.run.compare), "")
    return ", ".join(dict.fromkeys(k.split(".")[-1] for _, _, table in settings(cfg) for k in table))


def variants(cfg: Config) -> list[tuple[str, Config]]:
    """[(label, config)] for each compared value; [(name, cfg)] when nothing is compared."""
    if not cfg.run.compare:
        return [(cfg.run.name, cfg)]
    base = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, compare={}))
    out = []
    for i, (label, suffix, table) in enumerate(settings(cfg)):
        where = f"run.compare[{i}]" if isinstance(cfg.run.compare, tuple) else f"run.compare value {label}"
        for key in table:
            if key.startswith("run."):
                raise ConfigError(
                    f'{cfg.source}: {where}: "{key}": run settings cannot be compared',
                    fix="compare a data, model, optimizer, schedule, log or perf key",
                )
        try:
            one = replace_keys(base, table)
        except ConfigError as e:  # the file, then which variant, then what is wrong with it
            text, src = str(e), f"{cfg.source}: "
            for key in table:
                text = text.replace(f"--set {key}: ", "")
            raise ConfigError(text.replace(src, f"{src}{where}: ", 1)) from None
        name = f"{cfg.run.name}-{suffix}"
        out.append((label, dataclasses.replace(one, run=dataclasses.replace(one.run, name=name))))
    return out
