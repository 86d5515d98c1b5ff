"""Markdown summary and PNG plots of a merged table (matplotlib, Agg backend: no display)."""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ixhpc import atomic
from ixhpc.bench import validity
from ixhpc.evals import report as eval_report
from ixhpc.results import agentic_report, export, figures

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas
    from matplotlib.collections import PathCollection

# merged-table column for each report filter
FILTERS = {"hw": "runner", "framework": "framework", "model_prefix": "model_prefix",
           "isl": "isl", "osl": "osl", "precision": "precision"}
X_INTVTY = "median_intvty"


def filtered(df: pandas.DataFrame, **wanted: Sequence[Any] | None) -> pandas.DataFrame:
    """Rows matching every given filter (each filter is a list of accepted values)."""
    for name, values in wanted.items():
        if values:
            column = FILTERS[name]
            if column not in df:
                return df.iloc[0:0]
            df = df[df[column].isin(list(values))]
    return df


def parallelism(row: dict[str, Any]) -> str:
    if row.get("disagg") or row.get("prefill_tp") is not None:
        def side(role: str) -> str:
            return (f"{row.get(f'{role}_num_worker') or 1}x tp{row.get(f'{role}_tp')}"
                    f"{_ep(row.get(f'{role}_ep'))}{' dpa' if row.get(f'{role}_dp_attn') else ''}")
        return f"P {side('prefill')} / D {side('decode')}"
    return f"tp{row.get('tp')}{_ep(row.get('ep'))}{' dpa' if row.get('dp_attn') else ''}"


def _ep(ep: Any) -> str:
    return f" ep{ep}" if ep and ep > 1 else ""


def _num(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * scale:,.{digits}f}"


def series(row: dict[str, Any]) -> str:
    """A plot series: one hardware/framework (and precision, spec decoding, disagg) setup."""
    parts = [row.get("runner"), row.get("framework"), row.get("precision")]
    if row.get("spec_decoding") not in (None, "none"):
        parts.append(row["spec_decoding"])
    if row.get("disagg"):
        parts.append("disagg")
    return " ".join(str(p) for p in parts if p)


_SORT = ["runner", "framework", "precision", "isl", "osl", "disagg", "tp", "prefill_tp", "decode_tp", "conc"]


def _verdict(r: dict[str, Any]) -> str:
    """A row's validity verdict (unknown: judged before the gate existed)."""
    v = r.get("validity")
    return v if v in validity.VERDICTS else validity.UNKNOWN


def _client(r: dict[str, Any]) -> str:
    """Which load generator measured the row: ixhpc's own, or InferenceX's script's client."""
    client = r.get("bench_client")
    return str(client) if isinstance(client, str) and client else "ixhpc"


def markdown(df: pandas.DataFrame, include_invalid: bool = False) -> str:
    ok = export.records(export.ok_rows(df, include_invalid).sort_values([c for c in _SORT if c in df],
                                                                        na_position="first"))
    extra = " validity |" if include_invalid else ""  # only then can a row be invalid
    lines = [
        "| hw | framework | client | precision | isl/osl | parallelism | conc | tput/GPU (tok/s) "
        "| output tok/J | GPU power (W) "
        "| TTFT p50 (ms) | TTFT p99 (ms) | interactivity p50 (tok/s/user) |" + extra,
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---|" if extra else ""),
    ]
    for r in ok:
        lines.append(
            f"| {r.get('runner')} | {r.get('framework')} | {_client(r)} | {r.get('precision')} "
            f"| {agentic_report.lengths(r)} "
            f"| {parallelism(r)} | {r.get('conc')} | {_num(r.get('tput_per_gpu'))} "
            f"| {_num(r.get('output_tokens_per_joule'), digits=3)} | {_num(r.get('avg_power_w'))} "
            f"| {_num(r.get('median_ttft'), 1000)} | {_num(r.get('p99_ttft'), 1000)} "
            f"| {_num(r.get(X_INTVTY))} |" + (f" {_verdict(r)} |" if extra else ""))
    failed = export.records(df[df["failure"].notna()]) if "failure" in df else []
    invalid = export.records(export.invalid_rows(df))
    text = f"# Benchmark summary\n\n{len(ok)} points"
    notes = [f"{len(failed)} failed"] if failed else []
    if invalid:
        notes.append(f"{len(invalid)} invalid, {'shown' if include_invalid else 'left out'}")
    text += f" ({'; '.join(notes)}; listed below)\n\n" if notes else "\n\n"
    text += "\n".join(lines) + "\n"
    text += _server_section(ok) + _power_section(ok) + _slo_section(ok)
    text += eval_report.section(export.records(df))  # every point that ran evals, eval-only ones too
    text += agentic_report.section(ok, parallelism)
    text += _custom_section(export.records(df))
    if failed:
        text += "\n## Failed points\n\n" + "".join(
            f"- `{r.get('point_key')}` (job {r.get('job_id')}): {r.get('failure')}\n" for r in failed)
    if invalid:
        text += ("\n## Invalid points (validity gate; `--include-invalid` shows them above)\n\n" + "".join(
            f"- `{r.get('point_key')}` (job {r.get('job_id')}): {r.get('validity_reasons') or 'invalid'}\n"
            for r in invalid))
    return text


