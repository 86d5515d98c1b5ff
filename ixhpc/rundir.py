"""A run directory: everything one `submit` made, and the manifest that ties it together.

``Layout`` is the one place a run-directory path is spelled; placement exports its values to
the job scripts as script variables (``RUN_DIR``, ``POINT_DIR``, ``LOG_DIR``, ``RESULTS_DIR``)
and ``ScriptPaths`` spells the per-job file names in the templates from the same names.

    results/<run-id>/
        manifest.json             run id, recipe, cluster, every job with its points and job ids
        run.lock                  held (flock) by the one submit/resume changing the run
        recipe.yaml               copy of the recipe as submitted
        profile.yaml              the resolved cluster profile
        ixhpc.pyz                 the ixhpc code that runs inside containers (written once)
        standins/                 engine stand-ins (profiles with engine-standins: the local one only)
            bin/ lib/             executables and modules named like the engines' (ixhpc.standins)
            jobs/<job>.json       per job: the flag tables its stand-ins parse with, sim settings
        scripts/<job>.sbatch      the rendered scripts (runnable by hand with sbatch)
        points/<job>/             meta-c<C>.json (static metadata), bench-c<C>.json (client output)
        logs/<job>/               job-<jobid>.out, <role>.log, bench-c<C>.log, standin-<role>.json
        logs/merge-<jobid>.out    the `submit --merge` job
        results/<point>.h5        one HDF5 file per run point
        merged.h5                 `submit --merge`: the run's merged table
        submitit/                 submitit's own files

State lives here, not in the submitting process, so `status`, `logs`, `cancel` and `resume`
work from any shell later. The manifest is rewritten atomically on every change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ixhpc import atomic, shell
from ixhpc.errors import PlanError
from ixhpc.point_metadata import PointKind


@dataclasses.dataclass(frozen=True)
class Layout:
    """Every path of one run directory, derived from its root (absolute)."""

    root: Path

    MANIFEST: ClassVar[str] = "manifest.json"
    LOCK: ClassVar[str] = "run.lock"          # held by the one command submitting this run's jobs
    RECIPE: ClassVar[str] = "recipe.yaml"
    PROFILE: ClassVar[str] = "profile.yaml"
    BUNDLE: ClassVar[str] = "ixhpc.pyz"
    MERGED: ClassVar[str] = "merged.h5"
    SCRIPTS: ClassVar[str] = "scripts"
    SCRIPT: ClassVar[str] = "{job}.sbatch"
    POINTS: ClassVar[str] = "points"
    LOGS: ClassVar[str] = "logs"
    RESULTS: ClassVar[str] = "results"
    SUBMITIT: ClassVar[str] = "submitit"
    # File names inside a job's point and log directories ({conc}, {role}: filled in).
    META: ClassVar[str] = "meta-c{conc}.json"
    BENCH_JSON: ClassVar[str] = "bench-c{conc}.json"
    BENCH_LOG: ClassVar[str] = "bench-c{conc}.log"
    TRACES: ClassVar[str] = "traces.jsonl"  # an agentic job's synthetic trace corpus (render)
    POWER_CSV: ClassVar[str] = "power-n{node}.csv"  # a node's GPU power readings (ixhpc.job.power)
    POWER_LOG: ClassVar[str] = "power-n{node}.log"  # its sampler step's output (log directory)
    SLO_SEARCH: ClassVar[str] = "slo-search.json"  # a job's SLO search: probes and answer (ixhpc.slo)
    SLO_RATE_PROBE: ClassVar[str] = "bench-c{conc}-r{rate}.json"  # a rate search's probe result (ixhpc.slo)
    EVALS: ClassVar[str] = "evals"                      # the run's eval task files and data (render)
    EVAL_OUT: ClassVar[str] = "eval-c{conc}-e{econc}"   # lm-eval's output of one eval concurrency
    EVAL_LOG: ClassVar[str] = "eval-c{conc}-e{econc}.log"  # its step's output (log directory)
    EVAL_VENV: ClassVar[str] = "eval-venv"              # lm-eval from the profile's wheelhouse (job's)
    EVAL_INSTALL_LOG: ClassVar[str] = "eval-install.log"  # that install step's output (log directory)
    ROLE_LOG: ClassVar[str] = "{role}.log"
    JOB_LOG: ClassVar[str] = "job-%j.out"       # Slurm's --output pattern: %j is the job id
    MERGE_LOG: ClassVar[str] = "merge-%j.out"
    # `ixhpc debug` files, in the run directory.
    DEBUG_LAUNCHER: ClassVar[str] = "ixhpc-debug.sh"
    DEBUG_ROLES: ClassVar[str] = "ixhpc-roles.sh"
    DEBUG_NODES: ClassVar[str] = "ixhpc-nodes.sh"
    # Engine stand-ins (ixhpc.standins; profiles with engine-standins only).
    STANDINS: ClassVar[str] = "standins"
    STANDINS_BIN: ClassVar[str] = "bin"
    STANDINS_LIB: ClassVar[str] = "lib"
    STANDINS_JOBS: ClassVar[str] = "jobs"
    STANDIN_CONFIG: ClassVar[str] = "{job}.json"
    STANDIN_RECORD: ClassVar[str] = "standin-{role}.json"   # in the job's log directory
    # Script mode (ixhpc.inferencex_scripts): the job's copy of the InferenceX checkout (in its
    # point directory), what each concurrency's step left there, kept per concurrency.
    WORKSPACE: ClassVar[str] = "workspace"
    SERVING_JSON: ClassVar[str] = "serving-c{conc}.json"      # the script's $RESULT_FILENAME.json
    GPU_METRICS: ClassVar[str] = "gpu_metrics-c{conc}.csv"    # its gpu_metrics.csv
    SERVER_LOG: ClassVar[str] = "server-c{conc}.log"          # its server.log (log directory)
    SCRIPT_LOG: ClassVar[str] = "inferencex-c{conc}.log"      # the step's output (log directory)

    @classmethod
    def of(cls, run: Path | str) -> Layout:
        return cls(Path(run).resolve())

    @property
    def manifest(self) -> Path:
        return self.root / self.MANIFEST

    @property
    def lock(self) -> Path:
        return self.root / self.LOCK

    @property
    def recipe(self) -> Path:
        return self.root / self.RECIPE

    @property
    def profile(self) -> Path:
        return self.root / self.PROFILE

    @property
    def bundle(self) -> Path:
        return self.root / self.BUNDLE

    @property
    def merged(self) -> Path:
        return self.root / self.MERGED

    @property
    def results_dir(self) -> Path:
        return self.root / self.RESULTS

    @property
    def logs_dir(self) -> Path:
        return self.root / self.LOGS

    @property
    def submitit_dir(self) -> Path:
        return self.root / self.SUBMITIT

    @property
    def merge_log_pattern(self) -> Path:
        return self.logs_dir / self.MERGE_LOG

    def directories(self) -> list[Path]:
        return [self.root, *(self.root / d for d in (self.SCRIPTS, self.POINTS, self.LOGS, self.RESULTS))]

    @classmethod
    def script_rel(cls, job: str) -> str:
        """A job's script relative to the run directory (as the manifest records it)."""
        return f"{cls.SCRIPTS}/{cls.SCRIPT.format(job=job)}"

    def script(self, job: str) -> Path:
        return self.root / self.script_rel(job)

    def point_dir(self, job: str) -> Path:
        return self.root / self.POINTS / job

    def log_dir(self, job: str) -> Path:
        return self.logs_dir / job

    def meta(self, job: str, conc: int) -> Path:
        return self.point_dir(job) / self.META.format(conc=conc)

    def bench_json(self, job: str, conc: int) -> Path:
        return self.point_dir(job) / self.BENCH_JSON.format(conc=conc)

    def bench_log(self, job: str, conc: int) -> Path:
        return self.log_dir(job) / self.BENCH_LOG.format(conc=conc)

    def traces(self, job: str) -> Path:
        return self.point_dir(job) / self.TRACES

    def role_log(self, job: str, role: str) -> Path:
        return self.log_dir(job) / self.ROLE_LOG.format(role=role)

    def power_csv(self, job: str, node: int) -> Path:
        return self.point_dir(job) / self.POWER_CSV.format(node=node)

    def slo_search(self, job: str) -> Path:
        return self.point_dir(job) / self.SLO_SEARCH

    def slo_rate_probe(self, job: str, conc: int, rate: float) -> Path:
        return self.point_dir(job) / self.SLO_RATE_PROBE.format(conc=conc, rate=f"{rate:g}")

    @property
    def evals_dir(self) -> Path:
        return self.root / self.EVALS

    def eval_out(self, job: str, conc: int, econc: int) -> Path:
        return self.point_dir(job) / self.EVAL_OUT.format(conc=conc, econc=econc)

    def eval_venv(self, job: str) -> Path:
        return self.point_dir(job) / self.EVAL_VENV

    def power_csvs(self, job: str) -> list[Path]:
        """Every node's power readings of the job, in node order."""
        pattern = self.POWER_CSV.format(node="*")
        return sorted(self.point_dir(job).glob(pattern), key=lambda p: (len(p.name), p.name))

    def job_log_pattern(self, job: str) -> Path:
        return self.log_dir(job) / self.JOB_LOG

    def job_logs(self, job: str) -> list[Path]:
        """The job's batch logs, oldest first (one per attempt)."""
        logs = self.log_dir(job).glob(self.JOB_LOG.replace("%j", "*"))
        return sorted(logs, key=lambda p: p.stat().st_mtime)

    def is_job_log(self, path: Path) -> bool:
        head, _, tail = self.JOB_LOG.partition("%j")
        return path.name.startswith(head) and path.name.endswith(tail)

    def role_logs(self, job: str) -> list[Path]:
        """Every role's and the client's log of a job (not the batch log)."""
        tail = self.ROLE_LOG.format(role="")
        return sorted(p for p in self.log_dir(job).glob("*" + tail) if not self.is_job_log(p))

    def result(self, point_key: str) -> Path:
        return self.results_dir / f"{point_key}.h5"

    def set_aside(self, point_key: str, stamp: str) -> Path:
        """Where `resume` moves a damaged result file (kept for inspection, never merged)."""
        return self.results_dir / f"{point_key}.h5.damaged-{stamp}"

    def debug_file(self, name: str) -> Path:
        return self.root / name

    @property
    def standins_dir(self) -> Path:
        return self.root / self.STANDINS

    @property
    def standins_bin(self) -> Path:
        return self.standins_dir / self.STANDINS_BIN

    @property
    def standins_lib(self) -> Path:
        return self.standins_dir / self.STANDINS_LIB

    def standin_config(self, job: str) -> Path:
        return self.standins_dir / self.STANDINS_JOBS / self.STANDIN_CONFIG.format(job=job)

    def standin_record(self, job: str, role: str) -> Path:
        return self.log_dir(job) / self.STANDIN_RECORD.format(role=role)

    def workspace(self, job: str) -> Path:
        return self.point_dir(job) / self.WORKSPACE

    def serving_json(self, job: str, conc: int) -> Path:
        return self.point_dir(job) / self.SERVING_JSON.format(conc=conc)

    def gpu_metrics(self, job: str, conc: int) -> Path:
        return self.point_dir(job) / self.GPU_METRICS.format(conc=conc)

    def server_log(self, job: str, conc: int) -> Path:
        return self.log_dir(job) / self.SERVER_LOG.format(conc=conc)

    def script_log(self, job: str, conc: int) -> Path:
        return self.log_dir(job) / self.SCRIPT_LOG.format(conc=conc)

    # The names of ``variables``: the job script's own (a recipe's env may not use them).
    VARIABLES: ClassVar[tuple[str, ...]] = ("RUN_DIR", "JOB_KEY", "POINT_DIR", "LOG_DIR", "RESULTS_DIR")

    def variables(self, job: str) -> list[tuple[str, str]]:
        """The script variables of one job's paths (what ``ScriptPaths`` refers to)."""
        values = (str(self.root), job, str(self.point_dir(job)), str(self.log_dir(job)),
                  str(self.results_dir))
        return list(zip(self.VARIABLES, values, strict=True))


