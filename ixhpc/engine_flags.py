"""The command-line flags each engine release accepts, read from the engines' own releases.

ixhpc builds the launch lines of sglang, vLLM, TensorRT-LLM, Dynamo and ATOM but runs none of
them here; this module lets ``validate`` and the engine stand-ins check those lines against
what the real engine of the image's version would accept (issue 14).

Data: ``ixhpc/engine_flags/<family>.json`` (package data), one file per engine family, per
version a ``source`` (what it was read from) and per command a map canonical flag ->
``{"aliases", "type", "choices", "takes_value"}``; versions that could not be had are listed
under ``"unavailable"`` with the reason. Commands (the words ixhpc's argv invokes them by):
``sglang.launch_server``, ``sglang_router.launch_router``, ``vllm serve``, ``trtllm-serve
serve``, ``trtllm-serve disaggregated``, ``llm_api_options`` (the keys of a TensorRT-LLM
``--extra_llm_api_options`` YAML), ``dynamo.frontend|sglang|vllm|trtllm`` and
``atom.entrypoints.openai_server`` (hand-written: ATOM is not on PyPI).

Regenerate (needs PyPI; downloads land in a temporary directory that is deleted)::

    python -m ixhpc.engine_flags regenerate [FAMILY ...]   # all families when none is named
    python -m ixhpc.engine_flags show FAMILY VERSION COMMAND

Each release is fetched with ``pip download --no-deps`` (a wheel of any platform or an
sdist: only its Python sources are read) and its argument definitions are parsed with
``ast``, never imported: argparse ``add_argument`` calls (sglang, sglang_router, Dynamo),
click options (``trtllm-serve``), pydantic fields (TensorRT-LLM's ``TorchLlmArgs``), and for
vLLM, which builds ``vllm serve``'s flags at run time from dataclasses, the same rule applied
to the source (each ``EngineArgs``/``FrontendArgs`` field -> ``--field-name``; bool fields
also ``--no-field-name``). Likewise sglang 0.5.14+, whose ``ServerArgs`` fields carry their
flags as ``A[T, "help" | Arg(...)]`` metadata (``add_cli_args_from_dataclass``'s rule, with
choices imported from other sglang modules evaluated in theirs), and Dynamo 1.x, whose
components compose ``ArgGroup`` classes (``DynamoRuntimeArgGroup().add_arguments(parser)``)
that declare flags through the helpers ``add_argument(g, flag_name=..., arg_type=...)`` and
``add_negatable_bool_argument``. A release whose flags are declared in a way not read here is
recorded as unavailable, never half read. The versions fetched are ``RELEASES`` below (those the reference
InferenceX configs and ixhpc's examples pin); see docs/engine-flags.md.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ixhpc.errors import main_guard

DATA_DIR = Path(__file__).with_name("engine_flags")
TYPES = ("str", "int", "float", "bool", "json", "path", "list", "unknown")


class EngineFlagsError(ValueError):
    """An unknown family, version or command was asked for."""


@dataclass(frozen=True)
class Flag:
    name: str                       # canonical spelling, e.g. "--tp-size"
    aliases: tuple[str, ...]
    type: str                       # one of TYPES
    choices: tuple[str, ...] | None
    takes_value: bool
    optional_value: bool = False    # argparse nargs="?": the value may be left out


@dataclass(frozen=True)
class Problem:
    index: int                      # position in argv of the offending word
    message: str


@dataclass(frozen=True)
class _Command:
    flags: dict[str, Flag]          # every spelling -> Flag
    positionals: int                # how many bare words the command takes (-1: any number)
    dashes_equal_underscores: bool  # vLLM's parser reads --max_model_len as --max-model-len
    dotted_json: bool               # vLLM: --compilation-config.level 3 sets one JSON key
    abbreviations: bool             # argparse's allow_abbrev: a unique prefix names its flag


# ---------------------------------------------------------------------------- versions

_VERSION = re.compile(r"(\d+(?:\.\d+)+)(?:(a|b|rc)(\d+))?(?:\.?post(\d+))?(?:\.?dev(\d+))?", re.I)


def version_key(version: str) -> tuple[Any, ...]:
    """A sort key in PEP 440 order for the versions engines publish (1.2.0rc6.post3, 0.5.9)."""
    m = _VERSION.fullmatch(version.strip().lstrip("v"))
    if not m:
        return ((-1,), version)  # unparseable versions sort first, by text
    release = tuple(int(p) for p in m[1].split("."))
    release += (0,) * (6 - len(release))
    if m[2]:
        pre: tuple[int, ...] = (1, "abr".index(m[2].lower()[0]), int(m[3]))
    elif m[5] is not None and m[4] is None:
        pre = (0,)  # 1.0.dev1 comes before 1.0a1
    else:
        pre = (2,)
    post = int(m[4]) if m[4] is not None else -1
    dev = int(m[5]) if m[5] is not None else sys.maxsize
    return (release, pre, post, dev)


# Per family: words an image tag glues to the version (rocm/atom:...-atom0.1.1-MI350x) and
# whether a bare or v-prefixed version counts too (ATOM tags carry ROCm/PyTorch versions bare).
_TAG_WORDS: dict[str, tuple[tuple[str, ...], bool]] = {
    "sglang": (("sglang",), True), "sglang_router": (("sglang-router", "router"), True),
    "vllm": (("vllm",), True), "trt": (("trtllm", "tensorrt-llm"), True),
    "dynamo": (("dynamo",), True), "atom": (("atom",), False),
}
# A bare version right after these words is another program's (pytorch_release_2.10.0).
_FOREIGN = {"pytorch", "release", "torch", "ubuntu", "rocm", "cuda", "python", "py"}


def version_from_image(family: str, image: str) -> str | None:
    """The version of ``family`` an image tag pins, or None (nightly, named builds, no tag, or
    another product's image: a Dynamo version for sglang, an sglang version for Dynamo).

    Only a word of the tag (split at ``-``/``_``) that is a version, optionally after ``v`` or
    the engine's name, counts: ``cu13.0.1``, ``ubuntu24.04``, ``rocm7.2.1`` are not versions."""
    ref = image.strip().strip("\"'").split("@", 1)[0]
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        return None  # no tag (a registry port is not one)
    if ("dynamo" in repo.lower()) != (family == "dynamo"):
        return None
    glued, bare_ok = _TAG_WORDS.get(family, ((family,), True))
    words = re.split(r"[-_]", tag)
    found: list[tuple[int, int, str]] = []  # (preference, position, version)
    for pos, word in enumerate(words):
        low = word.lower()
        for prefix in (*glued, "v", ""):
            if not low.startswith(prefix) or (prefix in ("v", "") and not bare_ok):
                continue
            m = _VERSION.match(word, len(prefix))
            if not m or (m.end() < len(word) and word[m.end()].isalnum()):
                continue
            if prefix == "" and pos and words[pos - 1].lower() in _FOREIGN:
                continue
            found.append((0 if prefix in glued else 1, pos, m[0].lower()))
            break
    return min(found)[2] if found else None


# ---------------------------------------------------------------------------- data

@cache
def _load(family: str) -> dict[str, Any]:
    path = DATA_DIR / f"{family}.json"
    if not path.is_file():
        raise EngineFlagsError(f"no flag data for engine family {family!r} (known: {', '.join(families())})")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def families() -> list[str]:
    return sorted(p.stem for p in DATA_DIR.glob("*.json"))


def versions(family: str) -> list[str]:
    """The versions with a flag list, ascending."""
    return sorted(_load(family)["versions"], key=version_key)


def unavailable(family: str) -> dict[str, str]:
    """Versions that were asked for but could not be had -> why."""
    return dict(_load(family).get("unavailable", {}))


def source(family: str, version: str) -> str:
    return str(_version_data(family, version)["source"])


def commands(family: str, version: str) -> list[str]:
    return sorted(_version_data(family, version)["commands"])


def resolve(family: str, version: str | None) -> tuple[str, str | None]:
    """(version to use, warning): the version itself when known; else the nearest known
    version not newer, else the oldest; with no version, the newest. The warning says which."""
    known = versions(family)
    if not known:
        raise EngineFlagsError(f"no versions in the flag data of {family}")
    if version is not None and version in known:
        return version, None
    if version is None:
        return known[-1], f"{family}: no version in the image tag; checking flags against {known[-1]}, the newest known"
    older = [v for v in known if version_key(v) <= version_key(version)]
    use = older[-1] if older else known[0]
    why = "nearest older" if older else "oldest"
    return use, f"{family} {version}: no flag list for this version; checking flags against {use} ({why} known)"


def _version_data(family: str, version: str) -> dict[str, Any]:
    data = _load(family)["versions"].get(version)
    if data is None:
        raise EngineFlagsError(f"no flag data for {family} {version} (known: {', '.join(versions(family))}; "
                               "use resolve() to pick the nearest)")
    return data  # type: ignore[no-any-return]


@cache
def _command(family: str, version: str, command: str) -> _Command:
    vdata = _version_data(family, version)
    raw = vdata["commands"].get(command)
    if raw is None:
        raise EngineFlagsError(f"{family} {version} has no command {command!r} "
                               f"(known: {', '.join(sorted(vdata['commands']))})")
    out: dict[str, Flag] = {}
    wrapped = vdata.get("wraps", {}).get(command)
    if wrapped is not None:  # dynamo.sglang: sglang's own flags of the release Dynamo pins, then Dynamo's
        inner, _ = resolve(wrapped["family"], wrapped["version"])
        out.update(_command(wrapped["family"], inner, wrapped["command"]).flags)
    for name, spec in sorted(raw.items()):
        choices = spec.get("choices")
        flag = Flag(name=name, aliases=tuple(spec.get("aliases", ())), type=spec.get("type", "unknown"),
                    choices=None if choices is None else tuple(str(c) for c in choices),
                    takes_value=bool(spec.get("takes_value", True)),
                    optional_value=bool(spec.get("optional_value", False)))
        for spelling in (name, *flag.aliases):
            out[spelling] = flag
    return _Command(flags=out, positionals=int(vdata.get("positionals", {}).get(command, 0)),
                    dashes_equal_underscores=command in vdata.get("dashes_equal_underscores", ()),
                    dotted_json=command in vdata.get("dotted_json", ()),
                    abbreviations=command in vdata.get("abbreviations", ()))


def flags(family: str, version: str, command: str) -> dict[str, Flag]:
    """Every accepted spelling (canonical and aliases) -> its Flag."""
    return dict(_command(family, version, command).flags)


# ---------------------------------------------------------------------------- checking

def _nearest(word: str, spellings: Iterable[str]) -> str | None:
    pool = sorted(set(spellings))
    for candidate in (word.replace("_", "-"), word.replace("-", "_"), "-" + word.lstrip("-").replace("_", "-"),
                      "--" + word.lstrip("-"), "--" + word.lstrip("-").replace("_", "-")):
        if candidate != word and candidate in pool:
            return candidate
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    return close[0] if close else None


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _is_placeholder(value: str) -> bool:
    """A value filled in later by the job script (${PORT}, $HOST): nothing to check yet."""
    return "$" in value


def _value_problem(flag: Flag, value: str, what: str) -> str | None:
    if _is_placeholder(value):
        return None
    if flag.choices is not None and value not in flag.choices:
        return f"'{flag.name}' expects one of {', '.join(flag.choices)}; found '{value}' ({what})"
    if flag.type == "int":
        try:
            int(value)
        except ValueError:
            return f"'{flag.name}' expects an integer; found '{value}' ({what})"
    if flag.type == "float" and not _is_number(value):
        return f"'{flag.name}' expects a number; found '{value}' ({what})"
    if flag.type == "json" and value[:1] in "{[":
        try:
            json.loads(value)
        except ValueError as e:
            return f"'{flag.name}' expects JSON; found '{value}' ({what}): {e}"
    return None


def _lookup(cmd: _Command, name: str) -> Flag | None:
    flag = cmd.flags.get(name)
    if flag is None and cmd.dashes_equal_underscores and name.startswith("--"):
        name = "--" + name[2:].replace("_", "-")
        flag = cmd.flags.get(name)
    if flag is None and cmd.abbreviations and name.startswith("--") and len(name) > 2:
        # argparse takes a prefix of exactly one long option (sglang's --tp for --tp-size)
        hits = {f.name for spelling, f in cmd.flags.items() if spelling.startswith(name)}
        if len(hits) == 1:
            flag = cmd.flags[hits.pop()]
    return flag


def check(family: str, version: str, command: str, args: Sequence[str]) -> list[Problem]:
    """Problems of ``args`` (the words after the command) for that engine release: unknown
    flags (with the nearest valid one), missing values, values outside a flag's choices or of
    the wrong type, bare words where the command takes none. ``--flag=value`` and repeated
    flags are accepted like the engines' parsers do; values holding ``$`` (script variables)
    are not checked."""
    cmd = _command(family, version, command)
    what = f"{family} {version} {command}"
    problems: list[Problem] = []
    positionals = 0
    i = 0
    rest_positional = False
    while i < len(args):
        word = args[i]
        if rest_positional or not word.startswith("-") or word == "-" or _is_number(word):
            positionals += 1
            if cmd.positionals >= 0 and positionals > cmd.positionals:
                problems.append(Problem(i, f"unexpected argument '{word}' for {what} "
                                           f"(it takes {cmd.positionals or 'no'} positional argument"
                                           f"{'' if cmd.positionals == 1 else 's'})"))
            i += 1
            continue
        if word == "--":
            rest_positional = True
            i += 1
            continue
        name, eq, inline = word.partition("=")
        if cmd.dotted_json and re.fullmatch(r"-O\d+", name) and not eq:
            name, eq, inline = "-O", "=", name[2:]  # vLLM's -O3 means -O 3
        flag = _lookup(cmd, name)
        if flag is None and cmd.dotted_json and "." in name:
            base = cmd.flags.get(name.split(".", 1)[0])
            if base is None and cmd.dashes_equal_underscores:
                base = cmd.flags.get(name.split(".", 1)[0].replace("_", "-"))
            if base is not None and base.type == "json":
                flag = Flag(name=name, aliases=(), type="unknown", choices=None, takes_value=True)
        if flag is None:
            hint = _nearest(name, cmd.flags)
            problems.append(Problem(i, f"unknown flag '{name}' for {what}"
                                       + (f"; did you mean '{hint}'?" if hint else "")))
            # Its value, if it has one, is the next non-flag word: skip it, not a positional.
            i += 1 if eq or i + 1 >= len(args) or args[i + 1].startswith("-") else 2
            continue
        if not flag.takes_value:
            if eq:
                problems.append(Problem(i, f"'{name}' takes no value; found '{word}' ({what})"))
            i += 1
            continue
        if eq:
            values = [inline]
            i += 1
        elif flag.type == "list":
            j = i + 1
            while j < len(args) and not (args[j].startswith("-") and not _is_number(args[j])):
                j += 1
            values = list(args[i + 1:j])
            if not values and not flag.optional_value:
                problems.append(Problem(i, f"'{name}' expects one or more values ({what})"))
            i = j
            for k, value in enumerate(values):
                msg = _value_problem(flag, value, what)
                if msg:
                    problems.append(Problem(i - len(values) + k, msg))
            continue
        elif i + 1 < len(args) and not (args[i + 1].startswith("-") and args[i + 1] != "-"
                                         and not _is_number(args[i + 1])):
            values = [args[i + 1]]
            i += 2
        else:
            if not flag.optional_value:
                problems.append(Problem(i, f"'{name}' expects a value ({what})"))
            i += 1
            continue
        msg = _value_problem(flag, values[0], what)
        if msg:
            problems.append(Problem(i - 1, msg))
    return problems


def check_options(family: str, version: str, keys: Iterable[str]) -> list[Problem]:
    """Problems of the top-level keys of a TensorRT-LLM LLM-API option file (index: the key's
    position in ``keys``)."""
    cmd = _command(family, version, "llm_api_options")
    problems = []
    for i, key in enumerate(keys):
        if key not in cmd.flags:
            hint = _nearest(key, cmd.flags)
            problems.append(Problem(i, f"unknown LLM-API option '{key}' for {family} {version}"
                                       + (f"; did you mean '{hint}'?" if hint else "")))
    return problems


# ---------------------------------------------------------------------------- regeneration
# Everything below reads engine sources as text (ast), never imports them.

Entry = dict[str, Any]  # a flag's JSON record: aliases, type, choices, takes_value[, optional_value]


@dataclass(frozen=True)
class Release:
    """One engine release to fetch: a PyPI package at a version, and the image tags it serves."""

    package: str
    version: str
    pip_args: tuple[str, ...] = ()   # e.g. a platform for packages published only as wheels


@dataclass
class Sources:
    """The Python files of one downloaded release, by their path inside the package."""

    label: str                        # "sglang-0.5.9 wheel"
    files: dict[str, str] = field(default_factory=dict)

    def get(self, suffix: str) -> str:
        """The file whose path ends with ``suffix`` (shortest such path)."""
        hits = sorted((p for p in self.files if p.endswith(suffix)), key=len)
        if not hits:
            raise LookupError(f"{self.label} has no file {suffix}")
        return self.files[hits[0]]

    def find(self, suffix: str) -> str | None:
        try:
            return self.get(suffix)
        except LookupError:
            return None


def read_archive(path: Path) -> Sources:
    """The .py files of a wheel (zip) or sdist (tar.gz/zip), keyed by their path below the
    archive's top directory for an sdist, as is for a wheel."""
    files: dict[str, str] = {}
    kind = "wheel" if path.suffix == ".whl" else "sdist"
    if path.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.filename.endswith((".py", "/METADATA", "PKG-INFO")) and info.file_size < 8_000_000:
                    files[info.filename] = z.read(info).decode("utf-8", "replace")
    else:
        with tarfile.open(path) as t:
            for member in t:
                if member.isfile() and member.name.endswith((".py", "PKG-INFO")) and member.size < 8_000_000:
                    f = t.extractfile(member)
                    if f is not None:
                        files[member.name] = f.read().decode("utf-8", "replace")
    if kind == "sdist":
        files = {p.split("/", 1)[1] if "/" in p else p: text for p, text in files.items()}
    return Sources(label=f"{path.name.split('-')[0]} {kind} {path.name}", files=files)


def download(release: Release, into: Path) -> Path:
    """Fetch one release's wheel or sdist (no dependencies) with pip; its path."""
    into.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":none:", "-q",
           "-d", str(into), *release.pip_args, f"{release.package}=={release.version}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    got = sorted(p for p in into.iterdir() if p.suffix in (".whl", ".zip", ".gz"))
    if done.returncode != 0 or not got:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])[:300]
        raise LookupError(f"pip download {release.package}=={release.version} failed: {tail}")
    return got[0]


