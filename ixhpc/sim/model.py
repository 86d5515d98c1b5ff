"""The simulated engine's timing model: plain functions from GPU specs and model size to seconds.

This is a deliberately small roofline model, not a predictor of real engine numbers. It only
has to move the right way, so that every other part of ixhpc sees realistic trends:

* **Prefill** is compute-bound: ``2 * active_params * tokens`` FLOPs on ``tp`` GPUs at
  ``compute_efficiency`` of their dense FLOP/s, plus a fixed launch overhead.
* **A decode step** is memory-bandwidth-bound: it reads the weights the batch touches (an MoE
  touches more experts as the batch grows: ``1 - (1 - active/total) ** batch`` of them) and the
  KV cache of every running sequence, at ``memory_efficiency`` of HBM bandwidth, split over
  ``tp`` GPUs. At very large batches it turns compute-bound (``2 * active_params * batch``
  FLOPs). Each step also pays a fixed overhead, tp/ep collective latencies and a small
  per-sequence scheduling cost. So a step grows slowly with the running batch: throughput per
  GPU rises and tokens/s per user fall as concurrency grows.
* **KV transfer** (prefill worker -> decode worker) moves ``kv_bytes_per_token * tokens`` over
  the interconnect (NVLink inside a GB200 NVL72 rack, an RDMA NIC elsewhere) plus a latency.
* **Continuous batching**: at most ``max_batch`` sequences run; each scheduler iteration admits
  waiting requests (their prefill chunks cost ``prefill_time``, at most ``max_prefill_tokens``
  per iteration) and then runs one decode step for everything running.

All times are in seconds of *simulated* time; the server multiplies them by ``--time-scale``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

BYTES_PER_PARAM = {"fp4": 0.5, "fp8": 1.0, "bf16": 2.0}


@dataclass(frozen=True)
class GpuSpec:
    """Public datasheet figures per GPU: dense (no sparsity) FLOP/s per precision."""

    name: str
    hbm_gb: float
    hbm_bytes_per_s: float
    dense_flops: dict[str, float]
    kv_link_bytes_per_s: float  # what a KV transfer to another worker runs over


_TB = 1e12
_PF = 1e15

# Hopper has no FP4 tensor cores: FP4 weights run through FP8 maths there.
GPUS: dict[str, GpuSpec] = {
    "H100": GpuSpec("H100", 80, 3.35 * _TB, {"bf16": 0.989 * _PF, "fp8": 1.979 * _PF, "fp4": 1.979 * _PF}, 50e9),
    "H200": GpuSpec("H200", 141, 4.8 * _TB, {"bf16": 0.989 * _PF, "fp8": 1.979 * _PF, "fp4": 1.979 * _PF}, 50e9),
    "B200": GpuSpec("B200", 180, 8.0 * _TB, {"bf16": 2.25 * _PF, "fp8": 4.5 * _PF, "fp4": 9.0 * _PF}, 50e9),
    "GB200": GpuSpec("GB200", 186, 8.0 * _TB, {"bf16": 2.5 * _PF, "fp8": 5.0 * _PF, "fp4": 10.0 * _PF}, 900e9),
    "MI355X": GpuSpec("MI355X", 288, 8.0 * _TB, {"bf16": 2.5 * _PF, "fp8": 5.0 * _PF, "fp4": 10.0 * _PF}, 50e9),
}


@dataclass(frozen=True)
class SimConfig:
    """One engine instance. Defaults resemble DeepSeek-R1 (671B MoE, 37B active, MLA KV)."""

    gpu: str = "GB200"
    tp: int = 8
    ep: int = 1
    model_params_b: float = 671.0
    active_params_b: float = 37.0  # per token; equal to model_params_b for a dense model
    precision: str = "fp4"
    kv_bytes_per_token: float = 70_272.0  # 61 layers x 576 MLA dims x 2 bytes
    max_batch: int = 256
    max_prefill_tokens: int = 16_384
    compute_efficiency: float = 0.5
    memory_efficiency: float = 0.7
    step_overhead_s: float = 1e-3
    per_seq_overhead_s: float = 2e-6
    collective_latency_s: float = 20e-6  # per doubling of tp or ep, per step
    kv_link_latency_s: float = 1e-3

    @property
    def spec(self) -> GpuSpec:
        return GPUS[self.gpu]

    @property
    def total_params(self) -> float:
        return self.model_params_b * 1e9

    @property
    def active_params(self) -> float:
        return self.active_params_b * 1e9


# Bounds far past any real deployment: a value outside is a typo or an attack, and an infinite,
# huge or tiny one overflows the model's arithmetic (``model-params-b: .inf`` killed it).
LIMITS: dict[str, tuple[float, float]] = {
    "tp": (1, 4096), "ep": (1, 4096), "max_batch": (1, 1_000_000), "max_prefill_tokens": (1, 100_000_000),
    "model_params_b": (1e-3, 100_000), "active_params_b": (1e-3, 100_000), "kv_bytes_per_token": (1, 1e9),
}


def check_number(name: str, value: float, low: float, high: float) -> None:
    """ValueError unless ``low <= value <= high`` (NaN and infinities never are)."""
    option = "--" + name.replace("_", "-")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{option} must be a finite number, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{option} must be in [{low:g}, {high:g}], not {str(value)[:24]}")


def validate(cfg: SimConfig) -> None:
    """Raise ValueError with a one-line reason for a configuration that cannot run."""
    if cfg.gpu not in GPUS:
        raise ValueError(f"unknown gpu {cfg.gpu!r}; known: {', '.join(GPUS)}")
    if cfg.precision not in BYTES_PER_PARAM:
        raise ValueError(f"unknown precision {cfg.precision!r}; known: {', '.join(BYTES_PER_PARAM)}")
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in LIMITS:
            check_number(f.name, value, *LIMITS[f.name])
        elif isinstance(value, float) and not math.isfinite(value):  # the model's own constants
            raise ValueError(f"{f.name} must be a finite number, not {value!r}")
    if cfg.tp < 1 or cfg.ep < 1 or cfg.max_batch < 1 or cfg.max_prefill_tokens < 1:
        raise ValueError("tp, ep, max-batch and max-prefill-tokens must be >= 1")
    if cfg.active_params_b <= 0 or cfg.active_params > cfg.total_params:
        raise ValueError(
            f"need 0 < --active-params-b ({cfg.active_params_b:g}) <= --model-params-b ({cfg.model_params_b:g})"
        )
    if kv_capacity_tokens(cfg) <= 0:
        raise ValueError(
            f"{cfg.model_params_b:g}B params in {cfg.precision} do not fit in "
            f"{cfg.tp} x {cfg.spec.hbm_gb:g} GB of {cfg.gpu} HBM"
        )


def weight_bytes(cfg: SimConfig) -> float:
    return cfg.total_params * BYTES_PER_PARAM[cfg.precision]


def kv_capacity_tokens(cfg: SimConfig) -> int:
    """KV tokens that fit beside the weights in 90% of the instance's HBM."""
    free = cfg.tp * cfg.spec.hbm_gb * 1e9 * 0.9 - weight_bytes(cfg)
    return int(free // cfg.kv_bytes_per_token)


def _compute_s(cfg: SimConfig, tokens: float) -> float:
    flops = cfg.spec.dense_flops[cfg.precision] * cfg.tp * cfg.compute_efficiency
    return 2.0 * cfg.active_params * tokens / flops


def _collective_s(cfg: SimConfig) -> float:
    return cfg.collective_latency_s * (math.log2(cfg.tp) + math.log2(cfg.ep))


def prefill_time(cfg: SimConfig, tokens: int) -> float:
    """Seconds to prefill ``tokens`` prompt tokens (one chunk); 0 for no tokens."""
    if tokens <= 0:
        return 0.0
    return cfg.step_overhead_s + _collective_s(cfg) + _compute_s(cfg, tokens)


def touched_weight_fraction(cfg: SimConfig, batch: int) -> float:
    """Share of the weights a decode step reads: every expert some token in the batch routes to."""
    active_share = cfg.active_params / cfg.total_params
    return 1.0 - (1.0 - active_share) ** max(batch, 1)


def decode_step_time(cfg: SimConfig, batch: int, context_tokens: int) -> float:
    """Seconds for one decode step of ``batch`` sequences holding ``context_tokens`` KV in total."""
    if batch <= 0:
        return 0.0
    read = weight_bytes(cfg) * touched_weight_fraction(cfg, batch) + cfg.kv_bytes_per_token * context_tokens
    memory_s = read / (cfg.tp * cfg.spec.hbm_bytes_per_s * cfg.memory_efficiency)
    return (
        max(memory_s, _compute_s(cfg, batch))
        + cfg.step_overhead_s
        + _collective_s(cfg)
        + cfg.per_seq_overhead_s * batch
    )


def kv_transfer_time(cfg: SimConfig, tokens: int) -> float:
    """Seconds to move ``tokens`` tokens of KV cache from a prefill worker to this decode worker."""
    if tokens <= 0:
        return 0.0
    return cfg.kv_link_latency_s + cfg.kv_bytes_per_token * tokens / cfg.spec.kv_link_bytes_per_s


def steady_state(cfg: SimConfig, concurrency: int, isl: int, osl: int) -> tuple[float, float]:
    """(output tokens/s per GPU, output tokens/s per user) of a saturated aggregated engine.

    The running batch is ``min(concurrency, max_batch)`` sequences halfway through their output;
    each step also prefills the prompts of the ``batch / osl`` requests that replace finished ones.
    """
    batch = min(concurrency, cfg.max_batch)
    step = decode_step_time(cfg, batch, int(batch * (isl + osl / 2)))
    step += prefill_time(cfg, math.ceil(batch * isl / osl))
    return batch / step / cfg.tp, 1.0 / step
