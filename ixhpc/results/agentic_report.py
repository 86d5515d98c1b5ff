"""The report's agentic-coding part (issue 19): a summary table and the AgentX plots.

One experiment per (model prefix, trace corpus); a series per setup (hardware, framework,
precision, parallelism, KV-offload tier). Plots:

* ``<stem>_agentic_intvty_vs_tput.png``: throughput per GPU against AgentX's headline
  interactivity (``agentic_e2e_norm_intvty_p90``: 1 / p90(E2EL / OSL), tokens/s/user);
* ``<stem>_agentic_cache_hit_vs_conc.png``: the engines' prefix-cache hit rate (Prometheus,
  ``srv_prefix_cache_hit_rate``; solid), their DRAM tier's (``srv_cpu_prefix_cache_hit_rate``;
  dotted, when offloading) and the traces' theoretical one (dashed) by concurrency;
* ``<stem>_agentic_ttft_vs_conc.png``: TTFT p50 and p90 by concurrency (where the working set
  outgrows the GPU KV cache, TTFT climbs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ixhpc.results import figures
from ixhpc.results.agentic import HEADLINE, SCENARIO


def is_agentic(row: dict[str, Any]) -> bool:
    return row.get("scenario_type") == SCENARIO


def lengths(row: dict[str, Any]) -> str:
    """The report's isl/osl cell: ``agentic`` for a trace replay (no fixed lengths)."""
    return "agentic" if is_agentic(row) else f"{row.get('isl')}/{row.get('osl')}"


def _finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _fmt(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    return f"{value * scale:,.{digits}f}" if _finite(value) else "-"


def offload(row: dict[str, Any]) -> str:
    tier = row.get("kv_offloading") or "none"
    return f"kv {tier}" + (f" ({row['kv_offload_backend_name']})" if row.get("kv_offload_backend_name") else "")


def setup(row: dict[str, Any], parallelism: Callable[[dict[str, Any]], str]) -> str:
    parts = [row.get("runner"), row.get("framework"), row.get("precision"), parallelism(row), offload(row)]
    if row.get("spec_decoding") not in (None, "none"):
        parts.append(row["spec_decoding"])
    return " ".join(str(p) for p in parts if p)


def section(rows: list[dict[str, Any]], parallelism: Callable[[dict[str, Any]], str]) -> str:
    """Markdown: one line per agentic point."""
    rows = sorted((r for r in rows if is_agentic(r)),
                  key=lambda r: (setup(r, parallelism), r.get("agentic_traces") or "", r.get("conc") or 0))
    if not rows:
        return ""
    lines = ["\n## Agentic coding (trace replay; AgentX metrics, agentx SPEC §3)\n",
             "| setup | traces | conc | E2E-norm. intvty p90 (tok/s/user) | tput/GPU (tok/s) | TTFT p90 (s) "
             "| prefix hit % (server GPU) | DRAM hit % | hit % (theoretical) | requests ok/total | duration (s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {setup(r, parallelism)} | {r.get('agentic_traces')} | {r.get('conc')} "
            f"| {_fmt(r.get(HEADLINE))} | {_fmt(r.get('tput_per_gpu'))} | {_fmt(r.get('agentic_ttft_p90'), digits=3)} "
            f"| {_fmt(r.get('srv_prefix_cache_hit_rate'), 100)} | {_fmt(r.get('srv_cpu_prefix_cache_hit_rate'), 100)} "
            f"| {_fmt(r.get('agentic_theoretical_cache_hit_rate'), 100)} "
            f"| {_fmt(r.get('agentic_requests_successful'), digits=0)}"
            f"/{_fmt(r.get('agentic_requests_total'), digits=0)} "
            f"| {r.get('duration')}{'' if r.get('agentic_canonical') else ' (< 900: non-canonical)'} |")
    return "\n".join(lines) + "\n"


def plots(rows: list[dict[str, Any]], out_dir: Path, stem_of: Callable[[str], str],
          parallelism: Callable[[dict[str, Any]], str]) -> list[Path]:
    """The three plots per experiment (model prefix, trace corpus); returns the files."""
    experiments: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if is_agentic(r):
            experiments.setdefault((str(r.get("model_prefix")), str(r.get("agentic_traces"))), []).append(r)
    written: list[Path] = []
    for (prefix, traces), erows in sorted(experiments.items()):
        stem = stem_of(f"{prefix}_agentic_{traces}")
        title = f"{prefix} agentic-coding ({traces})"
        written += _plot(erows, title, out_dir, stem, parallelism)
    return written


Y = tuple[str, str, str]  # column, label suffix, line style


def _plot(rows: list[dict[str, Any]], title: str, out_dir: Path, stem: str,
          parallelism: Callable[[dict[str, Any]], str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds: list[tuple[str, str, list[Y], str, str]] = [
        ("intvty_vs_tput", HEADLINE, [("tput_per_gpu", "", "-")],
         "E2E-normalised interactivity p90 (tok/s/user)", "token throughput per GPU (tok/s)"),
        ("cache_hit_vs_conc", "conc", [("srv_prefix_cache_hit_rate", " server GPU", "-"),
                                       ("srv_cpu_prefix_cache_hit_rate", " server DRAM", ":"),
                                       ("agentic_theoretical_cache_hit_rate", " theoretical", "--")],
         "concurrency", "prefix-cache hit rate"),
        ("ttft_vs_conc", "conc", [("agentic_ttft_p50", " p50", "--"), ("agentic_ttft_p90", " p90", "-")],
         "concurrency", "TTFT (s)"),
    ]
    series: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault(setup(r, parallelism), []).append(r)
    written = []
    for name, x, ys, xlabel, ylabel in kinds:
        fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
        for i, (label, srows) in enumerate(sorted(series.items())):
            color = f"C{i % 10}"
            for (column, suffix, style), marker in zip(ys, "os^"):  # a marker per figure: single dots differ
                pts = sorted((r[x], r[column]) for r in srows if _finite(r.get(x), r.get(column)))
                if pts:
                    ax.plot(*zip(*pts), marker=marker, linestyle=style, color=color, label=label + suffix)
        if x == "conc":
            figures.conc_axis(ax)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{title}: {ylabel} vs {xlabel.split(' (')[0]}")
        written.append(figures.save(fig, ax, out_dir / f"{stem}_agentic_{name}.png"))
    return written