# --- ast helpers

def _module_constants(tree: ast.Module) -> dict[str, ast.expr]:
    """Module- and class-level ``NAME = <expr>`` assignments (to resolve choices=NAME)."""
    out: dict[str, ast.expr] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out.setdefault(node.targets[0].id, node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            out.setdefault(node.target.id, node.value)
    return out


def _literal(node: ast.expr | None, consts: dict[str, ast.expr], depth: int = 0) -> Any:
    """The value of a constant expression, following names and simple list/dict/str forms;
    raises ValueError when it cannot be known statically."""
    if node is None or depth > 8:
        raise ValueError("not static")
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in consts:
        return _literal(consts[node.id], consts, depth + 1)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and f"{node.value.id}.{node.attr}" in consts:  # an imported class's constant, resolved
        return _literal(consts[f"{node.value.id}.{node.attr}"], consts, depth + 1)
    if isinstance(node, ast.Attribute) and node.attr in consts and isinstance(node.value, ast.Name):
        return _literal(consts[node.attr], consts, depth + 1)  # Class.CONSTANT
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items: list[Any] = []
        for elt in node.elts:
            if isinstance(elt, ast.Starred):
                items.extend(_literal(elt.value, consts, depth + 1))
            else:
                items.append(_literal(elt, consts, depth + 1))
        return items
    if isinstance(node, ast.Dict):
        return {_literal(k, consts, depth + 1): None for k in node.keys if k is not None}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal(node.left, consts, depth + 1) + _literal(node.right, consts, depth + 1)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("list", "tuple", "sorted") \
            and len(node.args) == 1:
        return list(_literal(node.args[0], consts, depth + 1))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "keys":
        return list(_literal(node.func.value, consts, depth + 1))
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif isinstance(v, ast.FormattedValue):
                parts.append(str(_literal(v.value, consts, depth + 1)))
        return "".join(parts)
    raise ValueError("not static")


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _dotted(node: ast.expr | None) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func) + "()"
    if isinstance(node, ast.Subscript):
        return _dotted(node.value)
    return ""


