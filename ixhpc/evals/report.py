"""Evals in the report (scores beside throughput, failing points marked) and InferenceX's eval
export (the rows of its utils/collect_eval_results.py, agg_eval_all.json)."""

from __future__ import annotations

import json
import math
from typing import Any

from ixhpc.evals.results import FAIL, column


def _num(v: Any, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.{digits}f}"


def _tasks(row: dict[str, Any]) -> list[str]:
    doc = json.loads(row.get("eval_scores") or "{}")
    return sorted({t for at in doc.get("scores", {}).values() for t in at})


def section(rows: list[dict[str, Any]]) -> str:
    """``## Accuracy evals``: one line per point and task, the lowest score per filter over its
    eval concurrencies (± standard error), throughput beside it; failing points in bold."""
    rows = [r for r in rows if r.get("eval_verdict")]
    if not rows:
        return ""
    lines = ["\n## Accuracy evals (lm-eval; lowest score over the eval concurrencies)\n",
             "| point | conc | eval concs | tput/GPU (tok/s) | task | strict-match | flexible-extract | verdict |",
             "|---|---:|---|---:|---|---:|---:|---|"]
    failing = []
    for r in rows:
        verdict = "**FAIL**" if r["eval_verdict"] == FAIL else "pass"
        tput = "eval only" if r.get("eval_only") else _num(r.get("tput_per_gpu"), 1)
        for task in _tasks(r) or ["-"]:
            cells = []
            for flt in ("strict-match", "flexible-extract"):
                name = column(task, f"exact_match,{flt}")
                cells.append(f"{_num(r.get(name))} ± {_num(r.get(name + '_stderr'))}" if r.get(name) is not None
                             else "-")
            lines.append(f"| `{r.get('point_key')}` | {r.get('conc')} | {r.get('eval_concs')} | {tput} | {task} "
                         f"| {cells[0]} | {cells[1]} | {verdict} |")
        if r["eval_verdict"] == FAIL:
            failing.append(f"- `{r.get('point_key')}`: {r.get('eval_reasons') or 'failed'}\n")
    text = "\n".join(lines) + "\n"
    if failing:
        text += "\nFailing evals:\n\n" + "".join(failing)
    return text


def _flag(v: Any) -> str:
    return str(bool(v)).lower() if isinstance(v, bool) else str(v).lower()


def inferencex_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per point, eval concurrency and task, in the shape of InferenceX's
    ``collect_eval_results.build_row`` (score: strict-match exact_match, as there)."""
    out = []
    for r in rows:
        if not r.get("eval_verdict"):
            continue
        doc = json.loads(r.get("eval_scores") or "{}")
        multi = bool(r.get("multinode"))
        tp = r.get("tp") if not multi else r.get("prefill_tp")
        ep = r.get("ep") if not multi else r.get("prefill_ep")
        for conc, tasks in sorted(doc.get("scores", {}).items(), key=lambda kv: int(kv[0])):
            for task, metrics in sorted(tasks.items()):
                strict = metrics.get("exact_match,strict-match") or {}
                flex = metrics.get("exact_match,flexible-extract") or {}
                base = {
                    "is_multinode": multi, "model_prefix": r.get("model_prefix"), "model": r.get("model"),
                    "hw": str(r.get("runner", "unknown")).upper(), "framework": str(r.get("framework")).lower(),
                    "precision": str(r.get("precision")).lower(), "spec_decoding": r.get("spec_decoding"),
                    "isl": r.get("isl"), "osl": r.get("osl"), "tp": tp, "ep": ep,
                    "prefill_tp": r.get("prefill_tp", tp), "prefill_ep": r.get("prefill_ep", ep),
                    "prefill_num_workers": r.get("prefill_num_worker", 1),
                    "decode_tp": r.get("decode_tp", tp), "decode_ep": r.get("decode_ep", ep),
                    "decode_num_workers": r.get("decode_num_worker", 1), "conc": int(conc),
                    "dp_attention": _flag(r.get("dp_attn", r.get("prefill_dp_attn"))),
                    "prefill_dp_attention": _flag(r.get("prefill_dp_attn", r.get("dp_attn"))),
                    "decode_dp_attention": _flag(r.get("decode_dp_attn", r.get("dp_attn"))),
                    "task": task, "em_strict": strict.get("value"), "em_strict_se": strict.get("stderr"),
                    "em_flexible": flex.get("value"), "em_flexible_se": flex.get("stderr"),
                    "n_eff": doc.get("n_samples", {}).get(conc, {}).get(task), "source": r.get("point_key"),
                }
                base |= ({"score": strict["value"], "score_name": "em_strict", "score_se": strict.get("stderr")}
                         if strict else {"score": None, "score_name": None, "score_se": None})
                out.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in base.items()})
    return out