class ScriptPaths:
    """A job's files spelled over the script variables of ``Layout.variables``.

    Arguments name shell variables (``"conc"`` -> ``${conc}``), except ``role_log``'s literal
    role. ``*_text`` give an argument for ``shell.command``; the others one shell word for
    the templates (``"${POINT_DIR}/bench-c${conc}.json"``).
    """

    @staticmethod
    def _at(dir_var: str, name: str) -> str:
        return f"{shell.var(dir_var)}/{name}"

    @classmethod
    def bench_json_text(cls, conc_var: str) -> str:
        return cls._at("POINT_DIR", Layout.BENCH_JSON.format(conc=shell.var(conc_var)))

    @classmethod
    def evals_dir_text(cls) -> str:
        return cls._at("RUN_DIR", Layout.EVALS)

    @classmethod
    def eval_out_text(cls, conc_var: str, econc_var: str) -> str:
        return cls._at("POINT_DIR", Layout.EVAL_OUT.format(conc=shell.var(conc_var), econc=shell.var(econc_var)))

    @classmethod
    def eval_log_text(cls, conc_var: str, econc_var: str) -> str:
        return cls._at("LOG_DIR", Layout.EVAL_LOG.format(conc=shell.var(conc_var), econc=shell.var(econc_var)))

    @classmethod
    def eval_venv_text(cls) -> str:
        return cls._at("POINT_DIR", Layout.EVAL_VENV)

    @classmethod
    def eval_install_log_text(cls) -> str:
        return cls._at("LOG_DIR", Layout.EVAL_INSTALL_LOG)

    @classmethod
    def traces_text(cls) -> str:
        return cls._at("POINT_DIR", Layout.TRACES)

    @classmethod
    def bench_log_text(cls, conc_var: str) -> str:
        return cls._at("LOG_DIR", Layout.BENCH_LOG.format(conc=shell.var(conc_var)))

    @classmethod
    def power_csv_text(cls, node: int) -> str:
        return cls._at("POINT_DIR", Layout.POWER_CSV.format(node=node))

    @classmethod
    def power_log_text(cls, node: int) -> str:
        return cls._at("LOG_DIR", Layout.POWER_LOG.format(node=node))

    @classmethod
    def bench_json(cls, conc_var: str) -> str:
        return shell.word(cls.bench_json_text(conc_var))

    @classmethod
    def bench_log(cls, conc_var: str) -> str:
        return shell.word(cls.bench_log_text(conc_var))

    @classmethod
    def script_log_text(cls, conc_var: str) -> str:
        return cls._at("LOG_DIR", Layout.SCRIPT_LOG.format(conc=shell.var(conc_var)))

    @classmethod
    def script_log(cls, conc_var: str) -> str:
        return shell.word(cls.script_log_text(conc_var))

    @classmethod
    def role_log(cls, role: str) -> str:
        return shell.word(cls._at("LOG_DIR", Layout.ROLE_LOG.format(role=role)))

    @classmethod
    def role_log_of(cls, role_var: str) -> str:
        return shell.word(cls._at("LOG_DIR", Layout.ROLE_LOG.format(role=shell.var(role_var))))

    @classmethod
    def nodes_file(cls) -> str:
        return shell.word(cls._at("RUN_DIR", Layout.DEBUG_NODES))

    @classmethod
    def bundle_text(cls) -> str:
        return cls._at("RUN_DIR", Layout.BUNDLE)

    @classmethod
    def bundle(cls) -> str:
        return shell.word(cls.bundle_text())

    @classmethod
    def standins_line(cls) -> str:
        """The job script's one line that puts the engine stand-ins first (ixhpc.standins):
        their executables on PATH, their modules on PYTHONPATH, and where each stand-in finds
        its job's config, records how it was started and which Python runs it."""
        base = f"${{RUN_DIR}}/{Layout.STANDINS}"
        config = Layout.STANDIN_CONFIG.format(job="${JOB_KEY}")
        return (f'export PATH="{base}/{Layout.STANDINS_BIN}:${{PATH}}" '
                f'PYTHONPATH="{base}/{Layout.STANDINS_LIB}${{PYTHONPATH:+:${{PYTHONPATH}}}}" '
                f'IXHPC_STANDIN_CONFIG="{base}/{Layout.STANDINS_JOBS}/{config}" '
                f'IXHPC_STANDIN_RECORD="${{LOG_DIR}}/{Layout.STANDIN_RECORD}" '
                f'IXHPC_STANDIN_PYTHON="${{IXHPC_PYTHON}}"')


