"""lm-eval's output -> a point's eval document: scores per task and filter, the sample logs,
and the verdict against the thresholds.

The document (the record's ``eval``; docs/evals.md)::

    {"eval_only": bool, "concs": [E, ...], "thresholds": {task: min score},
     "scores": {"E": {task: {"<metric>,<filter>": {"value": v, "stderr": s}}}},
     "n_samples": {"E": {task: n}}, "samples_sha256": {"cE/<task>": hex},
     "lm_eval_version": str, "verdict": "pass" | "fail", "reasons": [text]}

The verdict is InferenceX's (utils/evals/validate_scores.py): every ``exact_match`` metric
(each filter) of every task at every requested eval concurrency must reach its threshold; a
missing concurrency, task or metric fails with its reason.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PASS, FAIL = "pass", "fail"
METRIC = "exact_match"  # the metric thresholds apply to (validate_scores: "exact_match,<filter>")


@dataclass(frozen=True)
class EvalSpec:
    """What the job asked for one point: its eval concurrencies and each task's threshold."""

    concs: tuple[int, ...]
    thresholds: dict[str, float]
    only: bool = False


def _newest(directory: Path, pattern: str) -> Path | None:
    found = sorted(directory.rglob(pattern), key=lambda p: p.name)
    return found[-1] if found else None


def _scores(task_results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``"<metric>,<filter>" -> {value, stderr}`` of one task's lm-eval results."""
    out: dict[str, dict[str, float]] = {}
    for key, value in task_results.items():
        metric, sep, flt = key.partition(",")
        if not sep or metric.endswith("_stderr") or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        err = task_results.get(f"{metric}_stderr,{flt}")
        out[key] = {"value": float(value),
                    "stderr": float(err) if isinstance(err, (int, float)) and not isinstance(err, bool) else math.nan}
    return out


def read_run(directory: Path) -> tuple[dict[str, Any], dict[str, bytes]] | None:
    """One lm-eval run's results file and sample logs (None: it wrote no results)."""
    results = _newest(directory, "results_*.json")
    if results is None:
        return None
    doc = json.loads(results.read_text())
    samples = {}
    for task in doc.get("results", {}):
        log = _newest(directory, f"samples_{task}_*.jsonl")
        if log is not None:
            samples[task] = log.read_bytes()
    return doc, samples


def judge(scores: dict[str, dict[str, dict[str, dict[str, float]]]], spec: EvalSpec) -> list[str]:
    """Why the evals fail (empty: they pass). ``scores``: eval concurrency -> task -> metric."""
    reasons = []
    for conc in spec.concs:
        at = scores.get(str(conc))
        if at is None:
            reasons.append(f"eval concurrency {conc}: no lm-eval result")
            continue
        for task, floor in sorted(spec.thresholds.items()):
            metrics = {k: v for k, v in at.get(task, {}).items() if k.split(",")[0] == METRIC}
            if task not in at:
                reasons.append(f"{task} at eval concurrency {conc}: no result")
            elif not metrics:
                reasons.append(f"{task} at eval concurrency {conc}: no {METRIC} metric")
            for key, m in sorted(metrics.items()):
                if not m["value"] >= floor:
                    reasons.append(f"{task} {key.split(',', 1)[1]} at eval concurrency {conc}: "
                                   f"{METRIC} {m['value']:.4f} < threshold {floor:.2f}")
    return reasons


def collect(dirs: dict[int, Path], spec: EvalSpec) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The point's eval document and sample logs (``"c<E>/<task>" -> JSONL bytes``) from each
    eval concurrency's lm-eval output directory."""
    scores: dict[str, Any] = {}
    n_samples: dict[str, Any] = {}
    logs: dict[str, bytes] = {}
    version = ""
    for conc in spec.concs:
        run = read_run(dirs[conc]) if conc in dirs and dirs[conc].is_dir() else None
        if run is None:
            continue
        doc, samples = run
        version = str(doc.get("lm_eval_version", version))
        scores[str(conc)] = {task: _scores(r) for task, r in doc.get("results", {}).items()}
        n_samples[str(conc)] = {task: int(n.get("effective", 0)) for task, n in doc.get("n-samples", {}).items()}
        logs.update({f"c{conc}/{task}": data for task, data in samples.items()})
    reasons = judge(scores, spec)
    doc_out = {"eval_only": spec.only, "concs": list(spec.concs), "thresholds": dict(spec.thresholds),
               "scores": scores, "n_samples": n_samples, "lm_eval_version": version,
               "samples_sha256": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(logs.items())},
               "verdict": FAIL if reasons else PASS, "reasons": reasons}
    return doc_out, logs


# What InferenceX's scripts leave in their working directory after lm-eval (benchmark_lib.sh's
# append_lm_eval_summary; the files its workflow uploads as the eval artifact).
SCRIPT_EVAL_FILES = ("meta_env.json", "results*.json", "samples_*.jsonl")


def take_script_eval(workspace: Path, dest: Path) -> int:
    """Script mode: move the eval files an InferenceX script left in ``workspace`` into
    ``dest`` (the point's lm-eval output directory); returns how many."""
    import os

    moved = 0
    for pattern in SCRIPT_EVAL_FILES:
        for path in sorted(workspace.glob(pattern)):
            if path.is_file():
                dest.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest / path.name)
                moved += 1
    return moved


def add_ingest_arguments(parser: argparse.ArgumentParser) -> None:
    """The ingest steps' eval options (``spec_of`` reads them back)."""
    parser.add_argument("--eval-conc", type=int, action="append", default=[], metavar="N",
                        help="the point ran lm-eval at this eval concurrency (ixhpc.evals)")
    parser.add_argument("--eval-task", action="append", default=[], metavar="TASK=MIN",
                        help="an eval task and the lowest score that passes")
    parser.add_argument("--eval-only", action="store_true", help="the point ran no throughput benchmark")


def spec_of(concs: list[int], tasks: list[str], only: bool) -> EvalSpec | None:
    """The ingest steps' ``--eval-conc N ... --eval-task TASK=MIN ... [--eval-only]``."""
    if not concs:
        return None
    floors = {}
    for spec in tasks:
        task, _, floor = spec.rpartition("=")
        floors[task] = float(floor)
    return EvalSpec(tuple(concs), floors, only)


_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def column(task: str, key: str) -> str:
    """The table column of a task's metric and filter: ``eval_<task>_<metric>_<filter>``."""
    return _UNSAFE.sub("_", f"eval_{task}_{key.replace(',', '_')}").strip("_")


def columns(doc: dict[str, Any] | None) -> dict[str, Any]:
    """Merged-table columns of a point's eval: verdict, reasons, concurrencies, and each
    task/filter's lowest score over the eval concurrencies (the one the verdict hinges on),
    with its standard error."""
    if not doc:
        return {}
    row: dict[str, Any] = {"eval_verdict": doc["verdict"], "eval_only": bool(doc.get("eval_only")),
                           "eval_concs": ",".join(str(c) for c in doc.get("concs", []))}
    if doc.get("reasons"):
        row["eval_reasons"] = "; ".join(doc["reasons"])
    # every eval concurrency's scores and sample counts, for the InferenceX eval export
    row["eval_scores"] = json.dumps({"scores": doc.get("scores", {}), "n_samples": doc.get("n_samples", {})},
                                    sort_keys=True, separators=(",", ":"))
    for at in doc.get("scores", {}).values():
        for task, metrics in at.items():
            for key, m in metrics.items():
                name = column(task, key)
                if name not in row or m["value"] < row[name]:
                    row[name], row[name + "_stderr"] = float(m["value"]), float(m["stderr"])
    return row
