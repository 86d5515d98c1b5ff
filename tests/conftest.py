"""Shared fixtures. `slurm` brings the project's real local Slurm cluster up (idempotent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def slurm() -> dict[str, str]:
    """Environment for Slurm clients pointing at the running local cluster.

    The cluster is started if needed and stopped at the end only if this session started
    it, so a developer's running cluster is left as it was.
    """
    from ixhpc import local_cluster

    was_running = all(local_cluster.status().values())
    local_cluster.up()
    env = local_cluster.client_env()
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]  # for libraries that shell out (submitit)
    yield env
    if not was_running and not os.environ.get("IXHPC_KEEP_CLUSTER"):
        local_cluster.down()