MANIFEST = Layout.MANIFEST


class PointRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str                     # result key: names the file results/<key>.h5
    conc: int


class Attempt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job_id: str                  # "123" or "123_4" for an array task
    submitted: str               # ISO 8601 UTC


class JobEntry(BaseModel):
    """One Slurm job: a single-node group of points (one array task) or a multi-node point."""

    model_config = ConfigDict(extra="forbid")
    key: str
    kind: PointKind
    script: str                  # relative to the run directory
    partition: str
    nodes: int
    gpus: int
    points: list[PointRef]
    attempts: list[Attempt] = Field(default_factory=list)

    @property
    def job_id(self) -> str | None:
        return self.attempts[-1].job_id if self.attempts else None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: str
    created: str
    ixhpc_version: str
    recipe: str                  # the original path the user gave
    cluster: str
    jobs: list[JobEntry]
    merge_job_id: str | None = None  # `submit --merge`: merges results/ into merged.h5 at the end

    @property
    def slurm_ids(self) -> list[str]:
        """Every Slurm job id of the run now: each job's latest attempt and the merge job."""
        return [*(e.job_id for e in self.jobs if e.job_id), *([self.merge_job_id] if self.merge_job_id else [])]


def now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def new_run_id(recipe: Path) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", recipe.stem).strip("-.") or "run"
    return f"{stem}-{stamp}-{secrets.token_hex(2)}"


