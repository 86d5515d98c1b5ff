"""GPU energy of one benchmark from the power samplers' readings (``ixhpc.job.power``).

The rules of InferenceX's ``aggregate_power.py`` (integration method
``per_device_trapezoidal_with_linear_boundary_interpolation``, as its power-validation
sidecar names it); the constants are ixhpc's where InferenceX's own are not published:

* the window is the benchmark's own (``start_unix`` .. ``end_unix`` of the bench JSON's clock);
* per device, samples sorted by time, non-finite or negative readings dropped; the power at
  each window edge is interpolated linearly between the samples on either side of it (held
  from the nearest sample when there is none on one side);
* energy is the trapezoid integral of the device's power over the window;
* a device is invalid when it has fewer than ``MIN_SAMPLES`` samples in or around the window,
  when two consecutive samples (a window edge counts as a sample where nothing brackets it)
  are more than ``MAX_GAP_S`` apart, or when its samples cover less than ``MIN_COVERAGE`` of
  the window;
* the point's power is valid when every device is, and the devices seen (per role, and in
  all) are the devices expected.

Figures (``metrics``, empty when power is invalid, as InferenceX): ``avg_power_w`` (all
devices, energy / window), ``total_gpu_energy_j``, ``joules_per_output_token``,
``joules_per_input_token``, ``joules_per_total_token``, ``joules_per_request``,
``output_tokens_per_joule``, and per role kind ``<kind>_avg_power_w``, ``<kind>_gpu_energy_j``.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
METHOD = "per_device_trapezoidal_with_linear_boundary_interpolation"
MAX_GAP_S = 3.0       # InferenceX's gap rule
MIN_COVERAGE = 0.95   # share of the window the device's samples must span
MIN_SAMPLES = 2       # in or around the window, per device

Samples = dict[str, tuple[np.ndarray, np.ndarray]]  # device -> (unix times, watts)


def read_csvs(paths: Iterable[str | os.PathLike[str]]) -> tuple[Samples, dict[str, str]]:
    """(device -> samples, device -> role) from the samplers' CSV files (bad rows skipped)."""
    rows: dict[str, list[tuple[float, float]]] = {}
    roles: dict[str, str] = {}
    for path in paths:
        with open(path, encoding="utf-8", newline="") as fh:
            for rec in csv.DictReader(fh):
                try:
                    t, w, dev = float(rec["unix_time"]), float(rec["power_w"]), rec["device"]
                except (KeyError, TypeError, ValueError):
                    continue
                rows.setdefault(dev, []).append((t, w))
                if rec.get("role"):
                    roles[dev] = str(rec["role"])
    samples = {}
    for dev, pts in rows.items():
        arr = np.asarray(pts, dtype=np.float64)
        samples[dev] = (arr[:, 0], arr[:, 1])
    return samples, roles


def role_kind(role: str) -> str:
    return role.split("-", 1)[0] if role else "unassigned"


def integrate(t: np.ndarray, w: np.ndarray, t0: float, t1: float) -> dict[str, Any]:
    """One device over [t0, t1]: energy (J), samples used, largest gap, coverage, issues."""
    ok = np.isfinite(t) & np.isfinite(w) & (w >= 0)
    order = np.argsort(t[ok], kind="stable")
    t, w = t[ok][order], w[ok][order]
    t, first = np.unique(t, return_index=True)  # one reading per instant
    w = w[first]
    before = int(np.searchsorted(t, t0, side="right")) - 1   # last sample at or before t0
    after = int(np.searchsorted(t, t1, side="left"))          # first sample at or after t1
    lo, hi = max(before, 0), min(after, len(t) - 1)
    used_t, used_w = t[lo:hi + 1], w[lo:hi + 1]
    issues: list[str] = []
    if len(used_t) < MIN_SAMPLES:
        return {"energy_j": math.nan, "samples": int(len(used_t)), "max_gap_s": math.nan,
                "coverage": 0.0, "issues": ["too_few_samples"]}
    # the edges: interpolated between bracketing samples, else held from the nearest
    w0 = float(np.interp(t0, used_t, used_w))
    w1 = float(np.interp(t1, used_t, used_w))
    inner = (used_t > t0) & (used_t < t1)
    xs = np.concatenate(([t0], used_t[inner], [t1]))
    ys = np.concatenate(([w0], used_w[inner], [w1]))
    energy = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))
    edges = np.concatenate(([min(t0, float(used_t[0]))], used_t, [max(t1, float(used_t[-1]))]))
    max_gap = float(np.max(np.diff(edges)))
    coverage = (min(t1, float(used_t[-1])) - max(t0, float(used_t[0]))) / (t1 - t0)
    if max_gap > MAX_GAP_S:
        issues.append("sample_gap_exceeds_limit")
    if coverage < MIN_COVERAGE:
        issues.append("insufficient_coverage")
    return {"energy_j": energy, "samples": int(len(used_t)), "max_gap_s": max_gap,
            "coverage": max(0.0, coverage), "issues": issues}