def _type_name(node: ast.expr | None) -> str:
    """An argparse type= callable -> one of TYPES."""
    name = _dotted(node).lower()
    last = name.rsplit(".", 1)[-1]
    if not name or last in ("str", "nullable_str", "optional_str", "none_or_str"):
        return "str"
    if last in ("int", "optional_int", "positive_int", "non_negative_int") or last.endswith("_int"):
        return "int"
    if last in ("float", "optional_float") or last.endswith("_float"):
        return "float"
    if "json" in name:
        return "json"
    if "path" in last:
        return "path"
    if "bool" in last:
        return "str"  # a value such as true/false
    return "unknown"


_BOOL_ACTIONS = ("store_true", "store_false", "store_const", "count", "append_const", "help", "version")


def _zero_arg_actions(tree: ast.Module) -> set[str]:
    """Custom argparse Action classes that take no value (``nargs=0`` by default)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    args = item.args.args + item.args.kwonlyargs
                    defaults = [None] * (len(item.args.args) - len(item.args.defaults)) + list(item.args.defaults) \
                        + list(item.args.kw_defaults)
                    for a, d in zip(args, defaults):
                        if a.arg == "nargs" and isinstance(d, ast.Constant) and d.value == 0:
                            out.add(node.name)
    return out


def argparse_entry(call: ast.Call, consts: dict[str, ast.expr], zero_arg: set[str] = frozenset()  # type: ignore[assignment]
                   ) -> tuple[list[str], Entry] | None:
    """An ``add_argument(...)`` call -> (option strings, JSON record); None for positionals
    or names that cannot be known statically."""
    names: list[str] = []
    for a in call.args:
        try:
            value = _literal(a, consts)
        except ValueError:
            return None
        if isinstance(value, str):
            names.append(value)
    if not names or not all(n.startswith("-") for n in names):
        return None
    action_node = _kw(call, "action")
    action = ""
    if action_node is not None:
        try:
            action = str(_literal(action_node, consts))
        except ValueError:
            action = _dotted(action_node)
    nargs_node = _kw(call, "nargs")
    try:
        nargs = _literal(nargs_node, consts) if nargs_node is not None else None
    except ValueError:
        nargs = "*"
    choices_node = _kw(call, "choices")
    choices: list[str] | None = None
    if choices_node is not None:
        try:
            choices = sorted({str(c) for c in _literal(choices_node, consts)})
        except (ValueError, TypeError):
            choices = None
    entry: Entry = {"aliases": [], "choices": choices}
    last = action.rsplit(".", 1)[-1]
    if action in _BOOL_ACTIONS or last in zero_arg or nargs == 0:
        entry.update(type="bool", takes_value=False)
    elif last == "BooleanOptionalAction":
        entry.update(type="bool", takes_value=False)
        names += ["--no-" + n[2:] for n in names if n.startswith("--")]
    elif nargs in ("+", "*") or (isinstance(nargs, int) and nargs > 1) or action in ("extend",):
        entry.update(type="list", takes_value=True)
        if nargs == "*":
            entry["optional_value"] = True
    else:
        entry.update(type=_type_name(_kw(call, "type")), takes_value=True)
        if nargs == "?":
            entry["optional_value"] = True
    if choices is not None and entry["type"] == "bool":
        entry["choices"] = None
    return names, entry


def add_flag(table: dict[str, Entry], names: list[str], entry: Entry) -> None:
    """Record a flag under its first long spelling; the others become aliases."""
    longs = [n for n in names if n.startswith("--")] or names
    canonical = longs[0]
    others = sorted(set(names) - {canonical})
    record = dict(entry, aliases=others)
    table[canonical] = record


# Dynamo 1.x's helpers in dynamo/common/configuration/utils.py: add_argument(parser, *, flag_name,
# env_var, default, help, obsolete_flag=None, arg_type=str, **kwargs) calls
# parser.add_argument(flag_name[, obsolete_flag], type=arg_type (unless None), **kwargs);
# add_negatable_bool_argument(...) is the same with arg_type=None, BooleanOptionalAction.
WRAPPERS = {"add_argument": (), "add_negatable_bool_argument": (("action", "argparse.BooleanOptionalAction"),)}
_WRAPPER_OWN = ("flag_name", "env_var", "default", "help", "obsolete_flag", "arg_type", "dest")


def wrapper_call(call: ast.Call) -> ast.Call | None:
    """A call of one of Dynamo's argument helpers (``WRAPPERS``, named by a ``flag_name=``
    keyword) -> the ``parser.add_argument`` call it makes; None for any other call."""
    if not (isinstance(call.func, ast.Name) and call.func.id in WRAPPERS and _kw(call, "flag_name") is not None):
        return None
    names = [n for n in (_kw(call, "flag_name"), _kw(call, "obsolete_flag"))
             if n is not None and not (isinstance(n, ast.Constant) and n.value is None)]
    keywords = [k for k in call.keywords if k.arg is not None and k.arg not in _WRAPPER_OWN]
    fixed = WRAPPERS[call.func.id]
    keywords += [ast.keyword(arg=k, value=ast.parse(v, mode="eval").body) for k, v in fixed]
    arg_type = _kw(call, "arg_type")
    if not fixed and not (isinstance(arg_type, ast.Constant) and arg_type.value is None):
        keywords.append(ast.keyword(arg="type", value=arg_type if arg_type is not None else ast.Name("str")))
    return ast.Call(func=ast.Attribute(value=ast.Name("parser"), attr="add_argument"), args=names, keywords=keywords)


def check_wrappers(source: str) -> list[str]:
    """How the module defining Dynamo's argument helpers differs from what ``wrapper_call``
    assumes (empty when it matches)."""
    tree = ast.parse(source)
    defs = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    problems = []
    for name in WRAPPERS:
        fn = defs.get(name)
        if fn is None:
            problems.append(f"no {name}()")
            continue
        params = {a.arg for a in fn.args.args + fn.args.kwonlyargs}
        if not {"flag_name", "obsolete_flag"} <= params or (name == "add_argument" and "arg_type" not in params):
            problems.append(f"{name}() takes {sorted(params)}")
    return problems


def argparse_flags(source: str, function: str | None = None, extra_consts: dict[str, ast.expr] | None = None,
                   extra_zero_arg: Iterable[str] = ()) -> tuple[dict[str, Entry], int]:
    """The flags of every ``add_argument`` call in ``source`` (or in the function/method named
    ``function`` only) and how many positionals they declare."""
    tree = ast.parse(source)
    consts = {**_module_constants(tree), **(extra_consts or {})}
    zero_arg = _zero_arg_actions(tree) | set(extra_zero_arg)
    scope: ast.AST = tree
    if function is not None:
        owner, _, function = function.rpartition(".")  # "Class.method": that class's method only
        within: list[ast.AST] = [c for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and c.name == owner] \
            if owner else [tree]
        found = [n for w in within for n in ast.walk(w) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.name == function]
        if not found:
            raise LookupError(f"no function {owner + '.' if owner else ''}{function}")
        scope = ast.Module(body=list(found), type_ignores=[])
    table: dict[str, Entry] = {}
    positionals = 0
    for node in ast.walk(scope):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            wrapped = wrapper_call(node)  # Dynamo 1.x: add_argument(g, flag_name="--x", ...)
            if wrapped is not None:
                got = argparse_entry(wrapped, consts, zero_arg)
                if got is not None:
                    add_flag(table, *got)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            got = argparse_entry(node, consts, zero_arg)
            if got is not None:
                add_flag(table, *got)
            elif node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) \
                    and not node.args[0].value.startswith("-"):
                positionals += 1
    return table, positionals


def merge(*tables: dict[str, Entry]) -> dict[str, Entry]:
    """Later tables win; a spelling already taken (as a name or alias) is not repeated."""
    out: dict[str, Entry] = {}
    for table in tables:
        for name, entry in table.items():
            out[name] = entry
    taken: set[str] = set()
    result: dict[str, Entry] = {}
    for name in sorted(out):
        if name in taken:
            continue
        aliases = [a for a in out[name]["aliases"] if a not in out or a == name]
        result[name] = dict(out[name], aliases=aliases)
        taken.update([name, *aliases])
    return result


# --- per-family extractors: Sources -> (commands, extra per-version keys)

Extracted = tuple[dict[str, dict[str, Entry]], dict[str, Any]]


def _as_node(value: Any) -> ast.expr:
    """A literal value back as an expression (for a constant resolved in another module)."""
    return ast.parse(repr(value), mode="eval").body


def _imported_modules(src: Sources, tree: ast.Module, package: str) -> Iterator[tuple[ast.ImportFrom, ast.Module]]:
    """Each top-level ``from <package>.x import ...`` of ``tree`` with the parsed module it names,
    when the release holds that module."""
    parsed: dict[str, ast.Module | None] = {}
    for node in tree.body:
        if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                and node.module.split(".")[0] == package):
            continue
        if node.module not in parsed:
            base = node.module.replace(".", "/")
            text = src.files.get(base + ".py") or src.files.get(base + "/__init__.py")
            parsed[node.module] = ast.parse(text) if text is not None else None
        module = parsed[node.module]
        if module is not None:
            yield node, module


def imported_zero_arg_actions(src: Sources, tree: ast.Module, package: str) -> set[str]:
    """The value-less argparse Action classes ``tree`` imports from ``package`` (sglang 0.5.14
    moved ``DeprecatedStoreTrueAction`` and friends to ``arg_groups/argparse_actions.py``)."""
    out: set[str] = set()
    for node, module in _imported_modules(src, tree, package):
        zero = _zero_arg_actions(module)
        out.update(a.asname or a.name for a in node.names if a.name in zero)
    return out


def imported_constants(src: Sources, tree: ast.Module, package: str) -> dict[str, ast.expr]:
    """The literal values of the names ``tree`` imports from modules of ``package`` inside the
    release (``from sglang.srt.x import CHOICES``, ``CHOICES as C``), each evaluated in its own
    module; for an imported class also its ``Class.NAME`` constants. Names that are not literal
    (functions, enums built at run time) are left out."""
    out: dict[str, ast.expr] = {}
    for node, module in _imported_modules(src, tree, package):
        consts = _module_constants(module)
        classes = {c.name: c for c in module.body if isinstance(c, ast.ClassDef)}
        for alias in node.names:
            local = alias.asname or alias.name
            if alias.name in classes:
                for item in classes[alias.name].body:
                    if isinstance(item, ast.Assign) and len(item.targets) == 1 \
                            and isinstance(item.targets[0], ast.Name):
                        try:
                            out[f"{local}.{item.targets[0].id}"] = _as_node(_literal(item.value, consts))
                        except (ValueError, TypeError, SyntaxError):
                            continue
            elif alias.name in consts:
                try:
                    out[local] = _as_node(_literal(consts[alias.name], consts))
                except (ValueError, TypeError, SyntaxError):
                    continue
    return out


# sglang's Arg(...) fields in declaration order (its positional arguments map onto them)
_ARG_FIELDS = ("help", "choices", "aliases", "cli_name", "type_parser", "nargs", "required", "action",
               "action_kwargs", "const", "no_cli")


def _unwrap_optional_hint(node: ast.expr) -> ast.expr:
    """``Optional[X]``, ``Union[X, None]``, ``X | None`` -> X (one X only), else the hint as is."""
    parts: list[ast.expr]
    if isinstance(node, ast.Subscript) and _dotted(node.value).rsplit(".", 1)[-1] in ("Optional", "Union"):
        parts = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if _dotted(node.value).endswith("Optional"):
            parts.append(ast.Constant(None))
        flat: list[ast.expr] = []
        for p in parts:  # Optional[Union[a, b]] is Union[a, b, None]
            if isinstance(p, ast.Subscript) and _dotted(p.value).rsplit(".", 1)[-1] == "Union":
                flat += list(p.slice.elts) if isinstance(p.slice, ast.Tuple) else [p.slice]
            else:
                flat.append(p)
        parts = flat
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        parts = []
        stack: list[ast.expr] = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr):
                stack += [n.right, n.left]
            else:
                parts.append(n)
    else:
        return node
    rest = [p for p in parts if not (isinstance(p, ast.Constant) and p.value is None)
            and not (isinstance(p, ast.Name) and p.id == "None")]
    return rest[0] if len(rest) == 1 else node


def _base_name(node: ast.expr) -> str:
    return _dotted(node.value if isinstance(node, ast.Subscript) else node).rsplit(".", 1)[-1]


def annotated_field_call(item: ast.AnnAssign, consts: dict[str, ast.expr],
                         annotated: Iterable[str] = ("A", "Annotated")) -> ast.Call | None:
    """The ``add_argument`` call sglang's ``add_cli_args_from_dataclass`` makes for one field
    ``name: A[T, "help" | Arg(...)] = default`` (sglang 0.5.14+), built on the AST; None when the
    field has no CLI surface (no metadata, ``no_cli=True``). Raises ValueError when the flag's
    spelling cannot be known statically."""
    annotation = item.annotation
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    if not (isinstance(annotation, ast.Subscript) and _dotted(annotation.value).rsplit(".", 1)[-1] in annotated
            and isinstance(annotation.slice, ast.Tuple) and len(annotation.slice.elts) >= 2
            and isinstance(item.target, ast.Name)):
        return None
    raw, *metadata = annotation.slice.elts
    meta: dict[str, ast.expr] | None = None
    for m in metadata:  # the first Arg(...) or bare help string counts
        if isinstance(m, ast.Call) and _dotted(m.func).rsplit(".", 1)[-1] == "Arg":
            meta = dict(zip(_ARG_FIELDS, m.args))
            meta.update({k.arg: k.value for k in m.keywords if k.arg})
            break
        if isinstance(m, ast.Constant) and isinstance(m.value, str):
            meta = {}
            break
    if meta is None:
        return None
    def opt(name: str) -> Any:
        node = meta.get(name) if meta is not None else None
        if node is None or (isinstance(node, ast.Constant) and node.value is None):
            return None
        return _literal(node, consts)
    if opt("no_cli"):
        return None
    names = [str(opt("cli_name") or "--" + item.target.id.replace("_", "-")), *map(str, opt("aliases") or [])]
    call = ast.Call(func=ast.Name("add_argument"), args=[ast.Constant(n) for n in names], keywords=[])
    def kw(name: str, value: ast.expr | None) -> None:
        if value is not None and not (isinstance(value, ast.Constant) and value.value is None):
            call.keywords.append(ast.keyword(arg=name, value=value))
    if meta.get("action") is not None:  # custom action: action plus action_kwargs, nothing derived
        kw("action", meta["action"])
        extra = meta.get("action_kwargs")
        if isinstance(extra, ast.Dict):
            for k, v in zip(extra.keys, extra.values):
                if isinstance(k, ast.Constant) and isinstance(k.value, str):
                    kw(k.value, v)
        return call
    inner = _unwrap_optional_hint(raw)
    type_parser = meta.get("type_parser")
    if isinstance(inner, ast.Subscript) and _base_name(inner) == "Literal":
        values = inner.slice.elts if isinstance(inner.slice, ast.Tuple) else [inner.slice]
        first = values[0] if values else None
        scalar = type(first.value).__name__ if isinstance(first, ast.Constant) else "str"
        kw("type", type_parser or ast.Name(scalar if scalar in ("int", "float") else "str"))
        kw("choices", meta.get("choices") or ast.List(elts=list(values)))
        return call
    if _base_name(inner) in ("list", "List") and (isinstance(inner, ast.Subscript) or _dotted(inner) == "List") \
            and type_parser is None:
        elem = inner.slice.elts[0] if isinstance(inner, ast.Subscript) and isinstance(inner.slice, ast.Tuple) \
            else inner.slice if isinstance(inner, ast.Subscript) else ast.Name("str")
        kw("type", ast.Name(_dotted(elem) if _dotted(elem) in ("int", "float") else "str"))
        kw("nargs", meta.get("nargs") or ast.Constant("+"))
        kw("choices", meta.get("choices"))
        return call
    if _dotted(inner) == "bool":
        kw("action", ast.Constant("store_true"))
        return call
    kw("type", type_parser or ast.Name(_dotted(inner) if _dotted(inner) in ("int", "float") else "str"))
    kw("choices", meta.get("choices"))
    kw("nargs", meta.get("nargs"))
    return call


def dataclass_cli_flags(cls: ast.ClassDef, classes: dict[str, ast.ClassDef], consts: dict[str, ast.expr],
                        only: Sequence[str] | None = None, zero_arg: Iterable[str] = ()
                        ) -> tuple[dict[str, Entry], list[str]]:
    """The flags ``add_cli_args_from_dataclass(parser, cls[, fields=only])`` adds (bases'
    fields first, like ``dataclasses.fields``) and the fields whose flag could not be read."""
    fields: dict[str, ast.AnnAssign] = {}
    def collect(c: ast.ClassDef, seen: frozenset[str]) -> None:
        for base in c.bases:
            parent = classes.get(_dotted(base).rsplit(".", 1)[-1])
            if parent is not None and parent.name not in seen:
                collect(parent, seen | {parent.name})
        for item in _iter_dataclass_fields(c):
            if isinstance(item.target, ast.Name) and not _dotted(item.annotation).startswith("ClassVar"):
                fields[item.target.id] = item
    collect(cls, frozenset({cls.name}))
    table: dict[str, Entry] = {}
    unread: list[str] = []
    for name, item in fields.items():
        if only is not None and name not in only:
            continue
        try:
            call = annotated_field_call(item, consts)
        except (ValueError, TypeError, SyntaxError):
            unread.append(name)
            continue
        got = argparse_entry(call, consts, set(zero_arg)) if call is not None else None
        if call is not None and got is None:
            unread.append(name)
        elif got is not None:
            add_flag(table, *got)
    return table, unread


def sglang_dataclass_flags(src: Sources, text: str, function: str = "add_cli_args") -> dict[str, Entry]:
    """The flags of every ``add_cli_args_from_dataclass(parser, Cls[, fields=[...]])`` call in
    ``function`` of ``text`` (sglang 0.5.14+ declares most of ``ServerArgs``'s flags as
    ``Annotated`` field metadata); LookupError when a field's flag cannot be read."""
    tree = ast.parse(text)
    consts = {**imported_constants(src, tree, "sglang"), **_module_constants(tree)}
    zero_arg = _zero_arg_actions(tree) | imported_zero_arg_actions(src, tree, "sglang")
    classes = {c.name: c for c in ast.walk(tree) if isinstance(c, ast.ClassDef)}
    table: dict[str, Entry] = {}
    for fn in ast.walk(tree):
        if not (isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name == function):
            continue
        for node in ast.walk(fn):
            if not (isinstance(node, ast.Call) and _dotted(node.func).endswith("add_cli_args_from_dataclass")):
                continue
            cls_node = node.args[1] if len(node.args) > 1 else _kw(node, "cls")
            cls = classes.get(_dotted(cls_node).rsplit(".", 1)[-1])
            if cls is None:
                raise LookupError(f"{src.label}: add_cli_args_from_dataclass of {_dotted(cls_node) or '?'}, "
                                  "a class not defined in its module; the extractor needs updating")
            only_node = _kw(node, "fields")
            try:
                only = None if only_node is None else [str(f) for f in _literal(only_node, consts)]
            except ValueError:
                raise LookupError(f"{src.label}: add_cli_args_from_dataclass({cls.name}, fields=...) "
                                  "names fields not known statically") from None
            got, unread = dataclass_cli_flags(cls, classes, consts, only, zero_arg)
            if unread:
                raise LookupError(f"{src.label}: the flags of {cls.name} fields {', '.join(unread[:5])} "
                                  "cannot be read statically; the extractor needs updating")
            table.update(got)
    return table


