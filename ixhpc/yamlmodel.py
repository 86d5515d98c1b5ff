"""Typed YAML with located errors: the machinery every YAML-facing model shares.

Recipes, cluster profiles and runner files are read the same way: the YAML is composed into
nodes (which carry line numbers) and built into plain Python values with a ``path -> line``
map beside them (``Located``); pydantic's error locations (which use the kebab-case aliases
of ``StrictModel``) are then looked up in that map, so every problem is reported as
``FILE:LINE: key.path: expected X, found Y``, all of them at once.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from ixhpc.errors import ConfigError as ConfigError  # the config kind; re-exported for its users

# --------------------------------------------------------------------------------------
# Shared model base: kebab-case YAML keys are derived from the snake_case field names here,
# in one place, instead of an alias per field.


def kebab(name: str) -> str:
    return name.replace("_", "-")


class StrictModel(BaseModel):
    """Base of every YAML-facing model: unknown keys and type coercions are errors."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, alias_generator=kebab, populate_by_name=True
    )


PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]

# Strings reach scripts, file names and HDF5 attributes, none of which holds a NUL (a newline
# or escape would garble an #SBATCH line or a log; a lone surrogate cannot be written as
# UTF-8): refused when the file is read, so validate reports them, located.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def printable(value: str) -> str:
    """The rule of ``Str``, for strings that are not model fields (config keys)."""
    bad = _CONTROL.search(value)
    if bad:
        shown = json.dumps(value)
        raise ValueError(f"expected text without control characters, found {bad.group()!r} at "
                         f"offset {bad.start()} of {shown if len(shown) <= 60 else shown[:57] + '...'}")
    return value


