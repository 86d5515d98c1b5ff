"""Engine configuration as data: the ``ixhpc:`` block's ``engine-config``, ``role-env``,
``transfer-backend`` and ``overrides``, resolved for one role of one point
(docs/engine-config.md).

The key -> flag rule is srt-slurm's (``config_flags``, shared with ``ixhpc.srtslurm.plan``):
keys sorted, ``_`` -> ``-``, ``true`` a bare flag, ``false``/``null`` left out, a list as
several words, a map as compact JSON. String values may name the point's values:
``{conc}``, ``{tp}``, ``{ep}`` (the role's own), ``{isl}``, ``{osl}``, ``{max-model-len}``;
a string that is exactly one placeholder becomes the number.

Overrides apply in file order where their ``when`` matches the role (its tp/ep/dp-attn) and
the point (concurrency, lengths, spec-decoding), merged as srt-slurm merges overrides. An
entry whose settings depend on the concurrency (a ``{conc}`` placeholder, or an override
matching on ``conc``) restarts its engines per concurrency: each concurrency is its own job
(``placement.group_points``); otherwise one engine serves the whole list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ixhpc.errors import ConfigError

if TYPE_CHECKING:
    from ixhpc.recipe import IxhpcBlock, PointMatch

ConfigRole = Literal["prefill", "decode", "server", "router"]


def json_value(v: Any) -> str:
    """A flag value: maps and lists as compact JSON (what engines parse), else ``str``."""
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else str(v)


def flag_of(key: Any) -> str:
    """The flag an engine config key becomes (srt-slurm's rule: ``_`` -> ``-``)."""
    return "--" + str(key).replace("_", "-")


def config_flags(cfg: Mapping[str, Any]) -> list[str]:
    """An engine config map as flags (srt-slurm SPEC 10.1): keys sorted, ``_`` -> ``-``,
    ``true`` bare, ``false``/``null`` omitted, a list as several words, a map as JSON (17.1)."""
    out: list[str] = []
    for key in sorted(cfg):
        v = cfg[key]
        flag = flag_of(key)
        if v is True:
            out.append(flag)
        elif v is False or v is None:
            continue
        elif isinstance(v, list):
            out += [flag, *(json_value(x) for x in v)]
        else:
            out += [flag, json_value(v)]
    return out


@dataclass(frozen=True)
class PointValues:
    """What placeholders and ``when`` read: the point's values and the role's parallelism."""

    tp: int
    ep: int
    dp_attn: bool
    concs: tuple[int, ...]
    isl: int
    osl: int
    max_model_len: int
    spec_decoding: str

    def placeholder(self, name: str) -> int:
        if name == "conc":
            if len(self.concs) != 1:
                raise ConfigError(f"{{conc}} with concurrencies {list(self.concs)}: expected one "
                                  f"concurrency per engine (ixhpc.engine_config.depends_on_conc)")
            return self.concs[0]
        return {"tp": self.tp, "ep": self.ep, "isl": self.isl, "osl": self.osl,
                "max-model-len": self.max_model_len}[name]


@dataclass(frozen=True)
class Resolved:
    config: dict[str, Any]
    env: dict[str, str]
    transfer_backend: str | None


def _merge(base: Any, override: Any) -> Any:
    from ixhpc.srtslurm.load import merge

    return merge(base, override)


def _matches(when: PointMatch, v: PointValues) -> bool:
    checks = [(when.tp, v.tp), (when.ep, v.ep), (when.isl, v.isl), (when.osl, v.osl)]
    if any(wanted is not None and value not in wanted for wanted, value in checks):
        return False
    if when.conc is not None and not set(v.concs) <= set(when.conc):
        return False
    if when.dp_attn is not None and when.dp_attn != v.dp_attn:
        return False
    return when.spec_decoding is None or when.spec_decoding == v.spec_decoding


def _substitute(value: Any, v: PointValues) -> Any:
    from ixhpc.recipe import CONFIG_PLACEHOLDERS

    if isinstance(value, str):
        for name in CONFIG_PLACEHOLDERS:
            token = "{" + name + "}"
            if value == token:
                return v.placeholder(name)
            if token in value:
                value = value.replace(token, str(v.placeholder(name)))
        return value
    if isinstance(value, dict):
        return {k: _substitute(x, v) for k, x in value.items()}
    if isinstance(value, list):
        return [_substitute(x, v) for x in value]
    return value


def resolve(block: IxhpcBlock, role: ConfigRole, values: PointValues) -> Resolved:
    """The role's engine config, environment and transfer backend for one point."""
    config: Any = dict(getattr(block.engine_config, role))
    env: Any = dict(getattr(block.role_env, role))
    backend = block.transfer_backend
    for o in block.overrides:
        if _matches(o.when, values):
            config = _merge(config, getattr(o.engine_config, role))
            env = _merge(env, getattr(o.role_env, role))
            backend = o.transfer_backend or backend
    env = {k: str(_substitute(x, values)) for k, x in env.items()}
    return Resolved(_substitute(config, values), env, backend)


def strings_in(value: Any) -> Iterator[str]:
    """Every string of a config value, at any depth (map values and list items)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (dict, list)):
        for x in value.values() if isinstance(value, dict) else value:
            yield from strings_in(x)


def depends_on_conc(block: IxhpcBlock) -> bool:
    """Whether engine settings can differ between concurrencies (then each concurrency gets
    its own engine start, as InferenceX's scripts do)."""
    maps = [block.engine_config.model_dump(), block.role_env.model_dump()]
    for o in block.overrides:
        if o.when.conc is not None:
            return True
        maps += [o.engine_config.model_dump(), o.role_env.model_dump()]
    return any("{conc}" in text for m in maps for text in strings_in(m))


def is_set(block: IxhpcBlock) -> bool:
    """Whether the block configures engines as data at all."""
    return bool(block.transfer_backend or block.overrides
                or any(block.engine_config.model_dump().values())
                or any(block.role_env.model_dump().values()))
