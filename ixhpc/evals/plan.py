"""A job's eval steps: which of its points run lm-eval after their benchmark, at which eval
concurrencies, with which command line (docs/evals.md).

A point runs evals when it is marked ``run-eval`` (InferenceX's eval marking) or its entry's
``ixhpc.eval`` says ``run``/``only``; an eval-only point (``eval-only``, or ``only``) runs no
throughput benchmark and its engine serves the eval's context length. Its eval concurrencies
are the block's ``concurrencies``, else the point's ``eval-conc`` (multi-node), else every
concurrency (``eval-all-concs``), else its own. The eval client is one ``srun`` step per eval
concurrency, one after another against the same engine, in the point's container (or the
profile's ``eval-image``), offline (compute nodes may have no network).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from ixhpc import containers, shell
from ixhpc.errors import ConfigError
from ixhpc.evals import client, thresholds
from ixhpc.evals.tasks import LOCAL_TASK
from ixhpc.placement import Role, with_env
from ixhpc.profiles import ClusterProfile
from ixhpc.recipe import EvalSettings
from ixhpc.rundir import ScriptPaths
from ixhpc.sweep import RunPoint, SinglePoint

# Compute nodes may have no network: datasets and the hub are read from local caches only.
OFFLINE_ENV = ("HF_DATASETS_OFFLINE=1", "HF_HUB_OFFLINE=1")


@dataclasses.dataclass(frozen=True)
class EvalPoint:
    conc: int                  # the benchmark whose result file carries the eval
    eval_concs: tuple[int, ...]
    only: bool
    ingest_args: str           # the ingest step's eval (and power) options
    eval_args: str = ""        # its eval options alone (the debug shell samples no power)


@dataclasses.dataclass(frozen=True)
class EvalPlan:
    points: tuple[EvalPoint, ...]
    command: str               # the lm-eval srun line, over ${CONC} and ${ECONC} (and ${EVAL_PYTHON})
    prepare: str               # the eval image's import ("" none)
    local_task: bool           # render writes the local arithmetic task into the run
    install: str = ""          # the eval-install srun line (profile eval-wheelhouse; "" none)
    python: str = ""           # the eval's Python before that step ("" no install step)
    venv_python: str = ""      # the venv's, which lm-eval runs with when the step made one

    @property
    def after_concs(self) -> list[int]:
        """Benchmarks stored only after their eval."""
        return [e.conc for e in self.points if not e.only]

    @property
    def only_concs(self) -> list[int]:
        return [e.conc for e in self.points if e.only]


def settings(p: RunPoint) -> EvalSettings:
    return p.ixhpc.eval or EvalSettings()


def wanted(p: RunPoint) -> bool:
    e = p.ixhpc.eval
    return p.run_eval or p.eval_only or (e is not None and (e.run or e.only))


def eval_only(p: RunPoint) -> bool:
    e = p.ixhpc.eval
    return p.eval_only or (e is not None and e.only)


def context_length(p: RunPoint) -> int:
    """The engine's context for an eval-only point, as InferenceX's compute_eval_context_length:
    the benchmark's max-model-len capped at the model's native maximum (which only the
    weights know: ``ixhpc.eval.context-length`` sets it when it is smaller or more is needed)."""
    return settings(p).context_length or p.max_model_len


def engine_point(p: RunPoint) -> RunPoint:
    """The point the engine is launched for: an eval-only one serves the eval's context."""
    return p.model_copy(update={"max_model_len": context_length(p)}) if wanted(p) and eval_only(p) else p


def narrowed(p: RunPoint) -> RunPoint:
    """An eval-only multi-node point runs one eval, at one of its concurrencies: the others
    would never get a result (InferenceX's eval-only jobs run no throughput either)."""
    if isinstance(p, SinglePoint) or not (wanted(p) and eval_only(p)) or len(p.conc) == 1:
        return p
    kept = settings(p).model_copy(update={"concurrencies": list(eval_concs(p))})  # as before narrowing
    return p.model_copy(update={"conc": [_attach(p)], "eval_conc": _attach(p),
                                "ixhpc": p.ixhpc.model_copy(update={"eval": kept})})


def _attach(p: RunPoint) -> int:
    if isinstance(p, SinglePoint):
        return p.conc[0]
    return p.eval_conc if p.eval_conc is not None else max(p.conc)


def eval_concs(p: RunPoint) -> tuple[int, ...]:
    e = settings(p)
    if e.concurrencies:
        return tuple(e.concurrencies)
    return tuple(p.conc) if p.eval_all_concs else (_attach(p),)


def _ingest_args(p: RunPoint, power_args: str) -> str:
    e = settings(p)
    th = thresholds.load(e.thresholds, e.thresholds_file, Path(p.source).parent)
    args = [*(f"--eval-conc={c}" for c in eval_concs(p)),
            *(f"--eval-task={t}={thresholds.resolve(th, p.model_prefix, t)}" for t in e.tasks)]
    if eval_only(p):
        return shell.command([*args, "--eval-only"])
    return shell.command(args) + (f" {power_args}" if power_args else "")


