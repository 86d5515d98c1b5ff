"""Typed YAML with located errors: the machinery every YAML-facing model shares.

Recipes, cluster profiles and runner files are read the same way: the YAML is composed into
nodes (which carry line numbers) and built into plain Python values with a ``path -> line``
map beside them (``Located``); pydantic's error locations (which use the kebab-case aliases
of ``StrictModel``) are then looked up in that map, so every problem is reported as
``FILE:LINE: key.path: expected X, found Y``, all of them at once.
"""

# No `from __future__ import annotations` here: pydantic would compile and evaluate every field's
# annotation string when the module is imported (models are defined at import).

import difflib
import json
import os
import re
import stat
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetCoreSchemaHandler, ValidationError
from pydantic_core import CoreSchema, ErrorDetails, core_schema
from yaml.composer import Composer, ComposerError
from yaml.nodes import Node

from ixhpc.errors import ConfigError as ConfigError  # the config kind; re-exported for its users

# --------------------------------------------------------------------------------------
# Shared model base: kebab-case YAML keys are derived from the snake_case field names here,
# in one place, instead of an alias per field.


def kebab(name: str) -> str:
    return name.replace("_", "-")


class StrictModel(BaseModel):
    """Base of every YAML-facing model: unknown keys and type coercions are errors."""

    # defer_build: a model's schema is built when first used (most commands use few of them)
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, alias_generator=kebab,
                              populate_by_name=True, defer_build=True)


