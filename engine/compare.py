"""`[run] compare = { "data.batch_size" = [1, 10, 100, 1000] }`: the same preset once per value.

Each variant is a complete run with its own run directory (its name says the value); they run
one after another, so each gets the whole machine and their speeds can be compared too.
"""

from __future__ import annotations

import dataclasses

from .config import Config, ConfigError, replace_key


def variants(cfg: Config) -> list[tuple[str, Config]]:
    """[(label, config)] for each compared value; [(name, cfg)] when nothing is compared."""
    if not cfg.run.compare:
        return [(cfg.run.name, cfg)]
    if len(cfg.run.compare) != 1:
        raise ConfigError(
            f"{cfg.source}: run.compare has {len(cfg.run.compare)} keys; fix: compare one key "
            'at a time, e.g. { "data.batch_size" = [1, 10, 100] }'
        )
    ((key, values),) = cfg.run.compare.items()
    if key.startswith("run."):
        raise ConfigError(
            f'{cfg.source}: run.compare."{key}": run settings cannot be compared; fix: '
            "compare a data, model, optimizer, schedule or perf key"
        )
    base = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, compare={}))
    out = []
    for v in values:
        try:
            one = replace_key(base, key, v)
        except ConfigError as e:
            raise ConfigError(str(e).replace(f"--set {key}", f'run.compare."{key}" value {v!r}')) from None
        leaf = key.split(".")[-1]
        name = f"{cfg.run.name}-{leaf}{v}"
        out.append((f"{leaf}={v}", dataclasses.replace(one, run=dataclasses.replace(one.run, name=name))))
    return out
