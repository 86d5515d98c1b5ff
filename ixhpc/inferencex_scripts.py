"""Script mode: run InferenceX's own single-node benchmark scripts (docs/inferencex-scripts.md).

InferenceX keeps its per-configuration tuning in bash scripts under ``benchmarks/``; its
launchers pick one script per matrix row and run it inside the row's image with the
checkout mounted at ``/workspace`` and the environment its workflow template sets. This
module is that choice and that environment, for a local InferenceX checkout:

* ``checkout_layout``: ``current`` (``benchmarks/single_node/`` exists) or ``march``
  (scripts directly under ``benchmarks/``).
* ``candidates``/``choose``: the script, exactly as the launchers spell it. Current layout:
  ``benchmarks/single_node/<scenario-subdir><model-prefix>_<precision>_<hw>_<framework>[_mtp].sh``,
  falling back to the historical name without an engine suffix
  (``..._<hw>[_trt][_mtp].sh``: ``_trt`` for framework ``trt`` only). March layout:
  ``benchmarks/<model-prefix>_<precision>_<hw>[_trt][_mtp].sh``. ``<model-prefix>`` is
  ``EXP_NAME%%_*``, ``<hw>`` the runner label without ``cluster:`` up to its first ``-``
  (``cluster:b300-nv`` -> ``b300``), ``<scenario-subdir>`` ``fixed_seq_len/`` or ``agentic/``.
* ``environment``: the variables of InferenceX's benchmark workflow template
  (``.github/workflows/benchmark-tmpl.yml``) and of its launch step, as that template
  spells their values (GitHub renders booleans as ``true``/``false``).

Secrets are never values here: ``HF_TOKEN`` crosses into the step by name (the container
seam's ``env_names``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ixhpc.errors import ConfigError
from ixhpc.results.export import matrix_fingerprint

if TYPE_CHECKING:
    from ixhpc.sweep import RunPoint

ScriptLayout = Literal["current", "march"]
WORKSPACE = "/workspace"                 # where InferenceX's launchers mount the checkout
SCENARIO_SUBDIRS = {"fixed-seq-len": "fixed_seq_len/", "agentic-coding": "agentic/"}
# InferenceX's AMD launchers (launch_mi355x-*.sh, launch_mi325x-*.sh) add
# --container-writable --container-remap-root: their scripts write into the image.
WRITABLE_ROOT_HARDWARE = ("mi355x", "mi325x")
CLIENT = "inferencex-benchmark_serving"  # the client of a script-mode result (HDF5 bench_config)
# The workflow template's names, in its order, then its launch step's (docs/inferencex-scripts.md).
ENV_NAMES = (
    "PORT", "INFMAX_CONTAINER_WORKSPACE", "GPU_MONITOR_INTERVAL", "GPU_METRICS_CSV", "KEEP_LOGS",
    "IS_MULTINODE", "RANDOM_RANGE_RATIO", "HF_HUB_CACHE", "EXP_NAME", "RECIPE_FINGERPRINT", "MODEL",
    "THINKING_MODE", "MODEL_PREFIX", "ISL", "OSL", "MAX_MODEL_LEN", "IMAGE", "FRAMEWORK", "PRECISION",
    "TP", "PP_SIZE", "DCP_SIZE", "PCP_SIZE", "EP_SIZE", "DP_ATTENTION", "CONC", "SPEC_DECODING", "DISAGG",
    "RUN_EVAL", "EVAL_ONLY", "EVAL_FRAMEWORK", "EVAL_SUITE", "SCENARIO_TYPE", "SCENARIO_SUBDIR",
    "IS_AGENTIC", "KV_OFFLOADING", "KV_OFFLOAD_BACKEND", "KV_OFFLOAD_BACKEND_METADATA", "ROUTER_METADATA",
    "KV_P2P_TRANSFER", "TOTAL_CPU_DRAM_GB", "DURATION", "REQUIRE_POWER", "AIPERF_EXPERIMENTAL_FAST",
    "EVAL_LIMIT", "SWEBENCH_GEN_MODE", "AIPERF_FAILED_REQUEST_THRESHOLD", "RESULT_DIR",
    "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX",
    # the launch step's
    "RUNNER_NAME", "RUNNER_TYPE", "RESULT_FILENAME", "GPU_COUNT",
)
SECRET_NAMES = ("HF_TOKEN",)             # passed by name only, never a value


class ScriptNotFound(ConfigError):
    """No InferenceX script for a row in the checkout (the message names what was looked for)."""


def checkout_layout(checkout: Path) -> ScriptLayout:
    """Which launcher generation the checkout is: ``current`` or ``march``."""
    if (checkout / "benchmarks" / "single_node").is_dir():
        return "current"
    if (checkout / "benchmarks").is_dir():
        return "march"
    raise ConfigError(f"{checkout}: not an InferenceX checkout (no benchmarks/ folder)")


def hardware_code(runner: str) -> str:
    """The GPU name a launcher puts in a script name: ``cluster:b300-nv`` -> ``b300``."""
    return runner.removeprefix("cluster:").split("-", 1)[0]


def scenario_type(row: Mapping[str, Any]) -> str:
    return str(row.get("scenario-type") or "fixed-seq-len")


def _model_code(row: Mapping[str, Any]) -> str:
    return str(row["exp-name"]).split("_", 1)[0]   # ${EXP_NAME%%_*}


def candidates(layout: ScriptLayout, row: Mapping[str, Any]) -> list[str]:
    """The script paths a launcher tries for ``row``, in order (relative to the checkout)."""
    framework = str(row["framework"])
    spec = "_mtp" if row.get("spec-decoding") == "mtp" else ""
    legacy_fw = "_trt" if framework == "trt" else ""
    base = f"{_model_code(row)}_{row['precision']}_{hardware_code(str(row['runner']))}"
    if layout == "march":
        return [f"benchmarks/{base}{legacy_fw}{spec}.sh"]
    subdir = SCENARIO_SUBDIRS.get(scenario_type(row), "")
    out = [f"benchmarks/single_node/{subdir}{base}_{framework}{spec}.sh",
           f"benchmarks/single_node/{subdir}{base}{legacy_fw}{spec}.sh"]
    return list(dict.fromkeys(out))


def choose(checkout: Path, row: Mapping[str, Any]) -> str:
    """The script InferenceX runs for ``row`` in ``checkout`` (relative path)."""
    tried = candidates(checkout_layout(checkout), row)
    for rel in tried:
        if (checkout / rel).is_file():
            return rel
    raise ScriptNotFound(f"no InferenceX script for {row.get('exp-name')} {row.get('precision')} "
                         f"{row.get('runner')} {row.get('framework')} (spec-decoding "
                         f"{row.get('spec-decoding')}) in {checkout}: looked for {', '.join(tried)}")


def _gh(value: Any) -> str:
    """A value as a GitHub expression renders it into the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def result_filename(row: Mapping[str, Any], runner_name: str, conc: str | None = None) -> str:
    """``RESULT_FILENAME`` as the workflow template spells it (its RESULT_FILENAME_BASE)."""
    c = _gh(row.get("conc")) if conc is None else conc
    return (f"{row['exp-name']}_{row['precision']}_{row['framework']}_tp{row['tp']}-pp{row.get('pp', 1)}"
            f"-dcp{row.get('dcp-size', 1)}-pcp{row.get('pcp-size', 1)}-ep{row['ep']}"
            f"-dpa{_gh(row['dp-attn'])}_disagg-{_gh(row.get('disagg', False))}"
            f"_spec-{row['spec-decoding']}_conc{c}_{runner_name}")


