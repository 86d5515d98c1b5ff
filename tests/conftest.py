"""Shared fixtures.

``slurm`` brings the project's real local Slurm cluster up (idempotent), for tests marked
``cluster`` only: ``pytest -m "not cluster"`` starts no daemon and submits nothing.

``reference_path`` is the one way in to the shared reference data (``../shared/reference``
beside the repo, or ``$IXHPC_REFERENCE_DIR``): when it is absent the test is skipped with a
one-line reason, or fails where ``IXHPC_REQUIRE_REFERENCE=1`` (``.ci/run``: CI never skips).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = "IXHPC_REFERENCE_DIR"
REQUIRE_REFERENCE = "IXHPC_REQUIRE_REFERENCE"
INFERENCEX_SNAPSHOT = "inferencex-2026-03"   # what the sweep and recipe tests compare against
INFERENCEX_CURRENT = "inferencex-2026-08"    # the current format (scenarios:), SPEC.md beside it


def reference_root() -> Path:
    return Path(os.environ.get(REFERENCE_DIR) or REPO.parent / "shared" / "reference")


def reference_path(*parts: str) -> Path:
    """A path under the reference data; skips (or, required, fails) the test if it is absent."""
    path = reference_root().joinpath(*parts)
    if not path.exists():
        reason = f"reference data absent: {path} (see ${REFERENCE_DIR})"
        if os.environ.get(REQUIRE_REFERENCE) == "1":
            pytest.fail(f"{reason}; ${REQUIRE_REFERENCE}=1 requires it", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture
def inferencex() -> Path:
    """The InferenceX snapshot: master configs, runners.yaml and the generator's expected output."""
    return reference_path(INFERENCEX_SNAPSHOT)


@pytest.fixture
def inferencex_current() -> Path:
    """The current-format InferenceX snapshot: masters, runners.yaml (labels + hardware),
    expected matrices, SPEC.md's examples."""
    return reference_path(INFERENCEX_CURRENT)


@pytest.fixture
def agentx() -> Path:
    """AgentX (agentic trace replay) SPEC.md with its toy corpus, toy_schedule_c2.json and
    toy_expected_derivations.json."""
    return reference_path("agentx")


@pytest.fixture
def srt_slurm() -> Path:
    """srt-slurm recipes: recipes-inferencex/ (469 files InferenceX vendors),
    recipes-srt-slurm/ (srt-slurm v1.0.68's own that InferenceX names) and SPEC.md."""
    return reference_path("srt-slurm")


@pytest.fixture
def slurm(request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment for Slurm clients pointing at the running local cluster.

    A test that asks for it without the ``cluster`` marker fails before anything starts, so
    the marker stays the one switch that keeps Slurm out of a run.
    """
    if request.node.get_closest_marker("cluster") is None:
        pytest.fail(f"{request.node.nodeid} uses the slurm fixture without @pytest.mark.cluster",
                    pytrace=False)
    env: dict[str, str] = request.getfixturevalue("_local_cluster")
    return env


@pytest.fixture(scope="session")
def _local_cluster() -> Iterator[dict[str, str]]:
    """The cluster is started if needed and stopped at the end only if this session started
    it, so a developer's running cluster is left as it was."""
    from ixhpc import local_cluster

    was_running = all(local_cluster.status().values())
    local_cluster.up()
    env = local_cluster.client_env()
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]  # for libraries that shell out (submitit)
    yield env
    if not was_running and not os.environ.get("IXHPC_KEEP_CLUSTER"):
        local_cluster.down()
