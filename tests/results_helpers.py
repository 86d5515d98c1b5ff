"""Realistic synthetic ixhpc.bench results and run-point metadata for the results tests."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def bench_result(n: int = 32, osl: int = 64, isl: int = 128, seed: int = 0, failed: int = 1,
                 itl_ms: float = 20.0, ttft_ms: float = 150.0, conc: int = 8) -> dict[str, Any]:
    """A bench JSON document as the contract describes it, with ``failed`` failed requests."""
    rng = np.random.default_rng(seed)
    in_len = rng.integers(int(isl * 0.8), isl + 1, n)
    out_len = rng.integers(max(2, int(osl * 0.8)), osl + 1, n)
    ok = np.ones(n, bool)
    ok[:failed] = False
    ttft = rng.lognormal(math.log(ttft_ms), 0.3, n)
    gaps = [rng.gamma(8.0, itl_ms / 8.0, int(o) - 1) if s else np.empty(0) for o, s in zip(out_len, ok)]
    e2el = ttft + np.array([g.sum() for g in gaps])
    tpot = (e2el - ttft) / (out_len - 1)
    for arr in (ttft, tpot, e2el):
        arr[~ok] = math.nan
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum([g.size for g in gaps], out=offsets[1:])
    itl = np.round(np.concatenate(gaps), 4)
    duration = float(np.nanmax(e2el) / 1e3 * n / conc)
    tot_in, tot_out = int(in_len[ok].sum()), int(out_len[ok].sum())
    summary: dict[str, Any] = {
        "completed": int(ok.sum()), "failed": int(n - ok.sum()), "duration": duration,
        "total_input_tokens": tot_in, "total_output_tokens": tot_out,
        "request_throughput": ok.sum() / duration, "output_throughput": tot_out / duration,
        "total_token_throughput": (tot_in + tot_out) / duration,
        "max_concurrency": conc, "num_prompts": n, "request_rate": math.inf,
    }
    for name, values in (("ttft", ttft[ok]), ("tpot", tpot[ok]), ("itl", itl), ("e2el", e2el[ok])):
        summary[f"mean_{name}_ms"] = float(values.mean())
        summary[f"std_{name}_ms"] = float(values.std())
        for stat, q in (("median", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)):
            summary[f"{stat}_{name}_ms"] = float(np.percentile(values, q))
    return {
        "summary": summary,
        "requests": {
            "ttft_ms": ttft.tolist(), "tpot_ms": tpot.tolist(), "e2el_ms": e2el.tolist(),
            "input_len": in_len.tolist(), "output_len": np.where(ok, out_len, 0).tolist(),
            "success": ok.tolist(), "error": ["" if s else "HTTP 503: overloaded" for s in ok],
            "start_time": np.sort(rng.uniform(0, duration / 2, n)).round(6).tolist(),
            "itl_ms_values": itl.tolist(), "itl_ms_offsets": offsets.tolist(),
        },
        "config": {"base_url": "http://node1:8000", "model": "deepseek-ai/DeepSeek-R1", "isl": isl,
                   "osl": osl, "random_range_ratio": 0.8, "num_prompts": n, "max_concurrency": conc,
                   "request_rate": math.inf, "num_warmups": 2, "ignore_eos": True, "seed": seed},
        "failure": None,
    }


def metadata(conc: int = 8, runner: str = "b200", framework: str = "sglang", tp: int = 8,
             job_id: str = "1234", disagg: bool = False, isl: int = 1024, osl: int = 1024,
             precision: str = "fp4", **extra: Any) -> dict[str, Any]:
    """Run-point metadata as RunPoint.metadata() plus the job's fields produce it: built and
    checked by the one metadata model (``extra`` overrides or adds fields; it must fit too)."""
    from ixhpc.point_metadata import ADAPTER

    prefix = "dsr1"
    exp = {(1024, 1024): "1k1k", (1024, 8192): "1k8k", (8192, 1024): "8k1k"}.get((isl, osl), f"{isl}_{osl}")
    meta: dict[str, Any] = dict(
        point_key=f"{prefix}-{precision}-{runner}-{framework}-{exp}-tp{tp}-conc{conc}",
        config_key=f"{prefix}-{precision}-{runner}-{framework}",
        image=f"lmsysorg/{framework}:v0.5.0", model="deepseek-ai/DeepSeek-R1",
        model_prefix=prefix, precision=precision, framework=framework, runner=runner,
        cluster="local", isl=isl, osl=osl, max_model_len=isl + osl + 256,
        exp_name=f"{prefix}_{exp}", spec_decoding="none", disagg=disagg,
        multinode=disagg, run_eval=False, conc=conc,
        recipe_fingerprint="ab" * 32, job_id=job_id, node_list="node[1-2]",
        start_time="2025-01-01T00:00:00Z", end_time="2025-01-01T00:10:00Z",
        ixhpc_version="0.1.0",
    )
    if disagg:
        meta.update(prefill_num_worker=2, prefill_tp=4, prefill_ep=4, prefill_dp_attn=False,
                    decode_num_worker=1, decode_tp=8, decode_ep=8, decode_dp_attn=True,
                    prefill_nodes=2, decode_nodes=2, prefill_gpus=8, decode_gpus=8, nodes=4, gpus=16)
    else:
        meta.update(tp=tp, ep=1, dp_attn=False, nodes=1, gpus=tp)
    meta.update(extra)
    return ADAPTER.validate_python(meta).record()


def write_points(directory, count: int, start: int = 0, unchecked: dict[str, Any] | None = None,
                 **meta_extra: Any) -> list:
    """``count`` distinct point files named point-<i>.h5 in ``directory``; returns their paths.
    ``unchecked``: metadata fields the model would refuse, written anyway (as an older or
    foreign writer may have left them) to exercise the readers."""
    from ixhpc.results import write_point

    paths = []
    speed = meta_extra.pop("speed", 1.0)  # a faster GPU/engine: shorter gaps at every concurrency
    for i in range(start, start + count):
        conc = 2 ** (i % 8)
        path = directory / f"point-{i:04d}.h5"
        # decode slows down as the batch grows, as on a real server
        bench = bench_result(seed=i, n=16, osl=16, conc=conc, itl_ms=(6 + 1.2 * conc ** 0.8) / speed)
        meta = metadata(conc=conc, job_id=str(1000 + i), **meta_extra)
        if unchecked:
            write_unchecked_point(path, bench, {**meta, **unchecked})
        else:
            write_point(path, bench, meta)
        paths.append(path)
    return paths


def write_unchecked_point(path, bench: dict[str, Any], meta: dict[str, Any]) -> str:
    """A current-format point file with ``meta`` as it is, past the ingest check."""
    import dataclasses

    from ixhpc.results import ingest, store

    point = ingest.build_point(bench, metadata())
    return store.write(path, dataclasses.replace(point, metadata=meta))


def write_v1_point(path, bench: dict[str, Any], meta: dict[str, Any]) -> str:
    """A run-point file in the version 1 layout (one dataset per request column), as ixhpc
    wrote them before version 2; returns its result id. Written independently of the reader."""
    import hashlib
    import json

    import h5py

    from ixhpc.results import metrics

    req = bench["requests"]
    columns = {"ttft": ("f8", req["ttft_ms"]), "tpot": ("f8", req["tpot_ms"]), "e2el": ("f8", req["e2el_ms"]),
               "start_time": ("f8", req["start_time"]), "input_len": ("i4", req["input_len"]),
               "output_len": ("i4", req["output_len"]), "success": ("?", req["success"])}
    arrays = {name: np.asarray(values, dtype) for name, (dtype, values) in columns.items()}
    itl = np.asarray(req["itl_ms_values"], "f4")
    offsets = np.asarray(req["itl_ms_offsets"], "i8")
    index = np.asarray([i for i, e in enumerate(req["error"]) if e], "i8")
    text = [e for e in req["error"] if e]
    h = hashlib.sha256()
    for values in [*arrays.values(), itl, offsets, index]:
        h.update(values.tobytes())
    h.update("\0".join(text).encode())
    covered = {"metadata": meta, "summary": bench["summary"],
               "metrics": metrics.point_metrics(meta, bench["summary"]),
               "failure": bench["failure"] or "", "arrays_sha256": h.hexdigest()}
    result_id = hashlib.sha256(json.dumps(covered, sort_keys=True).encode()).hexdigest()
    record = {**covered, "format_version": 1, "n_requests": len(offsets) - 1, "result_id": result_id}
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs.update(meta)
        f.attrs.update(ixhpc_format="ixhpc-run-point", ixhpc_format_version=1, result_id=result_id,
                       n_requests=len(offsets) - 1, failure=covered["failure"], record=json.dumps(record))
        for group, values in (("summary", bench["summary"]), ("metrics", covered["metrics"]),
                              ("bench_config", {k: v for k, v in bench["config"].items() if v is not None})):
            f.create_group(group).attrs.update(values)
        g = f.create_group("requests")
        for name, values in arrays.items():
            g[name] = values
        g["itl_values"], g["itl_offsets"], g["error_index"] = itl, offsets, index
        g.create_dataset("error_text", data=text, dtype=h5py.string_dtype())
    return result_id