def extract_sglang(src: Sources) -> Extracted:
    text = src.get("sglang/srt/server_args.py")
    table, _ = argparse_flags(text, "add_cli_args",
                              extra_zero_arg=imported_zero_arg_actions(src, ast.parse(text), "sglang"))
    if "add_cli_args_from_dataclass" in text:  # 0.5.14+: most flags are ServerArgs field metadata
        table = merge(sglang_dataclass_flags(src, text), table)
    if text.count('"--') > 2 * len(table) + 10:  # the flags are declared some other way now
        raise LookupError(f"{src.label}: only {len(table)} static add_argument flags in server_args.py, which "
                          f"names {text.count(chr(34) + '--')} flag strings; the extractor needs updating")
    # launch_server builds a plain ArgumentParser: unique prefixes are accepted
    return {"sglang.launch_server": table}, {"abbreviations": ["sglang.launch_server"]}


def _classes(sources: Iterable[str]) -> tuple[dict[str, ast.ClassDef], dict[str, ast.expr]]:
    """Every class and module-level constant/type alias defined in the given sources."""
    classes: dict[str, ast.ClassDef] = {}
    consts: dict[str, ast.expr] = {}
    for text in sources:
        tree = ast.parse(text)
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, node)
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                consts.setdefault(node.targets[0].id, node.value)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                consts.setdefault(node.target.id, node.value)
            elif sys.version_info >= (3, 12) and type(node).__name__ == "TypeAlias":  # pragma: no cover
                consts.setdefault(node.name.id, node.value)  # type: ignore[attr-defined]
    return classes, consts