def default_root() -> Path:
    return Path(os.environ.get("IXHPC_RESULTS", "results"))


def make_dir(path: Path) -> Path:
    """Create a directory with the user's umask, but never world-writable."""
    path.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode
    if mode & 0o002:
        path.chmod(mode & ~0o002)
    return path


@dataclasses.dataclass
class NewRun:
    """A run directory being made: filled at ``dir`` (a hidden sibling), then ``publish``ed."""

    dir: Path
    final: Path
    published: bool = False

    def publish(self) -> Path:
        """Rename the whole directory into place, never over anything."""
        try:
            atomic.rename_new(self.dir, self.final)
        except FileExistsError:
            raise PlanError(f"run directory {self.final} appeared meanwhile; refusing to overwrite it") from None
        self.dir, self.published = self.final, True
        return self.final


@contextlib.contextmanager
def create(root: Path, run_id: str, command: str) -> Iterator[NewRun]:
    """A new run directory, written whole or not at all, with the run's lock held by
    ``command`` for the whole block (the lock is the file's: it survives the rename). Left
    unpublished, or failing before ``publish``, it leaves nothing: `resume` never sees a
    half-made run."""
    run = root / run_id
    if run.exists():
        raise PlanError(f"run directory {run} already exists; refusing to overwrite it")
    if "%" in str(run.resolve()):  # Slurm and submitit expand %j, %u... in log file paths
        raise PlanError(f"run directory {run.resolve()}: a path with '%' would be expanded by Slurm "
                        f"in log file names; expected --results elsewhere")
    try:
        partial = Path(tempfile.mkdtemp(prefix=f".{run_id}.", suffix=".partial", dir=make_dir(root)))
    except OSError as exc:
        raise PlanError(f"cannot create a run directory in {root}: {exc.strerror or exc}") from None
    new = NewRun(partial, run)
    try:
        for d in Layout.of(partial).directories():
            make_dir(d)
        with locked(partial, command):
            yield new
    finally:
        if not new.published:
            shutil.rmtree(partial, ignore_errors=True)