# Every string field of a YAML-facing model is one of these (tests/test_errors.py checks).
_PRINTABLE = AfterValidator(printable)
Str = Annotated[str, _PRINTABLE]
Text = Annotated[str, Field(min_length=1), _PRINTABLE]
EnvName = Annotated[str, _PRINTABLE, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


def _mount_flags(value: str) -> str:
    from ixhpc.containers import parse_mount  # the runtimes' own rule, so both agree
    parse_mount(value)
    return value


# src:dst or src:dst:flags, as pyxis' --container-mounts and docker -v take them.
Mount = Annotated[str, Field(pattern=r"^[^:,\s]+:[^:,\s]+(:[^:,\s]+)?$"), _PRINTABLE,
                  AfterValidator(_mount_flags)]


# --------------------------------------------------------------------------------------
# YAML with line numbers.

Path_ = tuple[str | int | float, ...]  # keys may be any plain YAML scalar

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Located:
    """A YAML document as plain values plus the line of every key and list item."""

    file: str
    data: Any
    lines: dict[Path_, int]

    def line(self, path: Iterable[str | int | float]) -> int:
        p = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return self.lines.get(p, 1)

    def error(self, path: Path_, message: str) -> str:
        return f"{self.file}:{self.line(path)}: {format_path(path)}{': ' if path else ''}{message}"


def format_path(path: Iterable[str | int | float]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml(path: str | Path, what: str = "a mapping of config keys to recipe entries") -> Located:
    """Read one YAML file into a ``Located`` mapping, or raise ConfigError with every located
    problem that can be found before the content is interpreted."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{name}:1: cannot read file: {exc.strerror or exc}"]) from None
    text = _decode(name, raw)
    tabs = [f"{name}:{i}: expected spaces for indentation, found a tab character"
            for i, ln in enumerate(text.splitlines(), 1) if "\t" in ln[: len(ln) - len(ln.lstrip())]]
    if tabs:
        raise ConfigError(tabs)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([f"{name}:1: expected {what}, found an empty file"])
        errors: list[str] = []
        lines: dict[Path_, int] = {}
        data = _build(loader, node, (), lines, errors, name)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError([f"{name}:{line}: invalid YAML: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{name}:1: invalid YAML: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{name}:1: invalid YAML: nesting too deep (recursive alias?)"]) from None
    finally:
        loader.dispose()
    if errors:
        raise ConfigError(errors)
    if not isinstance(data, dict):
        raise ConfigError([f"{name}:{node.start_mark.line + 1}: expected {what}, "
                           f"found {_kind(data)}"])
    return Located(name, data, lines)


def _decode(name: str, raw: bytes) -> str:
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise ConfigError([f"{name}:{line}: expected a YAML text file, found binary data"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{name}:{line}: expected UTF-8 YAML text, found binary data"]) from None


def _build(loader: Any, node: yaml.Node, path: Path_, lines: dict[Path_, int],
           errors: list[str], name: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # honour `<<: *anchor` merge keys
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = _build(loader, knode, path, {}, errors, name)
            kline = knode.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool)) or key is None:
                errors.append(f"{name}:{kline}: {format_path(path) or '(top level)'}: "
                              f"expected a plain key, found {_kind(key)}")
                continue
            if key in out:
                errors.append(f"{name}:{kline}: {format_path(path + (key,))}: expected each key "
                              f"once, found a duplicate key (first at line {lines[path + (key,)]})")
                continue
            lines[path + (key,)] = kline
            out[key] = _build(loader, vnode, path + (key,), lines, errors, name)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            items.append(_build(loader, item, path + (i,), lines, errors, name))
        return items
    # Scalars repeat a lot (tp: 8, dp-attn: false...): construct each distinct one once.
    cache = _scalar_cache(loader)
    ck = (node.tag, node.value)
    if ck not in cache:
        cache[ck] = loader.construct_object(node)
    return cache[ck]


def _scalar_cache(loader: Any) -> dict[tuple[str, str], Any]:
    cache = getattr(loader, "_ixhpc_scalars", None)
    if cache is None:
        cache = loader._ixhpc_scalars = {}
    return cache


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


# --------------------------------------------------------------------------------------
# Pydantic errors -> located lines.

_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "missing": "this required key", "string_too_short": "a non-empty string",
    "none_required": "null",
}


def found(v: Any) -> str:
    if v is None or isinstance(v, (dict, list)):
        return _kind(v)
    text = json.dumps(v) if isinstance(v, str) else repr(v)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({_kind(v)})"


def _describe(err: ErrorDetails, model: type[BaseModel]) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    loc = tuple(p for p in err["loc"] if p != "[key]")
    if kind == "extra_forbidden":
        return _unknown_key(model, loc)
    if kind == "missing":
        return "expected this required key, found it missing"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "literal_error":
        expected = f"one of {ctx.get('expected')}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}[kind]
        expected = f"a value {op} {next(iter(ctx.values()))}"
    elif kind == "too_short":
        expected = f"at least {ctx.get('min_length', 1)} item(s)"
    elif kind == "string_pattern_mismatch":
        expected = ("src:dst[:flags]" if "[^:,\\s]" in str(ctx.get("pattern"))
                    else f"a string matching {ctx.get('pattern')}")
    else:
        expected = _EXPECTED.get(kind, err["msg"].lower())
    return f"expected {expected}, found {found(value)}"


def _unknown_key(model: type[BaseModel], loc: Path_) -> str:
    parent = _model_at(model, loc[:-1])
    valid = sorted(f.alias or n for n, f in parent.model_fields.items()) if parent else []
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else "valid keys: " + ", ".join(valid)
    return f"expected a known key ({hint}), found unknown key '{loc[-1]}'"


def _model_at(model: Any, loc: Path_) -> type[BaseModel] | None:
    """The model class that the location ``loc`` (aliases and list indices) points into."""
    current = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            by_alias = {(f.alias or n): f for n, f in current.model_fields.items()}
            if part not in by_alias:
                return None
            current = by_alias[part].annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Strip Optional/Annotated/list layers down to the type a location step descends into."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or origin is types.UnionType:
            args = [a for a in get_args(tp) if a is not type(None)]
            tp = args[0]
        elif origin is list:
            tp = get_args(tp)[0]
        else:
            return tp


def located_errors(doc: Located, prefix: Path_, exc: ValidationError,
                   model: type[BaseModel]) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if p != "[key]")
        out.append((doc.line(prefix + loc), doc.error(prefix + loc, _describe(err, model))))
    return [text for _, text in sorted(out, key=lambda t: t[0])]