def _hint_parts(node: ast.expr, consts: dict[str, ast.expr], depth: int = 0) -> list[ast.expr]:
    """The members of a type hint's union, Optional/Annotated stripped, aliases followed."""
    if depth > 10:
        return [node]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            return _hint_parts(ast.parse(node.value, mode="eval").body, consts, depth + 1)  # "ForwardRef"
        except SyntaxError:
            return [node]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _hint_parts(node.left, consts, depth + 1) + _hint_parts(node.right, consts, depth + 1)
    if isinstance(node, ast.Subscript):
        base = _dotted(node.value).rsplit(".", 1)[-1]
        inner = node.slice
        if base in ("Optional", "Union"):
            elts = inner.elts if isinstance(inner, ast.Tuple) else [inner]
            return [p for e in elts for p in _hint_parts(e, consts, depth + 1)]
        if base == "Annotated":
            first = inner.elts[0] if isinstance(inner, ast.Tuple) else inner
            return _hint_parts(first, consts, depth + 1)
        return [node]
    if isinstance(node, ast.Name) and node.id in consts:
        value = consts[node.id]
        if isinstance(value, (ast.Subscript, ast.BinOp)) or (isinstance(value, ast.Name) and value.id != node.id):
            return _hint_parts(value, consts, depth + 1)
    return [node]