@contextlib.contextmanager
def locked(run: Path, command: str) -> Iterator[None]:
    """One writer per run: `submit` and `resume` hold this while they read the run's state,
    submit and record jobs; a second one refuses at once instead of submitting twice. The
    file names its holder while the lock is held and is emptied when it is released, so a
    refusal never names an earlier holder."""
    path = Layout.of(run).lock
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PlanError(f"run {run} is being submitted by {_holder(fd)}; try again once it has "
                            f"ended (`ixhpc status {run}` shows its jobs)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"`ixhpc {command}` (pid {os.getpid()})\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock, also when the process dies


LOCK_NAME_WAIT_S = 2.0  # a holder writes its name right after taking the lock


def _holder(fd: int) -> str:
    """The lock holder's own words, waiting out the moment between its lock and its write."""
    deadline = time.monotonic() + LOCK_NAME_WAIT_S
    while not (text := os.pread(fd, 200, 0).decode(errors="replace").strip()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return text or "another command"


def save(run: Path, manifest: Manifest) -> None:
    atomic.write_text(Layout.of(run).manifest, manifest.model_dump_json(indent=2) + "\n")


def find(run: str | Path) -> Path:
    """A run directory from a path or a run id under the results root."""
    for candidate in (Path(run), default_root() / str(run)):
        if Layout.of(candidate).manifest.is_file():
            return candidate
    raise PlanError(f"no run directory {run} (looked for {MANIFEST} in {run} and "
                    f"{default_root() / str(run)})")


def load(run: Path) -> Manifest:
    try:
        return Manifest.model_validate_json(Layout.of(run).manifest.read_text())
    except (OSError, ValueError) as exc:
        raise PlanError(f"{run / MANIFEST}: unreadable manifest: {str(exc).splitlines()[0]}") from None
