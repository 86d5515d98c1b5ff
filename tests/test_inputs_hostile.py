"""Hostile inputs to `validate` and the files it reads (issue 13, items 3 and 7): bounded alias
expansion, nesting and file size, special files, sane upper bounds on numbers, non-string keys,
unmountable profile paths -- each a located one-line error, at once, never a traceback.
A fuzz test drives `ixhpc validate` with generated hostile YAML under a memory and time bound."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import INFERENCEX_SNAPSHOT, reference_root

from ixhpc.cli import main
from ixhpc.profiles import ENV_VAR, load_profiles
from ixhpc.recipe import load_recipe_files, validate_file
from ixhpc.yamlmodel import MAX_DEPTH, MAX_FILE_BYTES, ConfigError, load_yaml

from recipe_samples import GOOD, MULTI

LAUGHS = "a: &a [" + ", ".join(['"lol"'] * 9) + "]\n" + "".join(
    f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n" for prev, name in zip("abcdefgh", "bcdefghi"))

HUGE = "1" + "0" * 30   # 10**30


def write(tmp_path: Path, text: str | bytes, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def one_error(path: Path, line: int, fragment: str) -> list[str]:
    errors = validate_file(path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}:{line}: ") and fragment in errors[0], errors
    return errors


def run_limited(code: str, timeout: float = 60, mem: int = 2 << 30) -> subprocess.CompletedProcess[str]:
    """Run Python code in a child with its address space capped (an unbounded input would end
    in MemoryError or the OOM killer, not quietly)."""
    prelude = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({mem}, {mem})); "
               f"sys.path.insert(0, {str(Path(__file__).parent)!r});\n")
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).parents[1])


def validate_limited(path: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return run_limited(f"from ixhpc.cli import main; sys.exit(main(['validate', {str(path)!r}]))",
                       timeout=timeout)


# --------------------------------------------------------------------------------------
# Aliases, merges, nesting.


def test_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    f = write(tmp_path, LAUGHS)
    assert len(LAUGHS) < 600
    t0 = time.monotonic()
    r = validate_limited(f)
    assert time.monotonic() - t0 < 20
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{f}:"), lines
    assert "invalid YAML: expected aliases and merges to add at most" in lines[0]


def test_aliases_within_the_bound_still_expand(tmp_path: Path) -> None:
    text = GOOD.replace("    - tp: 8\n", "    - &sp\n      tp: 8\n") + "      ep: 1\n    - *sp\n"
    f = write(tmp_path, text.replace("      ep: 1\n", ""))
    doc = load_yaml(f)
    space = doc.data["sim-single"]["seq-len-configs"][0]["search-space"]
    assert space[0] == space[1] == {"tp": 8, "conc-start": 2, "conc-end": 8}


def test_reference_master_files_load_fast() -> None:
    files = sorted(reference_root().glob("inferencex-2026-*/*-master.yaml"))
    if not files:
        pytest.skip(f"no InferenceX master files under {reference_root()}")
    for f in files:
        t0 = time.perf_counter()
        doc = load_yaml(f)
        assert time.perf_counter() - t0 < 3, f   # ~0.1 s each; generous for a loaded CI host
        assert doc.data, f
        if f.parent.name == INFERENCEX_SNAPSHOT:   # the newer snapshots' schema is not all supported yet
            assert validate_file(f) == [], f


def test_merge_keys_follow_yaml_precedence(tmp_path: Path) -> None:
    f = write(tmp_path, textwrap.dedent("""\
        a: &a {x: 1, y: 2}
        b: &b {x: 10, z: 30}
        c: {<<: *a, x: 3}
        d: {<<: [*a, *b]}
        e: {<<: [*b, *a], y: 20}
        """))
    d = load_yaml(f).data
    assert d["c"] == {"x": 3, "y": 2}                # a written key overrides a merged one
    assert d["d"] == {"x": 1, "y": 2, "z": 30}       # an earlier source overrides a later one
    assert d["e"] == {"x": 10, "y": 20, "z": 30}


def test_merge_bomb_is_refused(tmp_path: Path) -> None:
    # Each level merges the previous one twice: without dedup 2**40 pairs.
    text = "l0: &l0 {k0: 0}\n" + "".join(f"l{i}: &l{i} {{<<: [*l{i - 1}, *l{i - 1}], k{i}: {i}}}\n"
                                         for i in range(1, 41))
    f = write(tmp_path, text)
    r = validate_limited(f)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert all(ln.startswith(f"{f}:") for ln in r.stderr.strip().splitlines()), r.stderr


@pytest.mark.parametrize("text,fragment", [
    ("a: &a [1, *a]\n", "found an alias inside its own anchor"),
    ("a: &a {x: 1, <<: *a}\n", "found a mapping that merges itself"),
    ("a: {<<: 3}\n", "expected a mapping or a list of mappings to merge"),
    ("a: {<<: [{x: 1}, 2]}\n", "expected a mapping or a list of mappings to merge"),
])
def test_recursive_and_bad_merges(tmp_path: Path, text: str, fragment: str) -> None:
    one_error(write(tmp_path, text), 1, fragment)


@pytest.mark.parametrize("text", [
    "a: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "a: " + "{b: " * 100_000 + "1" + "}" * 100_000 + "\n",
], ids=["lists", "mappings"])
def test_deep_nesting_is_refused_without_crashing(tmp_path: Path, text: str) -> None:
    # libyaml's own composer recurses in C and kills the interpreter (SIGSEGV) here.
    f = write(tmp_path, text)
    r = validate_limited(f)
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    # ixhpc's own limit, or the one newer libyaml builds (PyYAML 6.0.4 wheels) hit first while parsing
    ours = f"{f}:1: invalid YAML: expected at most {MAX_DEPTH} levels of nesting, found more"
    libyaml = f"{f}:1: invalid YAML: while increasing flow level exceeded maximum nesting depth"
    assert r.stderr.strip() in (ours, libyaml)


def test_deep_nesting_through_aliases_is_refused(tmp_path: Path) -> None:
    step = 60
    text = "l0: &l0 " + "[" * step + "1" + "]" * step + "\n" + "".join(
        f"l{i}: &l{i} " + "[" * step + f"*l{i - 1}" + "]" * step + "\n" for i in range(1, 40))
    errors = validate_file(write(tmp_path, text))
    assert len(errors) == 1 and f"expected at most {MAX_DEPTH} levels of nesting" in errors[0], errors


def test_non_plain_keys_are_located(tmp_path: Path) -> None:
    f = write(tmp_path, "? [a, b]\n: 1\n? {x: 1}\n: 2\n")
    errors = validate_file(f)
    assert errors == [f"{f}:1: (top level): expected a plain key, found a list",
                      f"{f}:3: (top level): expected a plain key, found a mapping"]


# --------------------------------------------------------------------------------------
# Special and huge files.


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory", "huge", "socket"])
def test_special_and_huge_files_are_refused_at_once(tmp_path: Path, kind: str) -> None:
    import socket

    path = tmp_path / "x.yaml"
    keep: Any = None
    if kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "huge":
        with open(path, "wb") as fh:   # sparse: no disk used
            fh.truncate(MAX_FILE_BYTES + 1)
    else:
        keep = socket.socket(socket.AF_UNIX)
        keep.bind(str(path))
    expected = {"dev-zero": "expected a regular file, found a character device",
                "fifo": "expected a regular file, found a named pipe (FIFO)",
                "directory": "expected a regular file, found a directory",
                "huge": "expected a file of at most 64 MiB, found 67,108,865 bytes",
                "socket": "cannot read file"}[kind]
    try:
        t0 = time.monotonic()
        r = validate_limited(path, timeout=30)
        assert time.monotonic() - t0 < 20
    finally:
        if keep is not None:
            keep.close()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().startswith(f"{path}:1: {expected}"), r.stderr


# --------------------------------------------------------------------------------------
# Upper bounds on numbers.

IX = GOOD + "  ixhpc:\n"


@pytest.mark.parametrize("text,line,fragment", [
    (GOOD.replace("tp: 8", f"tp: {HUGE}"), 12, "tp: expected a value <= 65536, found 10000"),
    (GOOD.replace("conc-end: 8", f"conc-end: {HUGE}"), 14, "conc-end: expected a value <= 1048576"),
    (GOOD.replace("conc-start: 2\n      conc-end: 8", f"conc-list: [1, {HUGE}]"), 13,
     "conc-list[1]: expected a value <= 1048576"),
    (GOOD.replace("isl: 128", "isl: 100000000"), 9, "isl: expected a value <= 16777216"),
    (GOOD.replace("osl: 64", f"osl: {HUGE}"), 10, "osl: expected a value <= 16777216"),
    (IX + f"    time-limit: {HUGE}\n", 16, "time-limit: expected a value <= 43200"),
    (IX + "    health-timeout: 100000000\n", 16, "health-timeout: expected a value <= 2592000"),
    (IX + f"    max-model-len-margin: {HUGE}\n", 16, "max-model-len-margin: expected a value <= 16777216"),
    (IX + "    benchmark: {num-prompts-factor: 100000}\n", 16, "num-prompts-factor: expected a value <= 1024"),
    (IX + f"    benchmark: {{num-warmups: {HUGE}}}\n", 16, "num-warmups: expected a value <= 1048576"),
    (IX + "    benchmark: {client-workers: 5000}\n", 16, "client-workers: expected a value <= 1024"),
    (IX + "    benchmark: {request-rate: 1.0e+300}\n", 16, "request-rate: expected a value <= 1048576 or inf"),
    (IX + "    benchmark: {request-rate: .nan}\n", 16, "request-rate: expected a value > 0"),
    (IX + "    sim: {model-params-b: .inf}\n", 16, "model-params-b: expected a finite number, found inf"),
    (IX + "    sim: {model-params-b: .nan}\n", 16, "model-params-b: expected a finite number"),
    (IX + "    sim: {model-params-b: 1.0e+9}\n", 16, "model-params-b: expected a value <= 100000"),
    (IX + f"    sim: {{max-batch: {HUGE}}}\n", 16, "max-batch: expected a value <= 1048576"),
    (MULTI.replace("num-worker: 2", f"num-worker: {HUGE}"), 16, "decode.num-worker: expected a value <= 65536"),
    (MULTI.replace("ep: 4", "ep: 1000000"), 15, "prefill.ep: expected a value <= 65536"),
])
def test_numbers_have_upper_bounds(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    one_error(write(tmp_path, text), line, fragment)


def test_bounds_admit_real_values(tmp_path: Path) -> None:
    text = IX + textwrap.dedent("""\
        time-limit: 43200
        health-timeout: 7200
        benchmark: {request-rate: .inf, num-prompts-factor: 1024, client-workers: 16}
        sim: {model-params-b: 671, active-params-b: 37}
        """).replace("\n", "\n    ").rstrip() + "\n"
    text = text.replace("ixhpc:\ntime", "ixhpc:\n    time")
    f = write(tmp_path, text.replace("conc-end: 8", "conc-end: 1048576").replace("isl: 128", "isl: 1048576"))
    assert validate_file(f) == []
    assert load_recipe_files([f]).entries["sim-single"].spec.extras.time_limit == 43200


# --------------------------------------------------------------------------------------
# Profiles and runner files.


@pytest.fixture()
def no_user_profiles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


MOUNT = "expected a directory usable as a container mount"


@pytest.mark.usefixtures("no_user_profiles")
@pytest.mark.parametrize("text,line,fragment", [
    ("1:\n  extends: local\n", 1, "[1]: expected a profile name (a string), found 1 (an integer)"),
    ("true: x\n", 1, "[True]: expected a profile name (a string), found True (a boolean)"),
    ("x:\n  extends: local\n  1: [a]\n", 3, "x[1]: expected a string key, found 1 (an integer)"),
    ("x:\n  extends: local\n  model-dir: /models,rw\n", 3, f"x.model-dir: {MOUNT}"),
    ("x:\n  extends: local\n  model-dir: /a:/b\n", 3, f"x.model-dir: {MOUNT}"),
    ("x:\n  extends: local\n  model-dir: ~nosuchuser-ixhpc/models\n", 3,
     "x.model-dir: expected a path whose '~' expands (no user 'nosuchuser-ixhpc'), found \"~nosuchuser-ixhpc/models\""),
    ("x:\n  extends: local\n  squash-cache: ~nosuchuser-ixhpc/sq\n", 3,
     "x.squash-cache: expected a path whose '~' expands"),
    (f"x:\n  extends: local\n  time-limit: {HUGE}\n", 3, "x.time-limit: expected a value <= 43200"),
    ("x:\n  extends: local\n  gpus-per-node: 100000\n", 3, "x.gpus-per-node: expected a value <= 65536"),
    ("x:\n  extends: gb200-nvl72\n  nvlink-domain-nodes: 100000\n", 3,
     "x.nvlink-domain-nodes: expected a value <= 65536"),
    ("x:\n  extends: local\n  partitions: [{name: p, gpus-per-node: 100000}]\n", 3,
     "x.partitions[0].gpus-per-node: expected a value <= 65536"),
])
def test_profile_keys_paths_and_numbers_are_located(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    f = write(tmp_path, text, "clusters.yaml")
    with pytest.raises(ConfigError) as exc:
        load_profiles(f)
    assert len(exc.value.errors) == 1, exc.value.errors
    assert exc.value.errors[0].startswith(f"{f}:{line}: ") and fragment in exc.value.errors[0], exc.value.errors


@pytest.mark.usefixtures("no_user_profiles")
def test_profile_model_dir_that_expands_is_fine(tmp_path: Path) -> None:
    f = write(tmp_path, "x:\n  extends: local\n  model-dir: ~/models\n", "clusters.yaml")
    assert load_profiles(f)["x"].model_dir == "~/models"


@pytest.mark.parametrize("text,fragments", [
    ("1: [a]\nmi355x: [r1]\n", ["[1]: expected a runner label (a string), found 1 (an integer)"]),
    ("true: x\n", ["[True]: expected a runner label (a string), found True (a boolean)"]),
    ("gb200: x\n2.5: []\n", ["gb200: expected a non-empty list of runner names, found \"x\"",
                             "2.5: expected a runner label"]),
])
def test_runner_file_keys_are_located(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                      fragments: list[str]) -> None:
    runners = write(tmp_path, text, "runners.yaml")
    recipe = write(tmp_path, GOOD)
    code = main(["sweep", str(recipe), "--runner-config", str(runners), "--runner-type", "mi355x"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    for fragment in fragments:
        assert re.search(rf"{re.escape(str(runners))}:\d+: {re.escape(fragment)}", err), err


# --------------------------------------------------------------------------------------
# Fuzz: generated hostile YAML through `ixhpc validate`, in a child capped at 2 GiB.

FUZZ_EXAMPLES = int(os.environ.get("IXHPC_FUZZ_EXAMPLES", "250"))


def test_fuzz_validate_never_tracebacks(tmp_path: Path) -> None:
    r = run_limited(f"import test_inputs_hostile as t; t.fuzz({str(tmp_path)!r}, {FUZZ_EXAMPLES})",
                    timeout=400)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-5000:])
    assert "fuzzed" in r.stdout


def fuzz(workdir: str, examples: int) -> None:
    """The fuzz body, run in the capped child: hypothesis generates documents (structured trees
    with anchors, aliases and merges; mutated valid recipes; YAML-ish text; random bytes) and
    each goes through `ixhpc validate` in-process."""
    import contextlib
    import io
    import traceback

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    keys = st.one_of(st.sampled_from([
        "image", "model", "model-prefix", "precision", "framework", "runner", "multinode", "disagg",
        "seq-len-configs", "isl", "osl", "search-space", "tp", "ep", "conc-list", "conc-start",
        "conc-end", "prefill", "decode", "num-worker", "dp-attn", "ixhpc", "env", "benchmark", "sim",
        "time-limit", "model-params-b", "request-rate", "container-mounts", "engine-args", "<<", "=",
    ]), st.text(max_size=6), st.integers(-3, 3), st.booleans())
    tokens = st.sampled_from([
        ".inf", "-.inf", ".nan", "1e400", "0x7fffffffffffffff", HUGE, "~", "null", "2026-01-01",
        "!!binary aGk=", "!!python/object:os.system x", "!!set {a, b}", "!!int x", "!!float '1'",
        "'\\x00'", '"\\0"', '"\\ud800"', '"a\\nb"', "&", "*", "!", "%", "@", "`x`", "<<",
    ])
    scalars = st.one_of(
        st.integers().map(lambda v: ("s", json.dumps(v))),
        st.floats().map(lambda v: ("s", {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}.get(str(v), repr(v)))),
        st.text(max_size=12).map(lambda v: ("s", json.dumps(v))),
        tokens.map(lambda v: ("s", v)),
        st.integers(0, 12).map(lambda k: ("alias", k)),
    )
    trees = st.recursive(scalars, lambda kids: st.one_of(
        st.tuples(st.just("list"), st.booleans(), st.lists(kids, max_size=6)),
        st.tuples(st.just("map"), st.booleans(), st.lists(st.tuples(keys, kids), max_size=6)),
    ), max_leaves=60)

    def render(tree: Any, anchors: list[str]) -> str:
        kind = tree[0]
        if kind == "s":
            return str(tree[1])
        if kind == "alias":
            return f"*{anchors[tree[1] % len(anchors)]}" if anchors else "null"
        anchor = ""
        if tree[1]:
            anchors.append(f"a{len(anchors)}")
            anchor = f"&{anchors[-1]} "
        if kind == "list":
            return anchor + "[" + ", ".join(render(t, anchors) for t in tree[2]) + "]"
        items = []
        for key, value in tree[2]:
            k = key if isinstance(key, str) and key in ("<<", "=") else json.dumps(key)
            items.append(f"{k}: {render(value, anchors)}")
        return anchor + "{" + ", ".join(items) + "}"

    good = load_yaml_text(GOOD + MULTI.replace("mn:", "mn2:"))
    documents = st.one_of(
        st.lists(st.tuples(keys, trees), max_size=5).map(
            lambda kv: "\n".join(f"{json.dumps(k)}: {render(v, [])}" for k, v in kv) + "\n"),
        st.tuples(st.integers(0, 10**6), trees).map(lambda pt: mutate(good, *pt, render)),
        st.text(alphabet="[]{}:-&*!<>|?,#'\"\n \t@%`abc1.~=\x00\x85\u2028", max_size=300),
        st.binary(max_size=400),
        st.integers(1, 12).map(lambda n: LAUGHS.replace("i: &i", f"i{n}: &i")),
        st.sampled_from([GOOD, MULTI, GOOD + MULTI.replace("mn:", "mn: &mn") + "mn2: {<<: *mn, runner: mi355x}\n"]),
    )
    out = Path(workdir)
    count, codes = [0], set()

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(documents)
    def check(doc: str | bytes) -> None:
        f = out / f"f{count[0]}.yaml"
        count[0] += 1
        f.write_bytes(doc if isinstance(doc, bytes) else doc.encode("utf-8", "surrogatepass"))
        err, std = io.StringIO(), io.StringIO()
        t0 = time.monotonic()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
                code = main(["validate", str(f)])
        except Exception:
            raise AssertionError(f"traceback for {doc!r}:\n{traceback.format_exc()}") from None
        assert time.monotonic() - t0 < 20, doc
        codes.add(code)
        text = err.getvalue()
        assert code in (0, 2), (code, doc, text)
        assert "Traceback" not in text, text
        if code == 0:
            assert std.getvalue() == f"{f}: OK\n" and not text, (doc, text)
        else:
            lines = text.splitlines()
            assert lines, doc
            for ln in lines:  # one located line per problem
                assert re.match(rf"{re.escape(str(f))}:\d+: .", ln), (doc, ln)
        f.unlink()

    check()
    print(f"fuzzed {count[0]} documents, exit codes {sorted(codes)}")


def load_yaml_text(text: str) -> dict[str, Any]:
    import yaml
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def mutate(good: dict[str, Any], pick: int, tree: Any, render: Any) -> str:
    """A valid recipe with one value (chosen by `pick`) replaced by a generated tree."""
    paths: list[tuple[Any, ...]] = []

    def walk(v: Any, p: tuple[Any, ...]) -> None:
        paths.append(p)
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, p + (k,))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, p + (i,))
    walk(good, ())
    target = paths[pick % len(paths)]
    marker = "__FUZZ__"

    def replaced(v: Any, p: tuple[Any, ...]) -> Any:
        if p == target:
            return marker
        if isinstance(v, dict):
            return {k: replaced(x, p + (k,)) for k, x in v.items()}
        if isinstance(v, list):
            return [replaced(x, p + (i,)) for i, x in enumerate(v)]
        return v
    return json.dumps(replaced(good, ())).replace(json.dumps(marker), render(tree, [])) + "\n"
