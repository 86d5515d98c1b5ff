"""Parsing an engine's argument list the way that engine does, from a flag table.

``argparse_style``: sglang, sglang-router, vLLM, Dynamo and ATOM parse with argparse; an unknown
flag ends the program with ``PROG: error: unrecognized arguments: --x`` and status 2 (vLLM's
parser also reads ``--a_b`` as ``--a-b``). ``click_style``: ``trtllm-serve`` is a click program;
its errors read ``Error: No such option: --x`` (with click's "Did you mean" hint), status 2.
Abbreviated flags are refused (every stand-in parses exactly the spellings of its table).

Both return ``Parsed``: each flag's canonical name -> its value (``True`` for a flag that takes
none; a list of lists for a repeated list flag), and the positional words.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ixhpc.standins.flagtable import Flag, Table, unique

EXIT_USAGE = 2


class UsageError(Exception):
    """The engine's own message for a bad command line (already formatted), exit status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Parsed:
    values: dict[str, Any] = field(default_factory=dict)       # canonical name -> its last value
    every: dict[str, list[Any]] = field(default_factory=dict)  # canonical name -> each value given
    positionals: list[str] = field(default_factory=list)
    spellings: dict[str, str] = field(default_factory=dict)    # any spelling -> canonical name

    def _key(self, name: str) -> str:
        return self.spellings.get(name, name)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of a flag by any of its spellings (a release may call it by another name)."""
        return self.values.get(self._key(name), default)

    def all(self, name: str) -> list[Any]:
        return self.every.get(self._key(name), [])

    def integer(self, name: str, default: int) -> int:
        value = self.get(name)
        return default if value is None else int(value)

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.get(name)
        if isinstance(value, list):  # nargs: the first word
            return str(value[0]) if value else default
        return default if value is None else str(value)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.format_usage()}{self.prog}: error: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)


_TYPES: dict[str, type[int] | type[float]] = {"int": int, "float": float}


def _dest(flag: Flag) -> str:
    return "f_" + flag.name.lstrip("-").replace("-", "_")


def argparse_style(prog: str, table: Table, args: list[str], positionals: int = 0,
                   underscores: bool = False) -> Parsed:
    """Parse like ``argparse.ArgumentParser.parse_args`` over the table's flags.

    ``positionals``: how many positional words the command takes (vllm serve: the model);
    ``underscores``: read ``--a_b`` as ``--a-b`` (vLLM's FlexibleArgumentParser). A flag given
    twice keeps its last value (``Parsed.all`` has each); ``--no-X`` aliases of a boolean
    ``--X`` turn it off."""
    parser = _Parser(prog=prog, usage="%(prog)s [options]", add_help=False, allow_abbrev=False)
    used: set[str] = set()
    flags = unique(table)
    for flag in flags:
        names = [n for n in (flag.name, *flag.aliases) if n not in used and n.startswith("-")]
        if not names:
            continue
        used.update(names)
        if not flag.takes_value:
            on = [n for n in names if not n.startswith("--no-") or flag.name.startswith("--no-")]
            off = [n for n in names if n not in on]
            for group, value in ((on, True), (off, False)):
                if group:
                    parser.add_argument(*group, dest=_dest(flag), action="store_const", const=value, default=None)
            continue
        kwargs: dict[str, Any] = {"dest": _dest(flag), "default": None, "action": "append"}
        if flag.type == "list":
            kwargs["nargs"] = "*"
        elif getattr(flag, "optional_value", False):
            kwargs.update(nargs="?", const="")
        else:
            kind = _TYPES.get(flag.type, str)
            kwargs["type"] = kind
            if flag.choices is not None:
                kwargs["choices"] = [kind(c) for c in flag.choices if kind is str or _number(c)]
        parser.add_argument(*names, **kwargs)
    if positionals:
        parser.add_argument("positional", nargs="*" if positionals > 1 else "?", default=None)
    if underscores:
        args = [_dashed(a) for a in args]
    ns = parser.parse_args(args)
    out = Parsed(spellings={k: f.name for k, f in table.items()})
    for flag in flags:
        given: Any = getattr(ns, _dest(flag), None)
        if given is None or given is False:
            continue
        if flag.takes_value:
            out.values[flag.name], out.every[flag.name] = given[-1], list(given)
        else:
            out.values[flag.name], out.every[flag.name] = True, [True]
    pos = getattr(ns, "positional", None)
    out.positionals = [] if pos is None else [pos] if isinstance(pos, str) else list(pos)
    return out


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _dashed(arg: str) -> str:
    if not arg.startswith("--"):
        return arg
    name, eq, value = arg.partition("=")
    return name.replace("_", "-") + eq + value


def click_style(prog: str, table: Table, args: list[str], positionals: tuple[str, ...] = ()) -> Parsed:
    """Parse like a click command with options and required ``positionals`` (their names)."""
    usage = f"Usage: {prog} [OPTIONS]{''.join(' ' + p.upper() for p in positionals)}\n" \
            f"Try '{prog} --help' for help.\n\n"

    def fail(message: str) -> NoReturn:
        raise UsageError(f"{usage}Error: {message}")

    out = Parsed(spellings={k: f.name for k, f in table.items()})
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.positionals += args[i + 1:]
            break
        if arg.startswith("-") and len(arg) > 1:
            name, eq, value = arg.partition("=")
            flag = table.get(name)
            if flag is None:
                near = difflib.get_close_matches(name, list(table), n=1)
                fail(f"No such option: {name}" + (f" Did you mean {near[0]}?" if near else ""))
            if not flag.takes_value:
                if eq:
                    fail(f"Option '{name}' does not take a value.")
                out.values[flag.name] = True
                out.every.setdefault(flag.name, []).append(True)
            else:
                if not eq:
                    i += 1
                    if i >= len(args):
                        fail(f"Option '{name}' requires an argument.")
                    value = args[i]
                out.values[flag.name] = _click_value(flag, name, value, fail)
                out.every.setdefault(flag.name, []).append(out.values[flag.name])
        else:
            out.positionals.append(arg)
        i += 1
    if len(out.positionals) > len(positionals):
        fail(f"Got unexpected extra argument ({out.positionals[len(positionals)]})")
    if len(out.positionals) < len(positionals):
        fail(f"Missing argument '{positionals[len(out.positionals)].upper()}'.")
    return out


def _click_value(flag: Flag, name: str, value: str, fail: Any) -> Any:
    if flag.choices is not None and value not in flag.choices:
        fail(f"Invalid value for '{name}': '{value}' is not one of "
             f"{', '.join(repr(c) for c in flag.choices)}.")
    kind = _TYPES.get(flag.type)
    if kind is None:
        return value
    try:
        return kind(value)
    except ValueError:
        fail(f"Invalid value for '{name}': '{value}' is not a valid "
             f"{'integer' if kind is int else 'float'}.")
