"""Bounded retries with backoff for transient Slurm errors."""

from __future__ import annotations

import pytest

from ixhpc import slurm
from ixhpc.errors import UserError


def _flaky(failures: list[str]):
    calls = []

    def attempt():
        calls.append(1)
        if len(calls) <= len(failures):
            raise RuntimeError(failures[len(calls) - 1])
        return "ok"
    return attempt, calls


def test_transient_errors_are_retried_until_success(monkeypatch):
    monkeypatch.setattr(slurm, "BACKOFF_S", 0.001)
    attempt, calls = _flaky(["Socket timed out", "Unable to contact slurm controller"])
    assert slurm.with_retries(attempt, "sbatch") == "ok"
    assert len(calls) == 3


def test_retries_are_bounded(monkeypatch):
    monkeypatch.setattr(slurm, "BACKOFF_S", 0.001)
    attempt, calls = _flaky(["Socket timed out"] * 10)
    with pytest.raises(UserError, match="sbatch failed: Socket timed out"):
        slurm.with_retries(attempt, "sbatch", retries=3)
    assert len(calls) == 4


def test_other_errors_fail_at_once():
    attempt, calls = _flaky(["Invalid partition name specified"])
    with pytest.raises(UserError, match="Invalid partition"):
        slurm.with_retries(attempt, "sbatch")
    assert len(calls) == 1
