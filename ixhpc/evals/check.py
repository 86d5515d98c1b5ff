"""`ixhpc validate`'s checks of the ``ixhpc.eval`` blocks (docs/evals.md): a thresholds file
that exists and parses, and task names lm-eval will find (ones ixhpc knows, or defined by a
task file in the entry's ``task-dir``). Errors are located at the recipe's line."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from ixhpc.evals import thresholds
from ixhpc.evals.tasks import LOCAL_TASK
from ixhpc.recipe import EvalSettings
from ixhpc.sweep import AnyPoint
from ixhpc.yamlmodel import ConfigError, Located, load_yaml

# lm-eval 0.4.13's built-in tasks of the families InferenceX runs (gsm8k, GPQA), and ixhpc's own.
_GPQA = [f"gpqa_{subset}_{kind}" for subset in ("diamond", "extended", "main")
         for kind in ("cot_n_shot", "cot_zeroshot", "generative_n_shot", "n_shot", "zeroshot")]
KNOWN_TASKS = frozenset(["gsm8k", "gsm8k_cot", "gsm8k_cot_llama", "gsm8k_cot_self_consistency",
                         "gsm8k_cot_zeroshot", *_GPQA, LOCAL_TASK])


class _TaskLoader(yaml.SafeLoader):
    """lm-eval task files use ``!function module.name``: read past such tags."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> None:
    return None


_TaskLoader.add_multi_constructor("!", _any_tag)


def task_names(directory: Path) -> set[str]:
    """The task, group and tag names the task files under ``directory`` define."""
    names: set[str] = set()
    for path in sorted(directory.rglob("*.yaml")):
        try:
            doc = yaml.load(path.read_text(errors="replace"), Loader=_TaskLoader)  # noqa: S506 (safe subclass)
        except yaml.YAMLError:
            continue  # lm-eval skips what it cannot read, too
        if isinstance(doc, dict):
            for key in ("task", "group", "tag"):
                value = doc.get(key)
                names.update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str))
    return names


def _problems(e: EvalSettings, base: Path) -> Iterator[tuple[str | None, str]]:
    """(field, message) for each problem of one ``ixhpc.eval`` block (field None: the message
    is located in another file already)."""
    file = base / Path(e.thresholds_file).expanduser() if e.thresholds_file else None
    if file is not None and not file.is_file():
        yield "thresholds-file", f"{file}: no such eval thresholds file"
    else:
        try:
            thresholds.load(e.thresholds, e.thresholds_file, base)
        except ConfigError as exc:
            yield from ((None, err) for err in exc.errors)
    if LOCAL_TASK in e.tasks and e.task_dir:
        yield "task-dir", (f"expected no task-dir beside ixhpc's own task {LOCAL_TASK} "
                           f"(lm-eval reads one task directory)")
    defined: set[str] = set()
    if e.task_dir:
        directory = base / Path(e.task_dir).expanduser()
        if not directory.is_dir():
            yield "task-dir", f"{directory}: no such directory"
        else:
            defined = task_names(directory)
    unknown = [t for t in e.tasks if t not in KNOWN_TASKS and t not in defined]
    if unknown:
        where = f"nor defined by a task file in {e.task_dir}" if e.task_dir else "and no task-dir defines them"
        yield "tasks", (f"unknown lm-eval task(s) {', '.join(unknown)}: not among ixhpc's known tasks "
                        f"({', '.join(sorted(KNOWN_TASKS))}) {where}")


def errors(points: Sequence[AnyPoint]) -> list[str]:
    """One located error per problem of each entry's ``ixhpc.eval`` block (checked once per entry)."""
    out: list[str] = []
    docs: dict[str, Located | None] = {}
    seen: set[tuple[str, str]] = set()
    for p in points:
        e = p.ixhpc.eval
        if e is None or (p.source, p.config_key) in seen:
            continue
        seen.add((p.source, p.config_key))
        for field, message in _problems(e, Path(p.source).parent):
            out.append(message if field is None else _located(docs, p, field, message))
    return list(dict.fromkeys(out))


def _located(docs: dict[str, Located | None], p: AnyPoint, field: str, message: str) -> str:
    if p.source not in docs:
        try:
            docs[p.source] = load_yaml(p.source)
        except (ConfigError, OSError):
            docs[p.source] = None
    doc = docs[p.source]
    path: tuple[Any, ...] = (p.config_key, "ixhpc", "eval", field)
    return doc.error(path, message) if doc is not None else f"{p.source}: {p.config_key}: ixhpc.eval.{field}: {message}"
