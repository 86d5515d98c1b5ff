"""Recipe loading: valid files parse, and every broken file gives located one-line errors."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import pytest

from ixhpc.cli import main
from ixhpc.recipe import MultiNodeEntry, SingleNodeEntry, load_recipe_files, validate_file
from ixhpc.yamlmodel import ConfigError

from recipe_samples import GOOD, MULTI

LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): ")


def write(tmp_path: Path, text: str | bytes, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def replace(old: str, new: str, base: str = GOOD) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


def test_good_single_and_multi(tmp_path: Path) -> None:
    recipes = load_recipe_files([write(tmp_path, GOOD, "a.yaml"), write(tmp_path, MULTI, "b.yaml")])
    single, multi = recipes.entries["sim-single"], recipes.entries["mn"]
    assert isinstance(single.spec, SingleNodeEntry) and isinstance(multi.spec, MultiNodeEntry)
    assert single.line == 1 and multi.spec.seq_len_configs[0].search_space[0].decode.num_worker == 2
    assert single.fingerprint != multi.fingerprint and len(single.fingerprint) == 64


def test_inferencex_master_files_are_valid_recipes(inferencex: Path) -> None:
    for name in ("nvidia-master.yaml", "amd-master.yaml"):
        assert validate_file(inferencex / name) == []
    assert len(load_recipe_files([inferencex / "nvidia-master.yaml", inferencex / "amd-master.yaml"])) == 66


def test_ixhpc_block_defaults_and_values(tmp_path: Path) -> None:
    text = GOOD + textwrap.indent(textwrap.dedent("""\
        ixhpc:
          engine-args: {server: [--foo, "1"], router: [--policy, rr]}
          env: {NCCL_DEBUG: INFO}
          container-mounts: [/data:/data:ro, /a:/b]
          model-path: /models/m
          benchmark: {num-warmups: 3, request-rate: .inf}
          time-limit: 30
          sim: {gpu: MI355X, model-params-b: 10, active-params-b: 2, max-batch: 16}
        """), "  ")
    entry = load_recipe_files([write(tmp_path, text)]).entries["sim-single"].spec
    x = entry.extras
    assert x.engine_args.server == ["--foo", "1"] and x.engine_args.prefill == []
    assert x.env == {"NCCL_DEBUG": "INFO"} and x.container_mounts[0] == "/data:/data:ro"
    assert x.benchmark.warmups(64) == 3 and math.isinf(x.benchmark.request_rate)
    assert x.time_limit == 30 and x.sim is not None and x.sim.max_batch == 16
    # Defaults: InferenceX's benchmark settings.
    d = load_recipe_files([write(tmp_path, GOOD, "d.yaml")]).entries["sim-single"].spec.extras
    assert (d.benchmark.random_range_ratio, d.benchmark.num_prompts_factor, d.benchmark.ignore_eos) == (0.8, 10, True)
    assert d.benchmark.warmups(8) == 16 and d.margin(current=False) == 200 and d.margin(current=True) == 256


# (name, file content, expected line, fragment of the message)
BROKEN = [
    ("missing field", replace("  precision: fp8\n", ""), 1, "sim-single.precision: expected this required key"),
    ("wrong type", replace("isl: 128", "isl: abc"), 9, 'isl: expected an integer, found "abc"'),
    ("quoted number", replace("osl: 64", 'osl: "64"'), 10, "osl: expected an integer"),
    ("bool as int", replace("    - tp: 8\n", "    - tp: 8\n      dp-attn: 1\n"), 13, "dp-attn: expected true or false"),
    ("typo suggests", replace("conc-start: 2", "conc-strat: 2"), 13, "did you mean 'conc-start'?"),
    ("top-level typo", replace("framework: sim", "framwork: sim"), 6, "did you mean 'framework'?"),
    ("both conc forms", replace("conc-end: 8", "conc-end: 8\n      conc-list: [4]"),
     12, "either conc-list or conc-start/conc-end, found both"),
    ("start > end", replace("conc-start: 2", "conc-start: 64"),
     12, "expected conc-start <= conc-end, found conc-start 64 > conc-end 8"),
    ("half a range", replace("      conc-end: 8\n", ""), 12, "found no conc-end"),
    ("zero tp", replace("tp: 8", "tp: 0"), 12, "tp: expected a value > 0, found 0"),
    ("negative conc", replace("conc-start: 2", "conc-start: -2"), 13, "conc-start: expected a value > 0"),
    ("negative isl", replace("isl: 128", "isl: -1"), 9, "isl: expected a value > 0"),
    ("empty search space",
     replace("    search-space:\n    - tp: 8\n      conc-start: 2\n      conc-end: 8\n", "    search-space: []\n"),
     11, "at least 1 item"),
    ("bad spec-decoding", replace("    - tp: 8\n", "    - tp: 8\n      spec-decoding: eagle\n"),
     13, "expected one of 'none', 'mtp' or 'draft_model'"),
    ("null value", replace("model: sim/m", "model:"), 3, "model: expected a string, found null"),
    ("entry not a mapping", "k: 3\n", 1, "k: expected a mapping, found 3"),
    ("unknown ixhpc key", GOOD + "  ixhpc:\n    time-limt: 5\n", 16, "did you mean 'time-limit'?"),
    ("unknown engine role", GOOD + "  ixhpc:\n    engine-args: {prefil: [x]}\n", 16, "did you mean 'prefill'?"),
    ("bad mount", GOOD + "  ixhpc:\n    container-mounts: [/only-src]\n", 16, "expected src:dst[:flags]"),
    ("env value int", GOOD + "  ixhpc:\n    env: {A: 1}\n", 16, "env.A: expected a string, found 1"),
    ("ratio > 1", GOOD + "  ixhpc:\n    benchmark: {random-range-ratio: 2}\n", 16, "expected a value <= 1"),
    ("zero time limit", GOOD + "  ixhpc:\n    time-limit: 0\n", 16, "time-limit: expected a value > 0"),
    ("sim gpu", GOOD + "  ixhpc:\n    sim: {gpu: A100}\n", 16, "sim.gpu: expected one of"),
    ("multinode worker", replace("tp: 8, ep: 8, dp-attn: false", "tp: 0, ep: 8, dp-attn: false", MULTI),
     16, "decode.tp: expected a value > 0"),
    ("multinode missing worker", replace("      decode: {num-worker: 2, tp: 8, ep: 8, dp-attn: false}\n", "", MULTI),
     14, "decode: expected this required key"),
    ("duplicate key", GOOD + "sim-single:\n  image: x\n",
     15, "expected each key once, found a duplicate key (first at line 1)"),
    ("duplicate nested key", replace("  image: none\n", "  image: none\n  image: two\n"),
     3, "sim-single.image: expected each key once"),
    ("tab indentation", replace("  image: none", "\timage: none"), 2, "found a tab character"),
    ("empty file", "", 1, "found an empty file"),
    ("only comments", "# nothing\n\n", 1, "found an empty file"),
    ("list at top", "- a\n- b\n", 1, "found a list"),
    ("scalar at top", "just text\n", 1, "found a string"),
    ("binary garbage", b"\x7fELF\x02\x01\x01\x00\x00\x00garbage", 1, "found binary data"),
    ("invalid utf-8", b"k:\n  image: \xff\xfe\n", 2, "found binary data"),
    ("broken yaml", "k: [1, 2\n", 2, "invalid YAML"),
    ("two documents", GOOD + "---\nx: 1\n", 15, "invalid YAML"),
]


@pytest.mark.parametrize("name,text,line,fragment", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_file_gives_located_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         name: str, text: str | bytes, line: int, fragment: str) -> None:
    path = write(tmp_path, text)
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert lines, name
    for ln in lines:
        m = LINE.match(ln)
        assert m and m.group("file") == str(path), ln
    hits = [ln for ln in lines if fragment in ln]
    assert hits, f"{fragment!r} not in {lines}"
    assert int(LINE.match(hits[0]).group("line")) == line, hits[0]  # type: ignore[union-attr]


def test_all_errors_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = replace("isl: 128", "isl: 0", replace("framework: sim", "framwork: sim"))
    text += MULTI.replace("tp: 4,", "tp: x,")
    path = write(tmp_path, text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4  # typo, missing framework, isl 0, prefill tp
    assert any("mn.seq-len-configs[0].search-space[0].prefill.tp" in e for e in err)


def test_validate_ok_line_per_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = write(tmp_path, GOOD, "a.yaml"), write(tmp_path, MULTI, "b.yaml")
    assert main(["validate", str(a), str(b)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{a}: OK", f"{b}: OK"]


def test_same_key_in_two_files_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = write(tmp_path, GOOD, "a.yaml"), write(tmp_path, GOOD, "b.yaml")
    with pytest.raises(ConfigError) as exc:
        load_recipe_files([a, b])
    assert exc.value.exit_code == 2 and exc.value.errors == [
        f"{b}:1: sim-single: expected a config key used once across files, found it also at {a}:1"]
    assert main(["validate", str(a), str(b)]) == 2


def test_missing_file(tmp_path: Path) -> None:
    errors = validate_file(tmp_path / "nope.yaml")
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path / 'nope.yaml'}:1: cannot read file")