def _literal_choices(parts: list[ast.expr], consts: dict[str, ast.expr]) -> list[str] | None:
    out: list[str] = []
    for p in parts:
        if isinstance(p, ast.Subscript) and _dotted(p.value).endswith("Literal"):
            elts = p.slice.elts if isinstance(p.slice, ast.Tuple) else [p.slice]
            for e in elts:
                try:
                    out.append(str(_literal(e, consts)))
                except ValueError:
                    return None
    return out or None


def dataclass_field_entry(annotation: ast.expr, classes: dict[str, ast.ClassDef],
                          consts: dict[str, ast.expr]) -> Entry:
    """vLLM's ``get_kwargs`` rule for one config field, applied to its annotation."""
    parts = _hint_parts(annotation, consts)
    names = {_dotted(p.value if isinstance(p, ast.Subscript) else p).rsplit(".", 1)[-1] for p in parts}
    optional = "None" in names or any(isinstance(p, ast.Constant) and p.value is None for p in parts)
    def is_dataclass(n: str) -> bool:
        cls = classes.get(n)
        return cls is not None and any("dataclass" in _dotted(d) or _dotted(d).endswith("config")
                                       for d in cls.decorator_list)
    entry: Entry = {"aliases": [], "choices": None, "takes_value": True}
    if any(is_dataclass(n) for n in names):
        entry["type"] = "json"
    elif "bool" in names:
        entry.update(type="bool", takes_value=False)
    elif "Literal" in names:
        choices = _literal_choices(parts, consts)
        entry.update(type="str", choices=sorted(set(choices + (["None"] if optional else [])))
                     if choices else None)
    elif names & {"tuple", "Tuple", "list", "List", "set", "Set", "Sequence"}:
        entry["type"] = "list"
        inner = [p.slice for p in parts if isinstance(p, ast.Subscript)]
        elts = [e for i in inner for e in (i.elts if isinstance(i, ast.Tuple) else [i])]
        choices = _literal_choices([q for e in elts for q in _hint_parts(e, consts)], consts)
        if choices:
            entry["choices"] = sorted(set(choices))
    elif "int" in names:
        entry["type"] = "int"
    elif "float" in names:
        entry["type"] = "float"
    elif names & {"dict", "Dict"}:
        entry["type"] = "json"
    else:
        entry["type"] = "str"
    return entry


def _class_fields(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> dict[str, ast.expr]:
    """A dataclass's annotated fields, its bases' first (so the subclass wins)."""
    out: dict[str, ast.expr] = {}
    for base in cls.bases:
        parent = classes.get(_dotted(base).rsplit(".", 1)[-1])
        if parent is not None and parent is not cls:
            out.update(_class_fields(parent, classes))
    for item in cls.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) \
                and not _dotted(item.annotation).startswith("ClassVar"):
            out[item.target.id] = item.annotation
    return out