class SnakeStrictModel(BaseModel):
    """Base of YAML-facing models whose keys are snake_case as written (srt-slurm recipes):
    unknown keys are errors, the models are frozen; no alias generator."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


# The config of a model nested in several others (worker blocks, router metadata): built at
# import, because pydantic builds a deferred model's schema anew inside every model that uses
# it (for InferenceX's current files that was 8 ms of `ixhpc sweep`'s 300).
NESTED_IN_SEVERAL = ConfigDict(defer_build=False)


class _OwnValidator:
    """A model field checked by the model's own validator (an instance as it is) and dumped by
    the instance's own serializer, so the models holding it never copy its schema into theirs:
    for the ixhpc block (held by 3 entry and 5 point shapes) that copying was 8 ms of
    `ixhpc sweep`'s 270 on InferenceX's current files. Errors keep their locations."""

    def __get_pydantic_core_schema__(self, source: type[BaseModel], handler: GetCoreSchemaHandler) -> CoreSchema:
        def validate(value: Any) -> BaseModel:
            return value if isinstance(value, source) else source.model_validate(value)
        return core_schema.no_info_plain_validator_function(validate)


OWN_VALIDATOR = _OwnValidator()

PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]

# Numbers a recipe or profile may hold reach bash arithmetic ($((conc * 10))), #SBATCH lines and
# the load generator: bounded, one spelling per meaning (`time-limit: 10**30` would otherwise
# render a job without a limit, `conc: 10**30` overflow the job script's arithmetic).
COUNT_MAX = 1_048_576      # concurrencies, batch sizes, requests
GPUS_MAX = 65_536          # tp, ep, workers, GPUs and nodes
TOKENS_MAX = 16_777_216    # sequence lengths
MINUTES_MAX = 43_200       # 30 days: Slurm time limits
SECONDS_MAX = 2_592_000    # 30 days
Count = Annotated[int, Field(gt=0, le=COUNT_MAX)]
NonNegCount = Annotated[int, Field(ge=0, le=COUNT_MAX)]
GpuCount = Annotated[int, Field(gt=0, le=GPUS_MAX)]
NonNegGpuCount = Annotated[int, Field(ge=0, le=GPUS_MAX)]
Tokens = Annotated[int, Field(gt=0, le=TOKENS_MAX)]
NonNegTokens = Annotated[int, Field(ge=0, le=TOKENS_MAX)]
Minutes = Annotated[int, Field(gt=0, le=MINUTES_MAX)]
Seconds = Annotated[int, Field(gt=0, le=SECONDS_MAX)]

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

# What one file may cost to read, whatever it holds: its size, its nesting, and the values its
# aliases expand to (a few hundred bytes of aliases of aliases -- "billion laughs" -- otherwise
# expand to 10**9 values). Generous: InferenceX's master files are 0.3 MB, 8 levels deep, and
# their anchors and `<<:` merges add well under 1x their own nodes.
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 100
EXPANSION_FACTOR = 100       # values built through aliases and merges: at most 100 per node written,
MAX_EXPANSION = 1_000_000    # and at most this many in all

_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when available
_STR_TAG = "tag:yaml.org,2002:str"


class _Loader(Composer, _BaseLoader):  # type: ignore[misc]
    """The safe loader with Python's composer in front of the parser (libyaml's composer recurses
    in C and crashes the interpreter at ~50,000 levels of `[`), counting nodes and levels."""

    def __init__(self, text: str) -> None:
        _BaseLoader.__init__(self, text)
        Composer.__init__(self)
        self.ixhpc_nodes = 0
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self.ixhpc_nodes += 1
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"expected at most {MAX_DEPTH} levels of nesting, "
                                    f"found more", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _NotPlain(Exception):
    """A document ``_read_plain`` leaves to the composer and ``_Builder``."""


def _read_plain(name: str, text: str) -> "Located":
    """The common document -- no anchors, aliases, merges or explicit tags, each key a scalar
    written once, a mapping at the top, at most MAX_DEPTH levels -- built straight from
    libyaml's events, without composing nodes: what ``_Builder`` makes of it, in half the time.
    Any other document, or any problem, is _NotPlain: the composer's path reads it (and words
    and locates its problems). Its lines are the top-level keys' until a deeper one is asked
    for (``_LazyLines``)."""
    data, top = _plain_events(text, every_line=False)
    return Located(name, data, _LazyLines(top, lambda: _plain_events(text, every_line=True)[1]))


def _plain_events(text: str, every_line: bool) -> tuple[dict[Any, Any], dict[Path_, int]]:
    """``_read_plain``'s document and the lines of its top-level keys (``every_line``: of
    every key and item)."""
    loader = _BaseLoader(text)
    get, resolve, construct = loader.get_event, loader.resolve, loader.construct_object
    scalar_event, sequence_end, mapping_end = yaml.ScalarEvent, yaml.SequenceEndEvent, yaml.MappingEndEvent
    collection_start = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
    lines: dict[Path_, int] = {}
    built: dict[tuple[str, Any], Any] = {}  # a scalar's value, once per distinct scalar

    def scalar(event: Any) -> Any:
        if event.anchor is not None or (event.tag is not None and event.tag != "!"):
            raise _NotPlain
        ident = (event.value, event.implicit)
        value = built.get(ident, built)  # ``built`` itself: not built yet
        if value is not built:
            return value
        tag = resolve(yaml.ScalarNode, event.value, event.implicit)  # the resolver's regular expressions
        if tag == _MERGE_TAG:
            raise _NotPlain
        value = event.value if tag == _STR_TAG or tag == _VALUE_TAG else \
            construct(yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark))
        built[ident] = value
        return value

    def collection(event: Any, path: Path_, depth: int) -> Any:
        if type(event) not in collection_start or event.anchor is not None \
                or (event.tag is not None and event.tag != "!"):
            raise _NotPlain  # an alias, an anchor, a tag
        too_deep = depth + 1 >= MAX_DEPTH  # for its items
        record = every_line or depth == 0
        if type(event) is yaml.SequenceStartEvent:
            items: list[Any] = []
            while type(event := get()) is not sequence_end:
                if too_deep:
                    raise _NotPlain
                if record:
                    lines[(*path, len(items))] = _line(event)
                items.append(scalar(event) if type(event) is scalar_event else
                             collection(event, (*path, len(items)), depth + 1))
            return items
        out: dict[Any, Any] = {}
        while type(event := get()) is not mapping_end:
            if type(event) is not scalar_event or too_deep:
                raise _NotPlain
            key = scalar(event)
            if not isinstance(key, (str, int, float, bool)) or key in out:
                raise _NotPlain
            if record:
                lines[(*path, key)] = _line(event)
            event = get()
            out[key] = scalar(event) if type(event) is scalar_event else collection(event, (*path, key), depth + 1)
        return out

    try:
        if type(get()) is not yaml.StreamStartEvent or type(get()) is not yaml.DocumentStartEvent:
            raise _NotPlain
        data = collection(get(), (), 0)
        if type(get()) is not yaml.DocumentEndEvent or type(get()) is not yaml.StreamEndEvent \
                or not isinstance(data, dict):
            raise _NotPlain
    except Exception as exc:  # whatever it is, the composer's path reports it
        raise _NotPlain from exc
    finally:
        loader.dispose()
    return data, lines


def _line(event: Any) -> int:
    return int(event.start_mark.line) + 1


class _LazyLines(Mapping[Path_, int]):
    """A plain document's lines: its top-level keys' at once (every entry's location), the
    rest read again from the text when first asked for (errors, srt-slurm's rebasing), which
    keeps the 14,000 paths of InferenceX's master files off the common path."""

    def __init__(self, top: dict[Path_, int], read_all: Callable[[], dict[Path_, int]]) -> None:
        self._top, self._read_all = top, read_all
        self._all: dict[Path_, int] | None = None

    def _every(self) -> dict[Path_, int]:
        if self._all is None:
            self._all = self._read_all()
        return self._all

    def __getitem__(self, path: Path_) -> int:
        return self._top[path] if len(path) == 1 else self._every()[path]

    def __contains__(self, path: object) -> bool:
        if isinstance(path, tuple) and len(path) == 1:
            return path in self._top  # the top level is complete
        return path in self._every()

    def __iter__(self) -> Iterator[Path_]:
        return iter(self._every())

    def __len__(self) -> int:
        return len(self._every())


class _Refused(Exception):
    """A file that would cost too much to build (expansion, nesting, recursion): one located line."""

    def __init__(self, node: Node, path: Path_, message: str) -> None:
        super().__init__(message)
        self.line, self.path, self.message = node.start_mark.line + 1, path, message


@dataclass
class Located:
    """A YAML document as plain values plus the line of every key and list item."""

    file: str
    data: Any
    lines: Mapping[Path_, int]
    warnings: list[str] = field(default_factory=list)  # e.g. duplicate keys read as PyYAML does

    def line(self, path: Iterable[str | int | float]) -> int:
        p = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return self.lines.get(p, 1)

    def error(self, path: Path_, message: str) -> str:
        return f"{self.file}:{self.line(path)}: {format_path(path)}{': ' if path else ''}{message}"


_LINE_BREAK = re.compile("[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")  # what str.splitlines splits at


def format_path(path: Iterable[str | int | float]) -> str:
    out = ""
    for part in path:
        if isinstance(part, str) and _LINE_BREAK.search(part):
            part = json.dumps(part)  # one error line, whatever the key holds
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml(path: str | Path, what: str = "a mapping of config keys to recipe entries",
              duplicates: str = "error") -> Located:
    """Read one YAML file into a ``Located`` mapping, or raise ConfigError with every located
    problem that can be found before the content is interpreted. ``duplicates="last"``: a key
    written twice in one mapping keeps its last value, with a warning (PyYAML's reading, which
    srt-slurm recipes rely on), instead of an error."""
    name = str(path)
    text = _decode(name, read_bounded(name, path))
    if "\t" in text:  # then find the lines indented with one (a line at a time is slow)
        tabs = [f"{name}:{i}: expected spaces for indentation, found a tab character"
                for i, ln in enumerate(text.splitlines(), 1) if "\t" in ln[: len(ln) - len(ln.lstrip())]]
        if tabs:
            raise ConfigError(tabs)
    if _BaseLoader is not yaml.SafeLoader:  # libyaml's parser
        try:
            return _read_plain(name, text)
        except _NotPlain:
            pass
    return _load_text(name, text, what, duplicates)


def _load_text(name: str, text: str, what: str, duplicates: str) -> Located:
    """Any document: composed, then built by ``_Builder``."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([f"{name}:1: expected {what}, found an empty file"])
        builder = _Builder(loader, name, loader.ixhpc_nodes)
        builder.keep_last = duplicates == "last"
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError([f"{name}:{line}: invalid YAML: {problem}"]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (the C parser's way)
        line = text[: exc.position].count("\n") + 1
        raise ConfigError([f"{name}:{line}: invalid YAML: expected printable characters, found "
                           f"#x{exc.character:04x} ({exc.reason})"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{name}:1: invalid YAML: {' '.join(str(exc).split())}"]) from None
    except _Refused as exc:
        where = f"{format_path(exc.path)}: " if exc.path else ""
        line = Located(name, None, builder.lines).line(exc.path) if exc.path else exc.line
        raise ConfigError([f"{name}:{line}: {where}invalid YAML: {exc.message}"]) from None
    except RecursionError:
        raise ConfigError([f"{name}:1: invalid YAML: nesting too deep (recursive alias?)"]) from None
    finally:
        loader.dispose()
    if builder.errors:
        raise ConfigError(builder.errors)
    if not isinstance(data, dict):
        raise ConfigError([f"{name}:{node.start_mark.line + 1}: expected {what}, "
                           f"found {_kind(data)}"])
    return Located(name, data, builder.lines, builder.warnings)


def read_bounded(name: str, path: str | Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, else one located error at once
    (a FIFO, a device such as /dev/zero, a directory or a huge file is never read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:
        raise ConfigError([f"{name}:1: cannot read file: "
                           f"{getattr(exc, 'strerror', None) or exc}"]) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError([f"{name}:1: expected a regular file, found {_file_kind(st.st_mode)}"])
        too_big = f"{name}:1: expected a file of at most {limit // 2**20} MiB, found"
        if st.st_size > limit:
            raise ConfigError([f"{too_big} {st.st_size:,} bytes"])
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:  # it grew while read
            raise ConfigError([f"{too_big} more"])
        return b"".join(chunks)
    except OSError as exc:
        raise ConfigError([f"{name}:1: cannot read file: {exc.strerror or exc}"]) from None
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "a special file"


def _decode(name: str, raw: bytes) -> str:
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise ConfigError([f"{name}:{line}: expected a YAML text file, found binary data"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{name}:{line}: expected UTF-8 YAML text, found binary data"]) from None


_Pair = tuple[Node, Node]


class _Builder:
    """Composed nodes -> plain values and the line of every key and list item, within a budget:
    an alias is built again wherever it is used, so every value built (and every pair a merge
    considers) is counted against the document's own node count."""

    def __init__(self, loader: Any, name: str, own: int) -> None:
        self.loader, self.name, self.own = loader, name, own
        self.expansion = min(MAX_EXPANSION, EXPANSION_FACTOR * own)
        self.budget = own + self.expansion
        self.lines: dict[Path_, int] = {}
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.keep_last = False
        self.scalars: dict[tuple[str, str], Any] = {}   # tp: 8, dp-attn: false... built once
        self.building: set[int] = set()                  # collections being built (recursion)
        self.merged: dict[int, list[_Pair] | None] = {}  # a merge source's pairs (None: in progress)

    def charge(self, node: Node, path: Path_, n: int = 1) -> None:
        self.budget -= n
        if self.budget < 0:
            raise _Refused(node, path, f"expected aliases and merges to add at most "
                           f"{self.expansion:,} values ({EXPANSION_FACTOR}x the {self.own:,} nodes "
                           f"written, at most {MAX_EXPANSION:,}), found more")

    def build(self, node: Node, path: Path_) -> Any:
        self.charge(node, path)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if len(path) >= MAX_DEPTH:
            raise _Refused(node, path, f"expected at most {MAX_DEPTH} levels of nesting, found "
                           f"more (through aliases)")
        if id(node) in self.building:
            raise _Refused(node, path, "expected a finite structure, found an alias inside "
                           "its own anchor")
        self.building.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items = []
                for i, item in enumerate(node.value):
                    self.lines[path + (i,)] = item.start_mark.line + 1
                    items.append(self.build(item, path + (i,)))
                return items
            out: dict[Any, Any] = {}
            for knode, vnode in self.pairs(node, path):
                key = self.key(knode, path)
                if key is None:
                    continue
                if key in out:
                    (self.warnings if self.keep_last else self.errors).append(
                        f"{self.name}:{knode.start_mark.line + 1}: {format_path(path + (key,))}: "
                        f"expected each key once, found a duplicate key (first at line "
                        f"{self.lines[path + (key,)]})" + ("; the last value is used"
                                                            if self.keep_last else ""))
                    if not self.keep_last:
                        continue
                self.lines[path + (key,)] = knode.start_mark.line + 1
                out[key] = self.build(vnode, path + (key,))
            return out
        finally:
            self.building.discard(id(node))

    def scalar(self, node: Node, path: Path_) -> Any:
        ck = (node.tag, node.value)
        if ck not in self.scalars:
            try:  # `=` as a key is YAML's "value" key: a string, as PyYAML's merge handling makes it
                self.scalars[ck] = (node.value if node.tag == _VALUE_TAG
                                    else self.loader.construct_object(node))
            except (ValueError, TypeError, ArithmeticError):  # `!!int x`, `!!timestamp 2026-13-45`
                raise _Refused(node, path, f"expected a value of type {node.tag}, found "
                               f"{found(node.value)}") from None
        return self.scalars[ck]

    def key(self, knode: Node, path: Path_) -> Any:
        """A mapping key's value if it is a plain scalar, else None and an error."""
        key = self.scalar(knode, path) if isinstance(knode, yaml.ScalarNode) else knode.value
        if isinstance(key, (str, int, float, bool)):
            return key
        kind = ("a list" if isinstance(knode, yaml.SequenceNode) else "a mapping"
                if isinstance(knode, yaml.MappingNode) else _kind(key))
        self.errors.append(f"{self.name}:{knode.start_mark.line + 1}: "
                           f"{format_path(path) or '(top level)'}: expected a plain key, found {kind}")
        return None

    def pairs(self, node: Node, path: Path_) -> list[_Pair]:
        """A mapping's key/value pairs with `<<:` merges resolved as YAML specifies (and PyYAML
        does): written keys override merged ones, an earlier merge source overrides a later one.
        Written keys that repeat are kept, for `build` to report."""
        if not any(k.tag == _MERGE_TAG for k, _ in node.value):
            return list(node.value)
        sources: list[Node] = []
        written: list[_Pair] = []
        for knode, vnode in node.value:
            if knode.tag != _MERGE_TAG:
                written.append((knode, vnode))
            elif isinstance(vnode, yaml.MappingNode):
                sources.append(vnode)
            elif isinstance(vnode, yaml.SequenceNode) and all(
                    isinstance(s, yaml.MappingNode) for s in vnode.value):
                sources.extend(reversed(vnode.value))
            else:
                raise _Refused(vnode, path, "expected a mapping or a list of mappings to merge "
                               "(`<<:`), found " + ("a list with other items"
                                                    if isinstance(vnode, yaml.SequenceNode)
                                                    else "a scalar"))
        merged: dict[Any, _Pair] = {}
        for source in sources:
            pairs = self.source(source, path)
            self.charge(source, path, len(pairs))
            for pair in pairs:
                merged[self.ident(pair[0], path)] = pair
        extra: list[_Pair] = []
        overridden: set[Any] = set()
        for pair in written:
            ident = self.ident(pair[0], path)
            if ident in merged and ident not in overridden:
                merged[ident] = pair
                overridden.add(ident)
            else:
                extra.append(pair)
        return [*merged.values(), *extra]

    def source(self, node: Node, path: Path_) -> list[_Pair]:
        """The effective pairs of a merge source (each key once, the last one winning)."""
        key = id(node)
        if key in self.merged:
            done = self.merged[key]
            if done is None:
                raise _Refused(node, path, "expected a finite structure, found a mapping that "
                               "merges itself (`<<:`)")
            return done
        self.merged[key] = None
        effective: dict[Any, _Pair] = {}
        for pair in self.pairs(node, path):
            effective[self.ident(pair[0], path)] = pair
        self.merged[key] = result = list(effective.values())
        return result

    def ident(self, knode: Node, path: Path_) -> Any:
        """What makes two keys the same key."""
        if isinstance(knode, yaml.ScalarNode):
            value = self.scalar(knode, path)
            try:
                hash(value)
            except TypeError:
                return ("node", id(knode))
            return ("value", value)
        return ("node", id(knode))


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
    "none_required": "null", "finite_number": "a finite number",
    "invalid_key": "a string key",
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
    key = str(loc[-1])
    return f"expected a known key ({hint}), found unknown key " + (
        json.dumps(key) if _LINE_BREAK.search(key) else f"'{key}'")


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
                   model: type[BaseModel], strip: int = 0) -> list[str]:
    """Located lines of a validation error; ``strip``: leading location parts that the file does
    not have (a wrapper the data was put in before validation)."""
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if p != "[key]")[strip:]
        if strip:
            err = {**err, "loc": tuple(err["loc"])}  # _describe reads the full location
        out.append((doc.line(prefix + loc), doc.error(prefix + loc, _describe(err, model))))
    return [text for _, text in sorted(out, key=lambda t: t[0])]