@dataclasses.dataclass(frozen=True)
class Site:
    """What the environment needs beyond the row: where things are on this cluster."""

    model: str                  # the MODEL value: a local path or the Hugging Face name
    hf_hub_cache: str = ""      # "" : not set (the step inherits the submitting shell's, if any)
    port: str = "8888"
    runner_name: str = "ixhpc_0"
    random_range_ratio: str = "0.8"
    conc: str | None = None     # None: the row's; else e.g. "${CONC}" (the job's loop variable)
    run_eval: str | None = None   # None: the row's; else "${RUN_EVAL}" (set per concurrency)
    eval_only: str | None = None  # likewise EVAL_ONLY
    eval_limit: str = ""          # EVAL_LIMIT (the recipe's ixhpc.eval.limit)


def environment(row: Mapping[str, Any], site: Site) -> list[tuple[str, str]]:
    """The environment InferenceX's workflow sets for ``row`` (ENV_NAMES, in order)."""
    agentic = scenario_type(row) == "agentic-coding"
    conc = _gh(row.get("conc")) if site.conc is None else site.conc
    backend = row.get("kv-offload-backend")
    tp, pp, pcp = int(row["tp"]), int(row.get("pp", 1)), int(row.get("pcp-size", 1))
    values: dict[str, str] = {
        "PORT": site.port, "INFMAX_CONTAINER_WORKSPACE": WORKSPACE, "GPU_MONITOR_INTERVAL": "1",
        "GPU_METRICS_CSV": "gpu_metrics.csv", "KEEP_LOGS": "0", "IS_MULTINODE": "false",
        "RANDOM_RANGE_RATIO": site.random_range_ratio, "HF_HUB_CACHE": site.hf_hub_cache,
        "EXP_NAME": str(row["exp-name"]), "RECIPE_FINGERPRINT": matrix_fingerprint(row),
        "MODEL": site.model, "THINKING_MODE": "thinking_on", "MODEL_PREFIX": str(row["model-prefix"]),
        "ISL": "0" if agentic else _gh(row.get("isl")), "OSL": "0" if agentic else _gh(row.get("osl")),
        "MAX_MODEL_LEN": "0" if agentic else _gh(row.get("max-model-len")),
        "IMAGE": str(row["image"]), "FRAMEWORK": str(row["framework"]), "PRECISION": str(row["precision"]),
        "TP": str(tp), "PP_SIZE": str(pp), "DCP_SIZE": _gh(row.get("dcp-size", 1)), "PCP_SIZE": str(pcp),
        "EP_SIZE": _gh(row["ep"]), "DP_ATTENTION": _gh(bool(row["dp-attn"])), "CONC": conc,
        "SPEC_DECODING": str(row["spec-decoding"]),
        "DISAGG": "false" if agentic else _gh(row.get("disagg", False)),
        "RUN_EVAL": _gh(bool(row.get("run-eval", False))) if site.run_eval is None else site.run_eval,
        "EVAL_ONLY": _gh(bool(row.get("eval-only", False))) if site.eval_only is None else site.eval_only,
        "EVAL_FRAMEWORK": "lm-eval", "EVAL_SUITE": "",
        "SCENARIO_TYPE": scenario_type(row), "SCENARIO_SUBDIR": SCENARIO_SUBDIRS.get(scenario_type(row), ""),
        "IS_AGENTIC": "1" if agentic else "0",
        "KV_OFFLOADING": _gh(row.get("kv-offloading")) if agentic else "",
        "KV_OFFLOAD_BACKEND": _gh(backend.get("name")) if agentic and isinstance(backend, dict) else "",
        "KV_OFFLOAD_BACKEND_METADATA": _json(backend) if agentic and backend else "",
        "ROUTER_METADATA": _json(row["router"]) if row.get("router") else "",
        "KV_P2P_TRANSFER": _gh(row.get("kv-p2p-transfer")),
        "TOTAL_CPU_DRAM_GB": _gh(row.get("total-cpu-dram-gb")) if agentic else "0",
        "DURATION": _gh(row.get("duration", 3600)), "REQUIRE_POWER": "0", "AIPERF_EXPERIMENTAL_FAST": "0",
        "EVAL_LIMIT": site.eval_limit, "SWEBENCH_GEN_MODE": "agentic", "AIPERF_FAILED_REQUEST_THRESHOLD": "0.10",
        "RESULT_DIR": f"{WORKSPACE}/results", "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPYCACHEPREFIX": "/tmp/inferencex-pycache",
        "RUNNER_NAME": site.runner_name, "RUNNER_TYPE": str(row["runner"]),
        "RESULT_FILENAME": result_filename(row, site.runner_name, conc),
        "GPU_COUNT": str(tp * pp * pcp),
    }
    return [(name, values[name]) for name in ENV_NAMES]