SERVER_COLUMNS = (("srv_running_mean", "running", 1.0, 1), ("srv_waiting_mean", "waiting", 1.0, 1),
                  ("srv_kv_cache_usage_mean", "KV cache %", 100.0, 1),
                  ("srv_prefix_cache_hit_rate", "prefix hit %", 100.0, 1),
                  ("srv_preemptions", "preemptions", 1.0, 0),
                  ("srv_prefill_tokens_per_s", "prefill tok/s", 1.0, 0),
                  ("srv_decode_tokens_per_s", "decode tok/s", 1.0, 0))


def _custom_section(rows: list[dict[str, Any]]) -> str:
    """Custom benchmarks (srt-slurm ``benchmark.type: custom``): their output is their own, so
    the point is the step: exit status, wall time and log (no throughput figures above)."""
    custom = [r for r in rows if r.get("custom_exit_status") is not None]
    if not custom:
        return ""
    return ("\n## Custom benchmarks (the command's own output is in its log; no throughput measured)\n\n"
            "| point | job | exit status | wall time (s) | log |\n|---|---|---:|---:|---|\n" + "".join(
                f"| `{r.get('point_key')}` | {r.get('job_id')} | {r.get('custom_exit_status')} "
                f"| {_num(r.get('custom_wall_s'))} | `{r.get('custom_log')}` |\n" for r in custom))


