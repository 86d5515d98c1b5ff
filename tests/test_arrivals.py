"""Arrival processes of the load generator: Poisson, and gamma with a burstiness factor (as
vLLM's benchmark_serving), keeping the request rate."""

from __future__ import annotations

import random
import statistics

import pytest

from ixhpc.bench import client


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_gaps_keep_the_rate_and_their_spread_follows_the_burstiness(burstiness: float) -> None:
    rng = random.Random(7)
    gaps = [client._gap(rng, 50.0, burstiness) for _ in range(40_000)]
    assert statistics.fmean(gaps) == pytest.approx(1 / 50.0, rel=0.03)
    # a gamma of shape k has a coefficient of variation 1/sqrt(k): 1 for Poisson arrivals
    cv = statistics.pstdev(gaps) / statistics.fmean(gaps)
    assert cv == pytest.approx(burstiness ** -0.5, rel=0.05)


def test_poisson_arrivals_are_the_same_draws_as_before_burstiness_existed() -> None:
    a, b = random.Random(3), random.Random(3)
    assert [client._gap(a, 10.0, 1.0) for _ in range(5)] == [b.expovariate(10.0) for _ in range(5)]
