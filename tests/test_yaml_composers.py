"""``yamlmodel.load_yaml``'s two paths read every document alike: the event reader for plain
documents (``_read_plain``) and the composer's path for the rest (``_load_text``), which words
and locates every problem: the same values, lines, warnings, or the same located errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ixhpc import yamlmodel
from ixhpc.errors import ConfigError
from tests.conftest import reference_path


def _read(path: Path, via_python: bool) -> Any:
    """What load_yaml makes of the file (fast path where it applies), or what Python's composer
    makes of it; a ConfigError as its lines."""
    try:
        if via_python:
            text = path.read_text()
            doc = yamlmodel._load_text(str(path), text, "a mapping", "error")
        else:
            doc = yamlmodel.load_yaml(path, "a mapping")
    except ConfigError as exc:
        return ("error", exc.errors)
    return (doc.data, doc.lines, doc.warnings)


def _plain(path: Path) -> bool:
    """Whether the event reader takes the document (else load_yaml falls back)."""
    try:
        yamlmodel._read_plain(str(path), path.read_text())
    except yamlmodel._NotPlain:
        return False
    return True


def _same(path: Path, text: str) -> bool:
    """Both paths agree; whether the event reader took it."""
    path.write_text(text)
    assert _read(path, via_python=False) == _read(path, via_python=True), text
    return _plain(path)


def test_reference_master_files_read_alike(tmp_path: Path) -> None:
    for name in ("inferencex-2026-03", "inferencex-2026-04", "inferencex-2026-08"):
        for f in sorted(reference_path(name).glob("*.yaml")):
            plain = _same(tmp_path / f.name, f.read_text())
            assert plain or f.name == "perf-changelog.yaml", f  # a list at the top: an error here


@pytest.mark.parametrize("text", [
    "a: &a {x: 1, y: [1, 2]}\nb: {<<: *a, y: 3}\nc: [*a, *a]\n",
    "a: &a [1, *a]\n",                       # an alias inside its own anchor
    "a: &a {x: 1, <<: *a}\n",                # a mapping merging itself
    "a: {<<: [{x: 1}, 2]}\n",
    "a: 1\na: 2\n",                          # a duplicate key
    "a: *nope\n",                            # an undefined alias
    "a: &x 1\nb: &x 2\nc: *x\n",             # an anchor defined twice
    "? [a, b]\n: 1\n",
    "a: " + "[" * 99 + "]" * 99 + "\n",      # at the nesting limit
    "a: " + "[" * 100 + "]" * 100 + "\n",    # one past it: Python's composer locates it
    "a: " + "[" * 98 + "1" + "]" * 98 + "\n",  # a scalar at the limit
    "a: " + "[" * 99 + "1" + "]" * 99 + "\n",  # a scalar one past it
    "a: " + "[" * 98 + "{k: 1}" + "]" * 98 + "\n",  # a key one past it
    "a:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 120)) + " " * 120 + "x: 1\n",
    "x: " + "[" * 60 + "1" + "]" * 60 + "\n" + "".join(
        f"l{i}: &l{i} " + "[" * 60 + f"*l{i - 1}" + "]" * 60 + "\n" for i in range(1, 3)).replace(
        "*l0", "*x0").replace("x: ", "l0: &x0 "),  # too deep only through aliases
    "a: !!int x\n",
    "a: [1, 2\n",                            # a parse error
])
def test_edge_cases_read_alike(tmp_path: Path, text: str) -> None:
    _same(tmp_path / "x.yaml", text)


def test_plain_documents_take_the_event_reader(tmp_path: Path) -> None:
    assert _same(tmp_path / "x.yaml", "a: 1\nb: [x, {c: 2026-01-01, '=': yes}]\n'<<': 3\n= : 4\n")
    assert not _same(tmp_path / "x.yaml", "a: &a 1\nb: *a\n")       # an anchor: the composer's
    assert not _same(tmp_path / "x.yaml", "a: {<<: {x: 1}}\n")        # a merge
    assert not _same(tmp_path / "x.yaml", "a: !!str 1\n")             # a tag


_KEYS = st.sampled_from(["a", "b", "c", "<<", "1", "true", "~", "x y"])
_SCALARS = st.one_of(st.integers(-5, 5).map(str), st.sampled_from(
    ["~", "null", "yes", "no", "1.5", ".inf", "0x1f", "'q'", '"d"', "2026-01-01", "!!str 3", "x"]))


@st.composite
def _documents(draw: Any) -> str:
    anchors: list[str] = []

    def node(depth: int) -> str:
        kind = draw(st.sampled_from(["scalar", "alias", "list", "map"] if depth < 4 else ["scalar", "alias"]))
        if kind == "scalar":
            return str(draw(_SCALARS))
        if kind == "alias":
            return f"*{draw(st.sampled_from(anchors))}" if anchors else "null"
        anchor = ""
        if draw(st.booleans()):
            anchors.append(f"n{len(anchors)}")
            anchor = f"&{anchors[-1]} "
        n = draw(st.integers(0, 4))
        if kind == "list":
            return anchor + "[" + ", ".join(node(depth + 1) for _ in range(n)) + "]"
        return anchor + "{" + ", ".join(f"{draw(_KEYS)}: {node(depth + 1)}" for _ in range(n)) + "}"

    return "".join(f"{json.dumps(draw(_KEYS))}: {node(0)}\n" for _ in range(draw(st.integers(1, 4))))


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(_documents())
def test_generated_documents_read_alike(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    _same(tmp_path_factory.mktemp("doc") / "x.yaml", text)
