"""A run directory: everything one `submit` made, and the manifest that ties it together.

    results/<run-id>/
        manifest.json        run id, recipe, cluster, every job with its points and job ids
        recipe.yaml          copy of the recipe as submitted
        profile.yaml         the resolved cluster profile
        scripts/<job>.sbatch the rendered scripts (runnable by hand with sbatch)
        points/<job>/        per-concurrency metadata and raw benchmark output
        logs/<job>/          job log and one log per role
        results/<point>.h5   one HDF5 file per run point

State lives here, not in the submitting process, so `status`, `logs`, `cancel` and `resume`
work from any shell later. The manifest is rewritten atomically on every change.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ixhpc import atomic
from ixhpc.errors import UserError

MANIFEST = "manifest.json"


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
    kind: str                    # "single" | "disagg"
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
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def new_run_id(recipe: Path) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
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


def create(root: Path, run_id: str) -> Path:
    run = root / run_id
    if run.exists():
        raise UserError(f"run directory {run} already exists; refusing to overwrite it", 2)
    for sub in ("", "scripts", "points", "logs", "results"):
        make_dir(run / sub)
    return run


def save(run: Path, manifest: Manifest) -> None:
    atomic.write_text(run / MANIFEST, manifest.model_dump_json(indent=2) + "\n")


def find(run: str | Path) -> Path:
    """A run directory from a path or a run id under the results root."""
    for candidate in (Path(run), default_root() / str(run)):
        if (candidate / MANIFEST).is_file():
            return candidate
    raise UserError(f"no run directory {run} (looked for {MANIFEST} in {run} and "
                    f"{default_root() / str(run)})", 2)


def load(run: Path) -> Manifest:
    try:
        return Manifest.model_validate_json((run / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{run / MANIFEST}: unreadable manifest: {str(exc).splitlines()[0]}", 2) from None