def script_ingest_args(p: RunPoint, conc: int) -> str:
    """Script mode (InferenceX's own script runs lm-eval at the point's concurrency when
    RUN_EVAL is true): the serving ingest's eval options; "" when the point runs no eval."""
    if not wanted(p):
        return ""
    e = settings(p)
    th = thresholds.load(e.thresholds, e.thresholds_file, Path(p.source).parent)
    return shell.command([f"--eval-conc={conc}",
                          *(f"--eval-task={t}={thresholds.resolve(th, p.model_prefix, t)}" for t in e.tasks),
                          *(["--eval-only"] if eval_only(p) else [])])


def _argv(p: RunPoint, front: Role, python: str) -> list[str]:
    e = settings(p)
    if LOCAL_TASK in e.tasks and e.task_dir:
        raise ConfigError([f"{p.source}: {p.config_key}: ixhpc.eval: task {LOCAL_TASK} is ixhpc's own; "
                           f"expected no task-dir beside it (lm-eval reads one task directory)"])
    url = f"{front.url}/v1/chat/completions"
    model_args = (f"model={p.model},base_url={url},num_concurrent={shell.var('ECONC')},tokenized_requests=False,"
                  f"max_retries=3,timeout={e.request_timeout},max_length={context_length(p)}")
    include = (ScriptPaths.evals_dir_text() if LOCAL_TASK in e.tasks else
               str(Path(p.source).parent / Path(e.task_dir).expanduser()) if e.task_dir else None)
    argv = ["env", *OFFLINE_ENV, python, "-m", "lm_eval", "--model", "local-chat-completions",
            "--model_args", model_args, "--tasks", ",".join(e.tasks),
            *(["--include_path", include] if include else []),
            "--apply_chat_template", "--fewshot_as_multiturn",
            "--gen_kwargs", f"max_gen_toks={e.max_tokens}",
            *(["--limit", str(e.limit)] if e.limit else []),
            *(["--num_fewshot", str(e.num_fewshot)] if e.num_fewshot is not None else []),
            "--output_path", ScriptPaths.eval_out_text("CONC", "ECONC"), "--log_samples"]
    return with_env(sorted(p.ixhpc.env.items()), argv)


def plan(group: Sequence[RunPoint], roles: list[Role], profile: ClusterProfile, runtime: containers.Runtime,
         spec: containers.ContainerSpec, power_args: str, het: bool) -> EvalPlan | None:
    """The job's eval steps (None: none of its points runs evals)."""
    chosen = [p for p in group if wanted(p)]
    if not chosen:
        return None
    first = chosen[0]
    front = next(r for r in roles if r.name in ("router", "server"))
    espec = spec.model_copy(update={"image": profile.eval_image}) if profile.eval_image else spec
    python = profile.eval_python or (shell.var("IXHPC_PYTHON") if runtime.name == "none" else "python3")
    wheels = profile.eval_wheelhouse and str(Path(profile.eval_wheelhouse).expanduser())
    if wheels:  # the wheelhouse is read in the eval's container
        espec = espec.model_copy(update={"mounts": [*espec.mounts, f"{wheels}:{wheels}:ro"]})
    srun = ["srun", "--overlap", *(["--het-group=0"] if het else []), "--nodes=1", "--ntasks=1", "--relative=0"]
    flags = [*srun, "--job-name=eval", f"--output={ScriptPaths.eval_log_text('CONC', 'ECONC')}"]
    command = shell.command([*flags, *runtime.srun_args(espec), *runtime.wrap(
        espec, _argv(first, front, shell.var("EVAL_PYTHON") if wheels else python))])
    install = shell.command([*srun, "--job-name=eval-install", f"--output={ScriptPaths.eval_install_log_text()}",
                             *runtime.srun_args(espec), *runtime.wrap(espec, _install_argv(python, wheels))]
                            ) if wheels else ""
    prepare = runtime.prepare(espec) if profile.eval_image else None
    prep = shell.command([shell.var("IXHPC_PYTHON"), *prepare[1:]] if prepare and prepare[0] == "python"
                         else prepare) if prepare else ""
    points = tuple(EvalPoint(_attach(p), eval_concs(p), eval_only(p), _ingest_args(p, power_args),
                             _ingest_args(p, "")) for p in chosen)
    return EvalPlan(points, command, prep, LOCAL_TASK in settings(first).tasks, install,
                    shell.word(python) if wheels else "",
                    shell.word(f"{ScriptPaths.eval_venv_text()}/bin/python") if wheels else "")


def _install_argv(python: str, wheelhouse: str) -> list[str]:
    """The eval's Python runs the install from the run's bundle (ixhpc.evals.client)."""
    return [python, ScriptPaths.bundle_text(), "-m", "ixhpc.evals", "install",
            "--venv", ScriptPaths.eval_venv_text(), "--wheelhouse", wheelhouse, *client.requirements()]
