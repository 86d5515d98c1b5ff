"""Latency objectives (SLOs) and goodput, as vLLM's ``benchmark_serving --goodput``.

An SLO sets latency limits per request (``ttft``, ``tpot``, ``e2el``, in ms or s) and an
``attainment``: the share of requests that must meet every limit. A request is *good* when it
completed and met every limit (a request of one token has no TPOT and meets any TPOT limit, as
there); ``request_goodput`` = good requests per second, ``goodput_fraction`` = good / all
requests sent (failed ones stay in the denominator). ``ixhpc.slo`` searches concurrencies with it,
or, given ``rate=`` (request rates, ``1..16`` doubling or ``1/2/3``) and optionally ``burstiness=``
(the gamma shape of the arrivals: 1, Poisson), request rates at the point's concurrency as a cap.

Standard library only: the load generator imports it inside engine containers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ixhpc.errors import ConfigError

LIMITS = ("ttft", "tpot", "e2el")
# DistServe's SLO attainment target: 90% of requests within every limit
DEFAULT_ATTAINMENT = 0.9
_UNITS = {"": 1.0, "ms": 1.0, "s": 1000.0, "us": 1e-3}
_VALUE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|us|%)?\s*$")


@dataclass(frozen=True)
class Slo:
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None
    attainment: float = DEFAULT_ATTAINMENT
    rates: tuple[float, ...] = ()  # a rate search's request rates (req/s), rising; (): a concurrency search
    burstiness: float = 1.0        # its arrivals' gamma shape (1: Poisson)

    def limits(self) -> dict[str, float]:
        return {k: v for k in LIMITS if (v := getattr(self, f"{k}_ms")) is not None}

    def text(self) -> str:
        """The canonical spelling (``parse`` reads it back)."""
        rate = ([f"rate={'/'.join(f'{r:g}' for r in self.rates)}", f"burstiness={self.burstiness:g}"]
                if self.rates else [])
        return ",".join([*(f"{k}={v:g}ms" for k, v in self.limits().items()), f"attainment={self.attainment:g}",
                         *rate])


def parse(text: str) -> Slo:
    """``ttft=2s,tpot=50ms[,e2el=...][,attainment=0.9]``; vLLM's ``ttft:2000 tpot:50`` also
    reads (a bare number is ms). Every problem in one ConfigError."""
    values: dict[str, float] = {}
    values_rates: tuple[float, ...] = ()
    problems = []
    for item in (t for t in re.split(r"[,\s]+", text.strip()) if t):
        key, sep, raw = item.partition("=") if "=" in item else item.partition(":")
        key = key.strip().lower()
        match = _VALUE.match(raw) if sep else None
        if key == "rate":
            rates = _rates(raw)
            if rates is None:
                problems.append(f"--slo: rate: expected request rates as LO..HI (doubling) or A/B/C, "
                                f"each > 0 (req/s), found {raw!r}")
            values_rates = rates or ()
            continue
        if key not in (*LIMITS, "attainment", "burstiness"):
            problems.append(f"--slo: unknown objective {key!r} in {item!r} "
                            f"(known: {', '.join(LIMITS)}, attainment, rate, burstiness)")
        elif match is None:
            problems.append(f"--slo: {key}: expected a number with an optional unit (ms, s, us), found {raw!r}")
        elif key == "attainment":
            share = float(match[1]) / (100.0 if match[2] == "%" else 1.0)
            if match[2] not in (None, "%") or not 0.0 < share <= 1.0:
                problems.append(f"--slo: attainment must be a share in (0, 1] or a percentage, found {raw!r}")
            values[key] = share
        elif key == "burstiness":
            if match[2] is not None or not float(match[1]) > 0:
                problems.append(f"--slo: burstiness must be a number > 0 (1: Poisson), found {raw!r}")
            values[key] = float(match[1])
        elif match[2] == "%" or not float(match[1]) > 0:
            problems.append(f"--slo: {key} must be a positive time (ms, s, us), found {raw!r}")
        elif key in values:
            problems.append(f"--slo: {key} given twice")
        else:
            values[key] = float(match[1]) * _UNITS[match[2] or ""]
    if not problems and not any(k in values for k in LIMITS):
        problems.append(f"--slo: no latency limit in {text!r} (e.g. ttft=2s,tpot=50ms)")
    if "burstiness" in values and not values_rates:
        problems.append("--slo: burstiness shapes a rate search's arrivals: give rate= too")
    if problems:
        raise ConfigError(problems)
    return Slo(**{f"{k}_ms": values[k] for k in LIMITS if k in values},
               attainment=values.get("attainment", DEFAULT_ATTAINMENT), rates=values_rates,
               burstiness=values.get("burstiness", 1.0))


RATES_MAX = 64  # a rate search's list: bisection runs ~log2 of it, but a typo should not explode


def _rates(raw: str) -> tuple[float, ...] | None:
    """``LO..HI``: LO, 2 LO, 4 LO ... up to HI (HI itself last when not on the doubling);
    ``A/B/C``: those. None when malformed."""
    try:
        if ".." in raw:
            lo, hi = (float(x) for x in raw.split("..", 1))
            if not (0 < lo <= hi < math.inf) or hi / lo > 2.0 ** RATES_MAX:
                return None
            out = [lo]
            while out[-1] * 2 <= hi * (1 + 1e-9):
                out.append(out[-1] * 2)
            if out[-1] < hi * (1 - 1e-9):
                out.append(hi)
        else:
            out = [float(x) for x in raw.split("/")]
    except ValueError:
        return None
    if not out or len(out) > RATES_MAX or not all(0 < r < math.inf for r in out):
        return None
    return tuple(sorted(set(out)))


def good_requests(slo: Slo, ttft_ms: Sequence[float], tpot_ms: Sequence[float], e2el_ms: Sequence[float],
                  success: Sequence[bool]) -> int:
    """Completed requests meeting every limit (NaN TPOT: one token, no per-token time)."""
    good = 0
    for ok, ttft, tpot, e2el in zip(success, ttft_ms, tpot_ms, e2el_ms):
        if ok and _within(ttft, slo.ttft_ms) and _within(e2el, slo.e2el_ms) and (
                slo.tpot_ms is None or math.isnan(tpot) or tpot <= slo.tpot_ms):
            good += 1
    return good


def _within(value: float, limit: float | None) -> bool:
    return limit is None or value <= limit  # NaN (no such time) fails a limit


def goodput(slo: Slo, requests: dict[str, Any], duration: float) -> dict[str, float]:
    """The summary's goodput figures over a result's ``requests`` arrays (docs/contracts.md)."""
    n = len(requests["success"])
    good = good_requests(slo, requests["ttft_ms"], requests["tpot_ms"], requests["e2el_ms"], requests["success"])
    return {"good_requests": good,
            "request_goodput": good / duration if duration > 0 else math.nan,
            "goodput_fraction": good / n if n else math.nan}


def meets(slo: Slo, fraction: float, verdict: str) -> bool:
    return verdict != "invalid" and math.isfinite(fraction) and fraction >= slo.attainment
