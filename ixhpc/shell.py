"""Shell-safe command lines for rendered scripts.

Every value from a recipe or profile reaches a script through ``word``: literal text is
quoted with ``shlex.quote``; only references to variables the script itself defines (made
with ``var``) are left for the shell to expand, inside double quotes.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

_MARK = "\x00"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Literal text that reads the same inside double quotes: such a word is written "${A}/b-${c}".
_PLAIN = re.compile(r"[A-Za-z0-9_./:=@%+,-]*\Z")
# Slurm reads #SBATCH lines itself (no shell): plain values as they are; others inside single
# quotes, which sbatch strips, so long as they hold no quote, backslash or control character.
_DIRECTIVE = re.compile(r"--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:=/@%+\-\[\]]+)?\Z")
_QUOTABLE = re.compile(r"(--[a-z][a-z0-9-]*)=([^'\\\x00-\x1f\x7f]+)\Z")


def var(name: str) -> str:
    """A placeholder for ``${name}``, a variable the rendered script defines."""
    if not _NAME.match(name):
        raise ValueError(f"not a script variable name: {name!r}")
    return f"{_MARK}{name}{_MARK}"


def word(text: str) -> str:
    """One shell word: quoted literal parts, double-quoted ``${VAR}`` references."""
    parts = text.split(_MARK)
    if len(parts) % 2 == 0:
        raise ValueError(f"NUL byte in a value that reaches the shell: {text!r}")
    if len(parts) > 1 and all(_PLAIN.match(p) for p in parts[::2]):
        return '"' + "".join(f"${{{p}}}" if i % 2 else p for i, p in enumerate(parts)) + '"' \
            if all(_NAME.match(p) for p in parts[1::2]) else _bad(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            if not _NAME.match(part):
                raise ValueError(f"NUL byte in a value that reaches the shell: {text!r}")
            out.append(f'"${{{part}}}"')
        elif part:
            out.append(shlex.quote(part))
    return "".join(out) or "''"


def _bad(text: str) -> str:
    raise ValueError(f"NUL byte in a value that reaches the shell: {text!r}")


def command(argv: Iterable[str], width: int = 88, indent: str = "    ") -> str:
    """``argv`` as shell words, wrapped on word boundaries with backslash continuations."""
    lines: list[str] = []
    current = ""
    for w in (word(a) for a in argv):
        if current and len(current) + 1 + len(w) > width:
            lines.append(current)
            current = w
        else:
            current = f"{current} {w}" if current else w
    lines.append(current)
    return (" \\\n" + indent).join(lines)


def directive(option: str) -> str:
    """One ``--option[=value]`` as an #SBATCH line's text (``option_word`` for argv)."""
    if _DIRECTIVE.match(option):
        return option
    quotable = _QUOTABLE.match(option)
    if quotable is None:
        raise ValueError(f"value not allowed in an #SBATCH line: {option!r} "
                         "(no single quotes, backslashes or control characters)")
    return f"{quotable[1]}='{quotable[2]}'"


def option_word(option: str) -> str:
    """One ``--option[=value]`` for a command's argv, held to what an #SBATCH line can say."""
    directive(option)
    return option