def aggregate(samples: Samples, roles: dict[str, str], window: dict[str, Any] | None,
              expected: dict[str, int], telemetry: str = "") -> dict[str, Any]:
    """The point's power verdict and figures. ``expected``: role kind -> GPU count;
    ``window``: start_unix, end_unix and the benchmark's completed / token counts."""
    reasons: list[str] = []
    expected_total = sum(expected.values())
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "power_valid": False, "reasons": reasons,
        "telemetry_source": telemetry, "benchmark_window": window, "integration_method": METHOD,
        "constants": {"max_gap_s": MAX_GAP_S, "min_coverage": MIN_COVERAGE, "min_samples": MIN_SAMPLES},
        "expected_gpu_count": expected_total, "expected_gpu_count_per_role": dict(expected),
        "observed_gpu_count": len(samples), "observed_gpu_ids": sorted(samples),
        "per_gpu_role": {d: role_kind(roles.get(d, "")) for d in sorted(samples)},
        "per_gpu_sample_counts": {}, "per_gpu_max_sample_gap_s": {}, "per_gpu_energy_j": {},
        "device_issues": {}, "metrics": {},
    }
    if not samples:
        reasons.append("telemetry_file_missing")
    t0 = float(window["start_unix"]) if window else math.nan
    t1 = float(window["end_unix"]) if window else math.nan
    if not (math.isfinite(t0) and math.isfinite(t1) and t1 > t0):
        reasons.append("invalid_benchmark_window")
        return doc
    observed: dict[str, int] = {}
    energy_by_kind: dict[str, float] = {}
    for dev in sorted(samples):
        res = integrate(*samples[dev], t0, t1)
        kind = doc["per_gpu_role"][dev]
        observed[kind] = observed.get(kind, 0) + 1
        doc["per_gpu_sample_counts"][dev] = res["samples"]
        doc["per_gpu_max_sample_gap_s"][dev] = res["max_gap_s"]
        doc["per_gpu_energy_j"][dev] = res["energy_j"]
        if res["issues"]:
            doc["device_issues"][dev] = res["issues"]
        else:
            energy_by_kind[kind] = energy_by_kind.get(kind, 0.0) + res["energy_j"]
    doc["observed_gpu_count_per_role"] = observed
    if samples and len(samples) != expected_total:
        reasons.append("gpu_count_mismatch")
    elif samples and any(observed.get(k, 0) != n for k, n in expected.items()):
        reasons.append("gpu_role_count_mismatch")
    for issue in sorted({i for issues in doc["device_issues"].values() for i in issues}):
        reasons.append(issue)
    if reasons:
        return doc
    doc["power_valid"] = True
    span = t1 - t0
    total = sum(energy_by_kind.values())
    w = window or {}
    out_tok, in_tok = float(w.get("total_output_tokens", 0)), float(w.get("total_input_tokens", 0))
    completed = float(w.get("completed", 0))
    m: dict[str, float] = {"avg_power_w": total / span, "total_gpu_energy_j": total,
                           "joules_per_output_token": total / out_tok if out_tok else math.nan,
                           "joules_per_input_token": total / in_tok if in_tok else math.nan,
                           "joules_per_total_token": total / (in_tok + out_tok) if in_tok + out_tok else math.nan,
                           "joules_per_request": total / completed if completed else math.nan,
                           "output_tokens_per_joule": out_tok / total if total > 0 else math.nan}
    if len(energy_by_kind) > 1:
        for kind, e in sorted(energy_by_kind.items()):
            m[f"{kind}_avg_power_w"] = e / span
            m[f"{kind}_gpu_energy_j"] = e
    doc["metrics"] = m
    return doc


def for_point(csvs: list[Path], bench: dict[str, Any], expected: dict[str, int]) -> tuple[dict[str, Any], Samples]:
    """The verdict of one benchmark from its job's sampler files, and the samples in its window
    (times relative to the benchmark's start) for the point file."""
    samples, roles = read_csvs(p for p in csvs if p.is_file())
    clock = bench.get("clock") or {}
    summary = bench.get("summary", {})
    window = None
    if "start_unix" in clock and "end_unix" in clock:
        window = {"start_time_unix": clock["start_unix"], "end_time_unix": clock["end_unix"],
                  "start_unix": clock["start_unix"], "end_unix": clock["end_unix"],
                  "integration_duration_s": clock["end_unix"] - clock["start_unix"],
                  "completed": summary.get("completed", 0),
                  "total_input_tokens": summary.get("total_input_tokens", 0),
                  "total_output_tokens": summary.get("total_output_tokens", 0)}
    doc = aggregate(samples, roles, window, expected, ",".join(p.name for p in csvs))
    kept: Samples = {}
    if window:
        t0, t1 = window["start_unix"], window["end_unix"]
        for dev, (t, w) in samples.items():
            sel = (t >= t0 - MAX_GAP_S) & (t <= t1 + MAX_GAP_S)
            kept[dev] = (t[sel] - t0, w[sel])
    return doc, kept
