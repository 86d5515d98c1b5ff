"""perf-changelog.yaml -> matrix buckets: InferenceX's ``utils/process_changelog.py`` (SPEC.md 9).

``ixhpc sweep changelog --base-ref A --head-ref B`` reads the entries added to the changelog
between two revisions of a checkout (``git diff A B -- FILE``; a deleted non-blank line is an
error, the log is append-only) and prints what process_changelog prints:

* Entries (``ChangelogEntry``, unknown keys refused): ``config-keys`` (``*`` wildcards matched
  against the master keys, order kept, duplicates dropped), ``description``, ``pr-link``,
  ``evals-only``, ``all-evals``, ``append-only``, ``eval-min-prefill-ep``, ``scenario-type``.
  ``all-evals`` entries go first (stable). Each (config, scenario) pair is generated at most
  once for throughput and once for evals: the first entry covering it wins, with its flags.
* Throughput rows: ``test-config --no-evals [--scenario-type ...]`` (skipped for ``evals-only``
  / ``all-evals`` entries and the CLI's ``--evals-only``); append-only entries keep only the
  concurrencies the base revision did not have (``append_only_delta``). Eval rows:
  ``test-config --evals-only [--all-evals] --scenario-type ...``, then ``eval-min-prefill-ep``.
* ``--trim-conc`` keeps the lowest concurrency per curve; every throughput row gets a
  ``recipe-fingerprint`` (sha256 of the row without conc/exp-name); rows land in ``single_node``
  / ``multi_node`` by sequence length (``agentic`` for agentic rows) and ``evals``,
  ``agentic_evals``, ``multinode_evals``, ``multinode_agentic_evals``; they are printed as
  InferenceX's output model writes them (``eval-only: false``, ``eval-all-concs: false``,
  workers' ``additional-settings: []``, no null values).

The rows come from ixhpc's own generator (``ixhpc.sweep``), which reproduces InferenceX's.
Masters and runners are the checkout's working-tree files (InferenceX runs in the checked-out
head); append-only entries also read the base revision's with ``git show``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationError, model_validator

from ixhpc.errors import ConfigError, IxhpcError
from ixhpc.recipe import SCENARIO_TYPES, Recipes, RunnersFile, ScenarioType, load_recipe_files, load_runners
from ixhpc.yamlmodel import Located, Path_, Str, StrictModel, format_path, located_errors

MASTER_CONFIGS = ("configs/amd-master.yaml", "configs/nvidia-master.yaml")   # AMD first, as InferenceX
RUNNER_CONFIG = "configs/runners.yaml"
CHANGELOG_FILE = "perf-changelog.yaml"
NO_ENTRIES = "No new changelog entries found"
_CURVE_IGNORED = ("conc", "exp-name", "recipe-fingerprint")
_TRIM_IGNORED = ("conc", "exp-name")

Row = dict[str, Any]


class ChangelogEntry(StrictModel):
    """One perf-changelog.yaml entry (InferenceX's ChangelogEntry, HEAD)."""

    config_keys: Annotated[list[Str], Field(min_length=1)]
    description: Annotated[list[Str], Field(min_length=1)]
    pr_link: Str
    evals_only: bool = False
    all_evals: bool = False
    append_only: bool = False
    eval_min_prefill_ep: Annotated[int, Field(ge=1)] | None = None
    scenario_type: Annotated[list[ScenarioType], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _append_only_alone(self) -> ChangelogEntry:
        if self.append_only and (self.evals_only or self.all_evals or self.eval_min_prefill_ep is not None):
            raise ValueError("append-only cannot be combined with evals-only, all-evals or "
                             "eval-min-prefill-ep")
        return self

    @property
    def scenarios(self) -> tuple[ScenarioType, ...]:
        return tuple(self.scenario_type) if self.scenario_type else SCENARIO_TYPES


@dataclass(frozen=True)
class Added:
    """The lines a diff adds to the changelog, with the head-file line of each."""

    file: str
    text: str
    lines: tuple[int, ...]

    def line(self, index: int) -> int:
        """The head-file line of line ``index`` (0-based) of ``text``."""
        if not self.lines:
            return 1
        return self.lines[min(index, len(self.lines) - 1)] + max(0, index - len(self.lines) + 1)


@dataclass(frozen=True)
class Entry:
    """A validated entry, where it is written and the master keys it selects."""

    spec: ChangelogEntry
    index: int
    file: str
    line: int
    keys: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}: {format_path((self.index,))}"


@dataclass(frozen=True)
class ChangelogMatrix:
    """process_changelog's output (ChangelogMatrixEntry)."""

    single_node: dict[str, list[Row]]
    multi_node: dict[str, list[Row]]
    evals: list[Row]
    agentic_evals: list[Row]
    multinode_evals: list[Row]
    multinode_agentic_evals: list[Row]
    base_ref: str
    head_ref: str
    entries: tuple[ChangelogEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "single_node": self.single_node, "multi_node": self.multi_node, "evals": self.evals,
            "agentic_evals": self.agentic_evals, "multinode_evals": self.multinode_evals,
            "multinode_agentic_evals": self.multinode_agentic_evals,
            "changelog_metadata": {"base_ref": self.base_ref, "head_ref": self.head_ref, "entries": [
                e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in self.entries]},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------------------
# git


def git(checkout: str | Path, *args: str) -> str:
    """Run git in the checkout; a failure is a ConfigError naming the command and git's reason."""
    try:
        done = subprocess.run(["git", *args], cwd=checkout, capture_output=True, text=True,
                              encoding="utf-8", errors="replace", check=False)
    except FileNotFoundError as exc:
        raise IxhpcError(f"git not found ({exc.strerror}): `sweep changelog` needs git") from None
    except NotADirectoryError:
        raise ConfigError(f"--checkout {checkout}: not a directory") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise ConfigError(f"git {' '.join(args)} (in {checkout}): {reason}")
    return done.stdout


def _check_ref(flag: str, ref: str) -> None:
    if not ref or ref.startswith("-") or any(c in ref for c in "\n\r\0"):
        raise ConfigError(f"{flag}: expected a git revision, found {ref!r}")


_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def parse_diff(diff: str, file: str) -> Added:
    """The added lines of a unified diff of one file; a deleted non-blank line is a located
    error (``FILE:LINE`` of the base revision), all of them at once."""
    added: list[str] = []
    lines: list[int] = []
    deleted: list[str] = []
    old = new = 0
    in_hunk = False
    for raw in diff.split("\n"):
        m = _HUNK.match(raw)
        if m:
            old, new, in_hunk = int(m.group(1)), int(m.group(2)), True
        elif raw.startswith("diff "):
            in_hunk = False
        elif not in_hunk:
            continue
        elif raw.startswith("+"):
            added.append(raw[1:])
            lines.append(new)
            new += 1
        elif raw.startswith("-"):
            if raw[1:].strip():
                deleted.append(f"{file}:{old}: line deleted ({raw[1:].strip()[:60]!r}): the changelog "
                               f"is append-only; only added lines are allowed")
            old += 1
        elif raw.startswith(" "):
            old += 1
            new += 1
    if deleted:
        raise ConfigError(deleted)
    return Added(file, "\n".join(added), tuple(lines))


def added_lines(checkout: str | Path, base_ref: str, head_ref: str, file: str = CHANGELOG_FILE) -> Added:
    """``git diff BASE HEAD -- FILE``, parsed."""
    _check_ref("--base-ref", base_ref)
    _check_ref("--head-ref", head_ref)
    diff = git(checkout, "-c", "core.quotePath=false", "diff", "--no-color", "--no-ext-diff",
               "--no-renames", base_ref, head_ref, "--", file)
    return parse_diff(diff, file)


# --------------------------------------------------------------------------------------
# Entries


def _node_lines(node: yaml.Node, path: Path_, out: dict[Path_, int]) -> None:
    out.setdefault(path, node.start_mark.line)
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _node_lines(item, path + (i,), out)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                out[path + (key.value,)] = key.start_mark.line
                _node_lines(value, path + (key.value,), out)


def parse_entries(added: Added) -> tuple[list[Any], Located]:
    """The added text as YAML (``yaml.safe_load``'s values) and the head-file line of every
    entry, key and item; an empty text gives no entries."""
    if not added.text.strip():
        return [], Located(added.file, [], {})
    loader = yaml.SafeLoader(added.text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"{added.file}:{added.line(mark.line if mark else 0)}: invalid YAML in "
                          f"the added lines: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{added.file}:{added.line(0)}: invalid YAML in the added lines: "
                          f"{' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()
    index: dict[Path_, int] = {}
    if node is not None:
        _node_lines(node, (), index)
    lines = {p: added.line(i) for p, i in index.items()}
    if data is None:
        return [], Located(added.file, [], lines)
    if not isinstance(data, list):
        raise ConfigError(f"{added.file}:{lines.get((), 1)}: expected the added lines to be a list "
                          f"of changelog entries (`- config-keys: ...`), found "
                          f"{type(data).__name__}")
    return data, Located(added.file, data, lines)


def _resolve(patterns: Sequence[str], masters: Sequence[str], doc: Located, at: Path_) -> tuple[list[str], list[str]]:
    """InferenceX's wildcard resolution: ``*`` is ``.*`` (full match, no ``?``), order kept,
    duplicates dropped; a pattern or key matching nothing is an error."""
    keys: dict[str, None] = {}
    errors: list[str] = []
    for i, pattern in enumerate(patterns):
        where = at + ("config-keys", i)
        if "*" in pattern:
            regex = re.compile(re.escape(pattern).replace(r"\*", ".*"))
            found = [k for k in masters if regex.fullmatch(k)]
            if not found:
                errors.append(doc.error(where, f"no config key matches the wildcard pattern {pattern!r} "
                                               f"in the master configs"))
            keys.update(dict.fromkeys(found))
        elif pattern in masters:
            keys[pattern] = None
        else:
            close = difflib.get_close_matches(pattern, masters, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            errors.append(doc.error(where, f"config key {pattern!r} not found in the master configs{hint}"))
    return list(keys), errors


def validate_entries(data: list[Any], doc: Located, masters: Sequence[str],
                     cli_evals_only: bool = False, cli_all_evals: bool = False) -> list[Entry]:
    """Every entry validated and resolved against the master keys, all errors at once; then
    the cross-entry rules (append-only: all or none, and not with --evals-only/--all-evals).
    Returned in processing order: ``all-evals`` entries first, stably."""
    entries: list[Entry] = []
    errors: list[str] = []
    for i, raw in enumerate(data):
        try:
            spec = ChangelogEntry.model_validate(raw)
        except ValidationError as exc:
            errors.extend(located_errors(doc, (i,), exc, ChangelogEntry))
            continue
        keys, bad = _resolve(spec.config_keys, masters, doc, (i,))
        errors.extend(bad)
        entries.append(Entry(spec, i, doc.file, doc.line((i,)), tuple(keys)))
    if errors:
        raise ConfigError(errors)
    append = [e for e in entries if e.spec.append_only]
    if append and len(append) < len(entries):
        first = append[0]
        errors += [f"{e.where}: not append-only, but the entry at "
                   f"line {first.line} is: if one entry is append-only, all must be"
                   for e in entries if not e.spec.append_only]
    if append:
        flags = [f for f, on in (("--evals-only", cli_evals_only), ("--all-evals", cli_all_evals)) if on]
        if flags:
            errors.append(f"{append[0].where}: append-only "
                          f"entries cannot be processed with {' and '.join(flags)}")
    if errors:
        raise ConfigError(errors)
    return sorted(entries, key=lambda e: not e.spec.all_evals)


# --------------------------------------------------------------------------------------
# Rows


def generate(recipes: Recipes, runners: RunnersFile | None, keys: Sequence[str], **filters: Any) -> list[Row]:
    """``test-config --config-keys KEYS`` with the given flags, as raw generator rows."""
    from ixhpc import sweep

    exact = tuple(k.replace("?", "[?]") if "?" in k else k for k in keys)  # keys, not globs
    f = sweep.Filters(config_keys=exact, **filters)
    return [p.to_inferencex_row() for p in sweep.expand_all(recipes, f, profiles={}, runners=runners)]


def _without(row: Row, ignored: Iterable[str]) -> str:
    drop = set(ignored)
    return json.dumps({k: v for k, v in row.items() if k not in drop}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True)


def fingerprint(row: Row) -> str:
    """``recipe-fingerprint``: sha256 of the raw row without conc, exp-name, recipe-fingerprint."""
    return hashlib.sha256(_without(row, _CURVE_IGNORED).encode()).hexdigest()


def _concs(row: Row) -> list[Any]:
    conc = row["conc"]
    return list(conc) if isinstance(conc, list) else [conc]


def trim_conc(rows: Sequence[Row]) -> list[Row]:
    """--trim-conc: a row with ``prefill`` keeps its lowest concurrency; other rows, grouped by
    everything but conc and exp-name, keep the row of lowest conc (the first on a tie)."""
    out: list[Row] = []
    best: dict[str, int] = {}
    for row in rows:
        if "prefill" in row:
            conc = row["conc"]
            out.append({**row, "conc": [min(conc)]} if isinstance(conc, list) and len(conc) > 1 else row)
            continue
        key = _without(row, _TRIM_IGNORED)
        if key not in best:
            best[key] = len(out)
            out.append(row)
        elif row["conc"] < out[best[key]]["conc"]:
            out[best[key]] = row
    return out


def _agentic(row: Row) -> bool:
    return row.get("scenario-type") == "agentic-coding"


def _series(row: Row) -> str:
    """The visual series a row is drawn in (append-only's image check)."""
    agentic = _agentic(row)
    prefill, decode = row.get("prefill"), row.get("decode")
    return json.dumps([
        row.get("model"), row.get("model-prefix"), row.get("precision"), row.get("framework"),
        row.get("runner"), row.get("disagg", False), "agentic" if agentic else "single_turn",
        None if agentic else [row.get("isl"), row.get("osl")],
        row.get("kv-offloading", "none") not in (None, "none"),
        None if agentic else row.get("spec-decoding"),
        prefill.get("hardware") if isinstance(prefill, dict) else None,
        decode.get("hardware") if isinstance(decode, dict) else None,
    ], sort_keys=True, default=str)


def append_only_delta(base_rows: Sequence[Row], head_rows: Sequence[Row], where: str = "") -> list[Row]:
    """The head rows' concurrencies the base rows did not have. Every base curve (a row without
    conc/exp-name/recipe-fingerprint) must still be there with all its concurrencies; the delta
    must not be empty; each delta row's series must have exactly one base image, its own."""
    prefix = f"{where}: " if where else ""
    base: dict[str, set[Any]] = {}
    head: dict[str, set[Any]] = {}
    for rows, into in ((base_rows, base), (head_rows, head)):
        for row in rows:
            into.setdefault(_without(row, _CURVE_IGNORED), set()).update(_concs(row))
    errors = []
    for curve, concs in base.items():
        if curve not in head:
            errors.append(f"{prefix}append-only: a base curve is gone in head: {curve[:200]}")
        elif not concs <= head[curve]:
            errors.append(f"{prefix}append-only: concurrencies {sorted(concs - head[curve])} of a base "
                          f"curve are gone in head: {curve[:200]}")
    if errors:
        raise ConfigError(errors)
    delta: list[Row] = []
    emitted: dict[str, set[Any]] = {}
    for row in head_rows:
        curve = _without(row, _CURVE_IGNORED)
        done = emitted.setdefault(curve, set())
        new = []
        for c in _concs(row):
            if c not in base.get(curve, set()) and c not in done:
                done.add(c)
                new.append(c)
        if new:
            delta.append({**row, "conc": new} if isinstance(row["conc"], list) else row)
    if not delta:
        raise ConfigError(f"{prefix}append-only: no concurrency added (the head rows equal the base rows)")
    images: dict[str, set[str]] = {}
    for row in base_rows:
        images.setdefault(_series(row), set()).add(str(row.get("image")))
    for row in delta:
        found = images.get(_series(row), set())
        if found != {str(row.get("image"))}:
            errors.append(f"{prefix}append-only: the series of {row.get('exp-name')} (runner "
                          f"{row.get('runner')}) has base image(s) {sorted(found) or 'none'}, this row "
                          f"{row.get('image')}: appended points must use the series' one image")
    if errors:
        raise ConfigError(errors)
    return delta


def min_prefill_ep(rows: Sequence[Row], minimum: int | None) -> list[Row]:
    """eval-min-prefill-ep: drop rows whose prefill is a mapping with ``int(ep)`` below the
    minimum or not a number."""
    if minimum is None:
        return list(rows)

    def keep(row: Row) -> bool:
        prefill = row.get("prefill")
        if not isinstance(prefill, dict):
            return True
        try:
            return int(prefill.get("ep")) >= minimum  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    return [r for r in rows if keep(r)]


# Key order of InferenceX's output models (the JSON it prints); keys not listed follow.
_SINGLE_ORDER = ("image", "model", "model-prefix", "precision", "framework", "spec-decoding", "runner",
                 "isl", "osl", "tp", "pp", "dcp-size", "pcp-size", "ep", "dp-attn", "conc",
                 "max-model-len", "exp-name", "disagg", "run-eval", "eval-only", "router")
_MULTI_ORDER = ("image", "model", "model-prefix", "precision", "framework", "spec-decoding", "runner",
                "isl", "osl", "prefill", "decode", "conc", "max-model-len", "exp-name", "disagg",
                "run-eval", "eval-only", "eval-conc", "eval-all-concs", "router", "kv-p2p-transfer")
_AGENTIC_ORDER = ("image", "model", "model-prefix", "precision", "framework", "runner", "tp", "pp",
                  "dcp-size", "pcp-size", "ep", "dp-attn", "spec-decoding", "prefill", "decode", "conc",
                  "disagg", "kv-offloading", "kv-offload-backend", "total-cpu-dram-gb", "duration",
                  "exp-name", "scenario-type", "run-eval", "eval-only", "eval-conc", "eval-all-concs",
                  "router", "kv-p2p-transfer")
_WORKER_ORDER = ("num-worker", "tp", "pp", "dcp-size", "pcp-size", "ep", "dp-attn", "additional-settings",
                 "hardware")


def _ordered(row: Row, order: Sequence[str]) -> Row:
    rank = {k: i for i, k in enumerate(order)}
    return dict(sorted(row.items(), key=lambda kv: (rank.get(kv[0], len(order)), kv[0] == "recipe-fingerprint")))


def _no_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _no_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_no_none(v) for v in value]
    return value


def output_row(row: Row) -> Row:
    """A row as InferenceX's output model prints it: fixed rows gain ``eval-only: false``,
    multi-node fixed rows ``eval-all-concs: false``, workers ``additional-settings: []``;
    null values are dropped; keys in model order."""
    out = dict(row)
    agentic, multi = _agentic(row), "prefill" in row
    if not agentic:
        out.setdefault("eval-only", False)
        if multi:
            out.setdefault("eval-all-concs", False)
    for role in ("prefill", "decode"):
        if isinstance(out.get(role), dict):
            out[role] = _ordered({"additional-settings": [], **out[role]}, _WORKER_ORDER)
    order = _AGENTIC_ORDER if agentic else _MULTI_ORDER if multi else _SINGLE_ORDER
    return _ordered(_no_none(out), order)


# --------------------------------------------------------------------------------------
# The whole run


@dataclass(frozen=True)
class Inputs:
    """Master configs and runners of one revision."""

    recipes: Recipes
    runners: RunnersFile | None
    raw: dict[str, Any]        # config key -> the entry as written (yaml.safe_load)


def load_inputs(files: Sequence[Path], runner_config: Path | None) -> Inputs:
    from ixhpc import sweep

    recipes = load_recipe_files(files)
    if not sweep.recipe_format(recipes) and len(recipes):
        raise ConfigError(f"{', '.join(map(str, files))}: `sweep changelog` reads current-format masters "
                          f"(`scenarios:`), as InferenceX's process_changelog.py; these are March-format")
    raw: dict[str, Any] = {}
    for f in files:
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            raw.update(data)
    runners = load_runners(runner_config) if runner_config is not None else None
    return Inputs(recipes, runners, raw)


def _base_inputs(checkout: Path, base_ref: str, files: Sequence[str], runner_config: str | None,
                 into: Path) -> Inputs:
    """The base revision's masters and runners (``git show REV:PATH``), read from ``into``."""
    paths = []
    for name in [*files, *([runner_config] if runner_config else [])]:
        rel = Path(name)
        if rel.is_absolute():
            raise ConfigError(f"append-only entries read {name} at {base_ref}: give it relative to "
                              f"the checkout")
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(git(checkout, "show", f"{base_ref}:{rel.as_posix()}"), encoding="utf-8")
        paths.append(target)
    try:
        return load_inputs(paths[:len(files)], paths[-1] if runner_config else None)
    except ConfigError as exc:
        raise ConfigError([e.replace(f"{into}/", f"{base_ref}:") for e in exc.errors]) from None


def _scope(entries: Sequence[Entry], head: Inputs, base: Inputs) -> None:
    """append-only's scope: selected configs exist in base and keep their scenario kinds;
    unselected configs and the unselected scenarios (with the top level) are unchanged."""
    selected: dict[str, set[str]] = {}
    for e in entries:
        for k in e.keys:
            selected.setdefault(k, set()).update(e.spec.scenarios)
    errors = []

    def where(key: str) -> str:
        loaded = head.recipes.entries.get(key)
        return f"{loaded.file}:{loaded.line}: {key}" if loaded else key

    for key, scen in selected.items():
        if key not in base.raw:
            errors.append(f"{where(key)}: append-only: not in the base revision's master configs")
            continue
        h, b = head.raw[key], base.raw[key]
        hs, bs = dict(h.get("scenarios") or {}), dict(b.get("scenarios") or {})
        if set(hs) != set(bs):
            errors.append(f"{where(key)}: append-only: scenarios changed from {sorted(bs)} to {sorted(hs)}")
            continue
        others = [s for s in hs if s not in scen]
        if others and ({k: v for k, v in h.items() if k != "scenarios"}
                       != {k: v for k, v in b.items() if k != "scenarios"}):
            errors.append(f"{where(key)}: append-only: top-level fields changed, but scenario(s) "
                          f"{', '.join(others)} are not selected")
        errors += [f"{where(key)}: append-only: scenario {s} changed but is not selected"
                   for s in others if hs[s] != bs[s]]
    for key in dict.fromkeys([*head.raw, *base.raw]):
        if key not in selected and head.raw.get(key) != base.raw.get(key):
            errors.append(f"{where(key)}: append-only: changed (or added or removed) but no entry "
                          f"selects it")
    if errors:
        raise ConfigError(errors)


def process(checkout: str | Path, base_ref: str, head_ref: str, *, changelog_file: str = CHANGELOG_FILE,
            config_files: Sequence[str] = MASTER_CONFIGS, runner_config: str | None = RUNNER_CONFIG,
            trim: bool = False, evals_only: bool = False, all_evals: bool = False) -> ChangelogMatrix | None:
    """process_changelog.py: None when the diff adds no entries."""
    root = Path(checkout)
    added = added_lines(root, base_ref, head_ref, changelog_file)
    data, doc = parse_entries(added)
    if not data:
        return None
    head = load_inputs([root / f for f in config_files], root / runner_config if runner_config else None)
    entries = validate_entries(data, doc, list(head.recipes.entries), evals_only, all_evals)
    base: Inputs | None = None
    with tempfile.TemporaryDirectory(prefix="ixhpc-changelog-") as tmp:
        if any(e.spec.append_only for e in entries):
            base = _base_inputs(root, base_ref, config_files, runner_config, Path(tmp))
            _scope(entries, head, base)
        throughput, evals = _rows(entries, head, base, evals_only, all_evals)
    if trim:
        throughput = trim_conc(throughput)
    written = tuple(e.spec for e in sorted(entries, key=lambda e: e.index))   # as in the file
    return _assemble(throughput, evals, base_ref, head_ref, written)


def _unseen(entry: Entry, seen: set[tuple[str, str]]) -> dict[tuple[ScenarioType, ...], list[str]]:
    """The entry's configs grouped by their scenarios not generated yet (which become seen)."""
    groups: dict[tuple[ScenarioType, ...], list[str]] = {}
    for key in entry.keys:
        scen = tuple(s for s in entry.spec.scenarios if (key, s) not in seen)
        if scen:
            groups.setdefault(scen, []).append(key)
            seen.update((key, s) for s in scen)
    return groups


def _rows(entries: Sequence[Entry], head: Inputs, base: Inputs | None, cli_evals_only: bool,
          cli_all_evals: bool) -> tuple[list[Row], list[Row]]:
    throughput: list[Row] = []
    evals: list[Row] = []
    seen_bench: set[tuple[str, str]] = set()
    seen_eval: set[tuple[str, str]] = set()
    for e in entries:
        spec = e.spec
        if not (cli_evals_only or spec.evals_only or spec.all_evals):
            for scen, keys in _unseen(e, seen_bench).items():
                kinds = () if set(scen) == set(SCENARIO_TYPES) else scen
                rows = generate(head.recipes, head.runners, keys, no_evals=True, scenario_type=kinds)
                if spec.append_only and base is not None:
                    old = generate(base.recipes, base.runners, keys, no_evals=True, scenario_type=kinds)
                    rows = append_only_delta(old, rows, f"{e.where}: {', '.join(keys)}")
                throughput += rows
        if spec.append_only:
            continue
        for scen, keys in _unseen(e, seen_eval).items():
            rows = generate(head.recipes, head.runners, keys, evals_only=True,
                            all_evals=cli_all_evals or spec.all_evals, scenario_type=scen)
            evals += min_prefill_ep(rows, spec.eval_min_prefill_ep)
    return throughput, evals


def _assemble(throughput: Sequence[Row], evals: Sequence[Row], base_ref: str, head_ref: str,
              entries: tuple[ChangelogEntry, ...]) -> ChangelogMatrix:
    single: dict[str, list[Row]] = {}
    multi: dict[str, list[Row]] = {}
    from ixhpc.sweep import seq_len_name

    for row in throughput:
        row = {**row, "recipe-fingerprint": fingerprint(row)}
        seq = "agentic" if _agentic(row) else seq_len_name(row["isl"], row["osl"], current=True)
        (multi if "prefill" in row else single).setdefault(seq, []).append(output_row(row))
    buckets: dict[tuple[bool, bool], list[Row]] = {(m, a): [] for m in (False, True) for a in (False, True)}
    for row in evals:
        buckets[("prefill" in row, _agentic(row))].append(output_row(row))
    return ChangelogMatrix(single, multi, buckets[(False, False)], buckets[(False, True)],
                           buckets[(True, False)], buckets[(True, True)], base_ref, head_ref, entries)