def _json(value: Any) -> str:
    # GitHub's toJSON: pretty-printed with two spaces
    return json.dumps(value, indent=2)


# ---------------------------------------------------------------- run points


def uses_script(point: RunPoint) -> bool:
    """Whether script mode runs this point: single-node and no ixhpc engine override."""
    from ixhpc.sweep import SinglePoint

    if not isinstance(point, SinglePoint):
        return False
    args = point.ixhpc.engine_args
    return not (args.server or args.prefill or args.decode or args.router)


def point_row(point: RunPoint, conc: int | None = None) -> dict[str, Any]:
    """The point as InferenceX's matrix row (at ``conc``: a single-node point has one)."""
    row = point.to_inferencex_row()
    if conc is not None:
        row["conc"] = conc
    return row


def script_errors(points: Sequence[RunPoint], checkout: Path) -> list[str]:
    """A located error per script-mode point whose script the checkout lacks."""
    try:
        checkout_layout(checkout)
    except ConfigError as exc:
        return list(exc.errors)
    errors: dict[str, str] = {}
    for p in points:
        if not uses_script(p):
            continue
        try:
            choose(checkout, point_row(p))
        except ScriptNotFound as exc:
            errors.setdefault(f"{p.source}: {p.config_key}: {exc.errors[0]}", "")
    return list(errors)


@dataclasses.dataclass(frozen=True)
class ScriptEval:
    """One concurrency's eval marks for the script, and the ingest's eval options ("" none)."""

    conc: int
    run_eval: str          # RUN_EVAL, EVAL_ONLY as the workflow spells them
    eval_only: str
    ingest_args: str


def script_evals(group: Sequence[RunPoint]) -> tuple[ScriptEval, ...]:
    """Per concurrency of a script-mode job: whether the script runs lm-eval (the point's
    ``run-eval``/``eval-only`` marks or its ``ixhpc.eval`` block: ixhpc.evals.plan) and what its
    ingest stores of it (docs/evals.md, script mode)."""
    from ixhpc.evals import plan

    return tuple(ScriptEval(c, _gh(plan.wanted(p)), _gh(plan.wanted(p) and plan.eval_only(p)),
                            plan.script_ingest_args(p, c))
                 for p in group for c in p.conc)


def eval_limit(group: Sequence[RunPoint]) -> str:
    limits = {p.ixhpc.eval.limit for p in group if p.ixhpc.eval is not None}
    return _gh(limits.pop()) if len(limits) == 1 else ""


def writable_root(runner: str) -> bool:
    return hardware_code(runner) in WRITABLE_ROOT_HARDWARE