def _server_section(rows: list[dict[str, Any]]) -> str:
    """The engines' own figures over each benchmark (means; ixhpc.bench.servermetrics)."""
    rows = [r for r in rows if _finite(r.get("srv_scrapes")) and r.get("srv_scrapes")]
    if not rows:
        return ""
    head = "| point | conc | " + " | ".join(t for _, t, _, _ in SERVER_COLUMNS) + " |"
    lines = ["\n## Server metrics (engines' /metrics over the benchmark)\n", head,
             "|---|---:|" + "---:|" * len(SERVER_COLUMNS)]
    for r in rows:
        lines.append(f"| `{r.get('point_key')}` | {r.get('conc')} | " + " | ".join(
            _num(r.get(c), scale, digits) for c, _, scale, digits in SERVER_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _power_section(rows: list[dict[str, Any]]) -> str:
    """GPU power and energy per point (ixhpc.results.power), with the reasons it is not valid."""
    rows = [r for r in rows if r.get("power_valid") is not None and not (
        isinstance(r.get("power_valid"), float) and math.isnan(r["power_valid"]))]
    if not rows:
        return ""
    lines = ["\n## GPU power and energy (the benchmark's window)\n",
             "| point | conc | power valid | avg power (W) | energy (J) | J/output token "
             "| output tok/J | tput/GPU (tok/s) |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        valid = "yes" if r.get("power_valid") is True or r.get("power_valid") == 1 else (
            f"no ({r.get('power_reasons') or '?'})")
        lines.append(f"| `{r.get('point_key')}` | {r.get('conc')} | {valid} | {_num(r.get('avg_power_w'))} "
                     f"| {_num(r.get('total_gpu_energy_j'), digits=0)} "
                     f"| {_num(r.get('joules_per_output_token'), digits=4)} "
                     f"| {_num(r.get('output_tokens_per_joule'), digits=3)} | {_num(r.get('tput_per_gpu'))} |")
    return "\n".join(lines) + "\n"


def _slo_section(rows: list[dict[str, Any]]) -> str:
    """Each SLO search (``ixhpc submit --slo``): its probes and the highest concurrency met."""
    rows = [r for r in rows if isinstance(r.get("slo_spec"), str) and r["slo_spec"]]
    if not rows:
        return ""
    lines = ["\n## SLO search (highest concurrency, or request rate, meeting the objectives; ixhpc.slo)\n",
             "| setup | parallelism | SLO | probes (conc: goodput fraction) | answer |", "|---|---|---|---|---:|"]
    searches = _groups(rows, lambda r: (series(r), parallelism(r), r.get("isl"), r.get("osl"), r["slo_spec"]))
    for (label, par, _, _, spec), srows in sorted(searches.items(), key=str):
        rate = _finite(srows[0].get("slo_burstiness"))  # a rate search: its point is the chosen rate's probe
        probes = ", ".join(f"{r.get('conc')}{_at_rate(r) if rate else ''}: {_num(r.get('goodput_fraction'), digits=2)}"
                           f"{' met' if r.get('slo_met') is True else ' missed'}"
                           for r in sorted(srows, key=lambda r: r.get("conc") or 0))
        answer = srows[0].get("slo_answer")
        shown = answer if isinstance(answer, (int, float)) and _finite(answer) and answer >= 0 else "none"
        if rate and shown != "none":
            shown = f"{srows[0].get('request_rate'):g} req/s at {shown}"
        lines.append(f"| {label} | {par} | {spec} | {probes} | {shown} |")
    return "\n".join(lines) + "\n"


def _at_rate(row: dict[str, Any]) -> str:
    return f" @ {row.get('request_rate'):g}/s"


def _slo_line(ax: Any, rows: list[dict[str, Any]]) -> None:
    """The TPOT objective as interactivity (1000 / TPOT ms): points right of it meet it."""
    limits = sorted({r["slo_tpot_ms"] for r in rows if _finite(r.get("slo_tpot_ms")) and r["slo_tpot_ms"] > 0})
    for tpot in limits:
        ax.axvline(1000.0 / tpot, color="crimson", linestyle="--", linewidth=1,
                   label=f"SLO: TPOT <= {tpot:g} ms ({1000.0 / tpot:g} tok/s/user)")


def _slo_probes(ax: Any, rows: list[dict[str, Any]]) -> None:
    """Each SLO search's probes, ringed when they met the objectives and crossed when they
    missed them (a TTFT or goodput miss has no line to show it), with their concurrency."""
    probes = [r for r in rows if isinstance(r.get("slo_spec"), str) and r["slo_spec"]
              and _finite(r.get(X_INTVTY), r.get("tput_per_gpu"))]
    for spec, srows in sorted(_groups(probes, lambda r: r["slo_spec"]).items()):
        for met in (True, False):
            pts = [(r[X_INTVTY], r["tput_per_gpu"]) for r in srows if (r.get("slo_met") in (True,)) == met]
            if pts:
                style = ({"marker": "o", "facecolors": "none", "edgecolors": "green", "s": 120, "linewidths": 1.5}
                         if met else {"marker": "x", "color": "crimson", "s": 90})
                ax.scatter(*zip(*pts), zorder=3, label=f"SLO {spec}: probe {'met' if met else 'missed'}", **style)
            if pts and met:  # the frontier within the SLO: what the search offers
                ax.plot(*zip(*pareto(pts)), color="green", linestyle=":", linewidth=1.5, zorder=2,
                        label=f"SLO {spec}: frontier of the probes meeting it")
        for r in srows:
            ax.annotate(f"c{r.get('conc')}", (r[X_INTVTY], r["tput_per_gpu"]), textcoords="offset points",
                        xytext=(7, 5), fontsize=7)


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both axes (higher is better on both), by rising x."""
    front: list[tuple[float, float]] = []
    best_y = -math.inf
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if y > best_y:
            front.append((x, y))
            best_y = y
    return front[::-1]


def _groups(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return out


def _finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _rgb(dots: PathCollection) -> npt.NDArray[np.float64]:
    """The RGB colour of a scatter's first dot."""
    # cast: a PathCollection's face colours are an (N, 4) RGBA array; the stubs say ColorType
    return cast("npt.NDArray[np.float64]", dots.get_facecolor())[0, :3]


def plot_experiment(rows: list[dict[str, Any]], title: str, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for kind in ("pareto", "conc"):
        fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
        for label, srows in sorted(_groups(rows, series).items()):
            if kind == "pareto":
                pts = [(r[X_INTVTY], r["tput_per_gpu"]) for r in srows
                       if _finite(r.get(X_INTVTY), r.get("tput_per_gpu"))]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                dots = ax.scatter(xs, ys, s=18, alpha=0.45)
                ax.plot(*zip(*pareto(pts)), marker="o", color=_rgb(dots), label=label)
            else:
                pts = [(r["conc"], r["tput_per_gpu"]) for r in srows if _finite(r.get("conc"), r.get("tput_per_gpu"))]
                if not pts:
                    continue
                best: dict[float, float] = {}
                for c, y in pts:  # several setups per concurrency: the line follows the best
                    best[c] = max(y, best.get(c, -math.inf))
                xs, ys = zip(*pts)
                dots = ax.scatter(xs, ys, s=18, alpha=0.45)
                ax.plot(*zip(*sorted(best.items())), marker="o", color=_rgb(dots),
                        label=f"{label} (best per concurrency)")
        if kind == "pareto":
            every = [(r[X_INTVTY], r["tput_per_gpu"]) for r in rows if _finite(r.get(X_INTVTY), r.get("tput_per_gpu"))]
            if len(_groups(rows, series)) > 1 and every:  # the experiment's frontier over every setup
                ax.plot(*zip(*pareto(every)), color="black", linewidth=3, alpha=0.3, zorder=1,
                        label="Pareto frontier, all setups")
            _slo_line(ax, rows)
            _slo_probes(ax, rows)
            ax.set(xlabel="interactivity, median (tok/s/user)", ylabel="token throughput per GPU (tok/s)",
                   title=f"{title}: throughput vs interactivity (lines: Pareto frontier)")
        else:
            figures.conc_axis(ax)
            ax.set(xlabel="concurrency", ylabel="token throughput per GPU (tok/s)",
                   title=f"{title}: throughput vs concurrency")
        path = out_dir / f"{stem}_{'tput_vs_intvty' if kind == 'pareto' else 'tput_vs_conc'}.png"
        written.append(figures.save(fig, ax, path))
    return written


STEM_MAX = 120  # bytes: the longest plot suffix and ".png" stay far below NAME_MAX (255)


def plot_stem(text: str) -> str:
    """A file-name stem for ``text``: safe characters only; a long one cut and given a hash
    of the whole, so distinct experiments keep distinct names."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).lstrip(".") or "-"
    if len(stem) <= STEM_MAX:
        return stem
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{stem[:STEM_MAX - 17]}-{digest}"


def write_report(df: pandas.DataFrame, out_dir: str | os.PathLike[str], include_invalid: bool = False) -> list[Path]:
    """summary.md plus two plots per experiment (model prefix, isl, osl); returns the files.
    Points the validity gate judged invalid are listed, not compared, unless ``include_invalid``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.md"
    atomic.write_text(summary, markdown(df, include_invalid))
    written = [summary]
    rows = export.records(export.ok_rows(df, include_invalid))
    written += agentic_report.plots(rows, out, plot_stem, parallelism)  # their own experiments
    rows = [r for r in rows if not agentic_report.is_agentic(r)]
    experiments = _groups(rows, lambda r: (r.get("model_prefix"), r.get("isl"), r.get("osl")))
    for (prefix, isl, osl), erows in sorted(experiments.items(), key=str):
        title = f"{prefix} isl={isl} osl={osl}"
        written += plot_experiment(erows, title, out, plot_stem(f"{prefix}_{isl}_{osl}"))
    return written