def vllm_flags(src: Sources, prefix: str = "vllm/") -> dict[str, Entry]:
    """``vllm serve``'s flags: the explicit ``add_argument`` names of ``EngineArgs`` and
    ``AsyncEngineArgs.add_cli_args`` (kwargs ``**get_kwargs(Config)[field]`` typed by vLLM's rule
    from the field's annotation), every ``FrontendArgs`` field as ``--field-name`` (vLLM loops
    over them), and the explicit arguments of ``make_arg_parser`` and the serve subcommand."""
    py = {p: t for p, t in src.files.items() if p.startswith(prefix) and
          (p.startswith(prefix + "config") or p.endswith(("engine/arg_utils.py", "openai/cli_args.py",
                                                           "entrypoints/cli/serve.py")))}
    classes, consts = _classes(py.values())
    table: dict[str, Entry] = {}
    arg_utils = ast.parse(src.get(prefix + "engine/arg_utils.py"))
    consts = {**consts, **_module_constants(arg_utils)}
    for fn in ast.walk(arg_utils):
        if not (isinstance(fn, ast.FunctionDef) and fn.name == "add_cli_args"):
            continue
        kw_source: dict[str, str] = {}  # model_kwargs -> ModelConfig
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                    and _dotted(node.value.func).endswith("get_kwargs") and node.value.args \
                    and isinstance(node.targets[0], ast.Name):
                kw_source[node.targets[0].id] = _dotted(node.value.args[0]).rsplit(".", 1)[-1]
        for node in ast.walk(fn):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "add_argument"):
                continue
            starred = [k.value for k in node.keywords if k.arg is None]
            if not starred:
                got = argparse_entry(node, consts)
                if got:
                    add_flag(table, *got)
                continue
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if not names:
                continue
            sub = starred[0]
            overrides = list(node.keywords)
            if isinstance(sub, ast.Dict):  # **{**cache_kwargs["field"], "default": None}
                inner = [v for k, v in zip(sub.keys, sub.values) if k is None]
                overrides += [ast.keyword(arg=str(k.value), value=v) for k, v in zip(sub.keys, sub.values)
                              if isinstance(k, ast.Constant)]
                sub = inner[0] if inner else sub
            annotation = None
            key = None
            if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name):
                cls = classes.get(kw_source.get(sub.value.id, ""))
                key = sub.slice.value if isinstance(sub.slice, ast.Constant) else None
                annotation = _class_fields(cls, classes).get(str(key)) if cls is not None else None
            entry: Entry = (dataclass_field_entry(annotation, classes, consts) if annotation is not None
                            else {"aliases": [], "choices": None, "takes_value": True, "type": "unknown"})
            for k in overrides:  # explicit kwargs override the derived ones
                if k.arg in ("action", "nargs", "type", "choices"):
                    fake = ast.Call(func=node.func, args=[ast.Constant(names[0])], keywords=[k])
                    explicit = argparse_entry(fake, consts)
                    if explicit:
                        entry = dict(entry, **{f: v for f, v in explicit[1].items() if f != "aliases"
                                               and (f != "choices" or v is not None)})
            if entry["type"] == "bool":
                names += ["--no-" + n[2:] for n in names if n.startswith("--")]
            if key in ("max_model_len", "max_num_batched_tokens", "kv_cache_memory_bytes"):
                entry["type"] = "str"  # vLLM's human_readable_int: 32k, 1M, auto
            add_flag(table, names, entry)
    cli_args = src.find(prefix + "entrypoints/openai/cli_args.py")
    if cli_args is not None:
        frontend = classes.get("FrontendArgs")
        if frontend is not None:
            for name, annotation in _class_fields(frontend, classes).items():
                entry = dataclass_field_entry(annotation, classes, consts)
                names = ["--" + name.replace("_", "-")]
                if entry["type"] == "bool":
                    names.append("--no-" + name.replace("_", "-"))
                add_flag(table, names, entry)
        parser_flags, _ = argparse_flags(cli_args, "make_arg_parser")
        table.update(parser_flags)
    return table


def extract_vllm(src: Sources) -> Extracted:
    table = vllm_flags(src)
    # FlexibleArgumentParser rewrites -O<n> / -O.<key> to the optimization level / compilation
    # config before argparse sees it (not an add_argument spelling)
    target = "--optimization-level" if "--optimization-level" in table else "--compilation-config"
    if target in table and "-O" not in table[target]["aliases"]:
        table[target] = dict(table[target], aliases=sorted([*table[target]["aliases"], "-O"]))
    return {"vllm serve": table}, {
        "positionals": {"vllm serve": 1},                  # the model tag
        "dashes_equal_underscores": ["vllm serve"],        # FlexibleArgumentParser
        "dotted_json": ["vllm serve"], "abbreviations": ["vllm serve"]}


def extract_sglang_router(src: Sources) -> Extracted:
    # launch_router passes use_router_prefix=False: every f"--{prefix}..." is spelled bare
    table, _ = argparse_flags(src.get("sglang_router/router_args.py"), "add_cli_args",
                              {"prefix": ast.Constant("")})
    launcher, _ = argparse_flags(src.get("sglang_router/launch_router.py"))
    return {"sglang_router.launch_router": merge(table, launcher)}, {"abbreviations": ["sglang_router.launch_router"]}


def _dict_style_flags(source: str) -> dict[str, Entry]:
    """Flags declared as data (dynamo.sglang's ``DYNAMO_ARGS = {"x": {"flags": [...], "type": int}}``)."""
    table: dict[str, Entry] = {}
    tree = ast.parse(source)
    consts = _module_constants(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
        if "flags" not in keys:
            continue
        kws = [ast.keyword(arg=str(k.value), value=v) for k, v in zip(node.keys, node.values)
               if isinstance(k, ast.Constant) and k.value in ("type", "action", "choices", "nargs")]
        flags_node = node.values[keys.index("flags")] if len(keys) == len(node.keys) else None
        try:
            names = [str(n) for n in _literal(flags_node, consts)]
        except ValueError:
            continue
        got = argparse_entry(ast.Call(func=ast.Name("f"), args=[ast.Constant(n) for n in names], keywords=kws),
                             consts)
        if got:
            add_flag(table, *got)
    return table


def _pins(src: Sources) -> dict[str, str]:
    """``Requires-Dist: sglang==0.5.6.post2; extra == 'sglang'`` -> {"sglang": "0.5.6.post2"}."""
    meta = next((t for p, t in src.files.items() if p.endswith(("METADATA", "PKG-INFO"))), "")
    return {m[1].lower(): m[2] for m in re.finditer(r"^Requires-Dist: ([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==([^;\s]+)",
                                                     meta, re.M)}


def arg_groups(src: Sources) -> dict[str, str]:
    """Dynamo 1.x's argument groups: class name -> path, for every class with an
    ``add_arguments`` method (``DynamoRuntimeArgGroup().add_arguments(parser)``)."""
    out: dict[str, str] = {}
    for path, text in sorted(src.files.items()):
        if path.startswith("dynamo/") and path.endswith(".py") and "/tests/" not in path and "add_arguments" in text:
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ClassDef) and any(isinstance(f, ast.FunctionDef) and f.name == "add_arguments"
                                                          for f in node.body):
                    out.setdefault(node.name, path)
    return out


def _used_groups(text: str, groups: dict[str, str]) -> set[str]:
    return {n.func.id for n in ast.walk(ast.parse(text))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in groups}


def extract_dynamo(src: Sources) -> Extracted:
    cmds: dict[str, dict[str, Entry]] = {}
    groups = arg_groups(src)
    if any("flag_name=" in t for p, t in src.files.items() if p.startswith("dynamo/")):
        helpers = src.find("dynamo/common/configuration/utils.py")
        wrong = ["no dynamo/common/configuration/utils.py"] if helpers is None else check_wrappers(helpers)
        if wrong:
            raise LookupError(f"{src.label}: its argument helpers are not the ones the extractor reads "
                              f"({'; '.join(wrong)}); the extractor needs updating")
    for component in ("frontend", "sglang", "vllm", "trtllm"):
        table: dict[str, Entry] = {}
        own: list[str] = []
        for path, text in sorted(src.files.items()):
            if f"dynamo/{component}/" in path and path.endswith(".py") and "/tests/" not in path:
                own.append(path)
                if "add_argument" in text:
                    table = merge(table, argparse_flags(text)[0])
                if '"flags"' in text:
                    table = merge(table, _dict_style_flags(text))
        # the argument groups its files instantiate, from anywhere in dynamo/ (1.x: common/configuration)
        todo = sorted({g for p in own if "add_arguments" in src.files[p] for g in _used_groups(src.files[p], groups)})
        done: set[str] = set()
        while todo:
            group = todo.pop()
            if group in done:
                continue
            done.add(group)
            text = src.files[groups[group]]
            if groups[group] not in own:
                table = merge(table, argparse_flags(text, f"{group}.add_arguments")[0])
            todo += sorted(_used_groups(text, groups) - done)
        if len(table) < 5:  # 1.x declares its arguments differently: not read rather than half read
            raise LookupError(f"{src.label}: only {len(table)} static argument definitions found for "
                              f"dynamo.{component}; the extractor needs updating")
        cmds[f"dynamo.{component}"] = table
    pins = _pins(src)
    wraps = {}
    for command, family, package, inner in (("dynamo.sglang", "sglang", "sglang", "sglang.launch_server"),
                                            ("dynamo.vllm", "vllm", "vllm", "vllm serve")):
        if package in pins:
            wraps[command] = {"family": family, "version": pins[package], "command": inner}
    dotted = ["dynamo.vllm"]
    dynamic = src.find("dynamo/trtllm/dynamic_flags.py")
    if dynamic is not None:  # 1.x: leftover "--trtllm.<group>.<key> value" words become engine options
        try:
            prefix = str(_literal(_module_constants(ast.parse(dynamic)).get("DYNAMIC_FLAG_PREFIX"), {}))
        except ValueError:
            raise LookupError(f"{src.label}: dynamo/trtllm/dynamic_flags.py without a literal "
                              "DYNAMIC_FLAG_PREFIX; the extractor needs updating") from None
        # a JSON-typed stem makes check() accept "<stem>.<dotted.key> value" (see dotted_json)
        cmds["dynamo.trtllm"][prefix.rstrip(".")] = {"aliases": [], "choices": None, "takes_value": True,
                                                     "type": "json"}
        dotted.append("dynamo.trtllm")
    extra: dict[str, Any] = {"wraps": wraps, "pins": pins,
                             "abbreviations": sorted(cmds),
                             "dashes_equal_underscores": ["dynamo.vllm"], "dotted_json": dotted}
    return cmds, extra


# --- driver

@dataclass(frozen=True)
class FamilySpec:
    family: str
    releases: tuple[Release, ...]
    extract: Callable[[Sources], Extracted]
    note: str = ""                    # why these versions


def _families() -> dict[str, FamilySpec]:
    return {spec.family: spec for spec in (
        FamilySpec("sglang", tuple(Release("sglang", v) for v in SGLANG_VERSIONS), extract_sglang),
        FamilySpec("vllm", tuple(Release("vllm", v) for v in VLLM_VERSIONS), extract_vllm),
        FamilySpec("sglang_router", tuple(Release("sglang-router", v) for v in ROUTER_VERSIONS),
                   extract_sglang_router),
        FamilySpec("dynamo", tuple(Release("ai-dynamo", v) for v in DYNAMO_VERSIONS), extract_dynamo),
    )}


# The versions the reference InferenceX configs and ixhpc's examples pin most, plus those the
# Dynamo releases below pin (so dynamo.sglang/dynamo.vllm find their engine's exact flags).
SGLANG_VERSIONS = ("0.5.6.post2", "0.5.8", "0.5.8.post1", "0.5.9", "0.5.10.post1", "0.5.12", "0.5.14", "0.5.16")
VLLM_VERSIONS = ("0.12.0", "0.15.1", "0.16.0", "0.18.0", "0.19.0", "0.25.1")
ROUTER_VERSIONS = ("0.2.4", "0.3.2")
DYNAMO_VERSIONS = ("0.7.0.post1", "0.8.1", "0.8.1.post1", "0.8.1.post2", "1.1.0")
# Families not read from a release, and why (regenerate leaves their files as they are).
HAND_WRITTEN = {
    "trt": "PyPI holds only placeholder sdists for tensorrt-llm (the wheels live on pypi.nvidia.com, "
           "not reachable here)",
    "atom": "ATOM is not published on PyPI",
}


def regenerate_family(spec: FamilySpec, workdir: Path,
                      fetch: Callable[[Release, Path], Path] = download) -> dict[str, Any]:
    """Fetch and read every release of one family; the family's JSON document."""
    out: dict[str, Any] = {"family": spec.family,
                           "regenerate": f"python -m ixhpc.engine_flags regenerate {spec.family}",
                           "versions": {}}
    missing: dict[str, str] = {}
    for release in spec.releases:
        try:
            archive = fetch(release, workdir / f"{release.package}-{release.version}")
            src = read_archive(archive)
            cmds, extra = spec.extract(src)
        except (LookupError, OSError, SyntaxError, zipfile.BadZipFile, tarfile.TarError) as e:
            missing[release.version] = str(e)
            print(f"  {spec.family} {release.version}: unavailable: {e}", file=sys.stderr)
            continue
        entry: dict[str, Any] = {"source": f"{src.label} from PyPI (read statically with ast)", "commands": cmds}
        entry.update(extra)
        out["versions"][release.version] = entry
        print(f"  {spec.family} {release.version}: " + ", ".join(f"{c} {len(f)} flags" for c, f in cmds.items()),
              file=sys.stderr)
    if missing:
        out["unavailable"] = missing
    return out


def dumps(doc: dict[str, Any]) -> str:
    """Sorted-key JSON with one line per flag: small, deterministic, diffable."""
    def enc(value: Any, depth: int) -> str:
        # depth 5 is a flag's record (doc > versions > v > commands > command > flag)
        if not isinstance(value, dict) or depth >= 5 or not value:
            return json.dumps(value, sort_keys=True)
        pad = " " * (depth + 1)
        items = [f"{pad}{json.dumps(k)}: {enc(value[k], depth + 1)}" for k in sorted(value)]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
    return enc(doc, 0) + "\n"


def write(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(doc))


def regenerate(names: Sequence[str], data_dir: Path = DATA_DIR) -> int:
    specs = _families()
    for name in names:
        if name in HAND_WRITTEN:
            print(f"{name}: hand-written, left as is: {HAND_WRITTEN[name]}", file=sys.stderr)
    names = [n for n in names if n not in HAND_WRITTEN]
    unknown = [n for n in names if n not in specs]
    if unknown:
        print(f"unknown families {unknown}; regenerable: {', '.join(sorted(specs))}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ixhpc-engine-flags-") as tmp:
        for name in names or sorted(specs):
            print(f"{name}:", file=sys.stderr)
            path = data_dir / f"{name}.json"
            doc = regenerate_family(specs[name], Path(tmp) / name)
            if path.is_file():  # keep versions this run could not fetch but an earlier run could
                old = json.loads(path.read_text())
                for v, data in old.get("versions", {}).items():
                    if v not in doc["versions"] and doc.get("unavailable", {}).get(v, "").startswith("pip download"):
                        doc["versions"][v] = data
                        del doc["unavailable"][v]
                if not doc.get("unavailable"):
                    doc.pop("unavailable", None)
            write(doc, path)
    _load.cache_clear()
    _command.cache_clear()
    return 0


@main_guard("python -m ixhpc.engine_flags")
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ixhpc.engine_flags", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("regenerate", help="download the releases from PyPI and rewrite the JSON data")
    r.add_argument("families", nargs="*")
    s = sub.add_parser("show", help="list the flags of one command")
    s.add_argument("family")
    s.add_argument("version")
    s.add_argument("command", nargs="?")
    ns = parser.parse_args(argv)
    if ns.cmd == "regenerate":
        return regenerate(ns.families)
    if ns.command is None:
        print("\n".join(commands(ns.family, ns.version)))
        return 0
    for name, flag in sorted(flags(ns.family, ns.version, ns.command).items()):
        if name == flag.name:
            print(name, flag.type, "|".join(flag.choices or ()), " ".join(flag.aliases))
    return 0


def _iter_dataclass_fields(cls: ast.ClassDef) -> Iterator[ast.AnnAssign]:
    for item in cls.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            yield item


if __name__ == "__main__":
    sys.exit(main())
