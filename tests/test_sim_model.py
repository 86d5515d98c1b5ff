"""The simulated engine's timing model moves the way real engines do (trends, not numbers)."""

from __future__ import annotations

import dataclasses

import pytest

from ixhpc.sim import model

CONFIGS = [
    model.SimConfig(),  # DeepSeek-R1-like MoE on GB200
    model.SimConfig(gpu="H200", model_params_b=70, active_params_b=70, precision="fp8", tp=4, max_batch=512),
    model.SimConfig(gpu="MI355X", precision="fp8", tp=8, ep=8),
]


def _increasing(values: list[float]) -> bool:
    return all(a < b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.gpu}-{c.model_params_b:g}B-{c.precision}")
def test_throughput_per_gpu_rises_and_interactivity_falls_with_concurrency(cfg: model.SimConfig) -> None:
    concs = [c for c in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if c <= cfg.max_batch]
    points = [model.steady_state(cfg, c, isl=1024, osl=1024) for c in concs]
    assert _increasing([tput for tput, _ in points])
    assert _increasing([-inter for _, inter in points])


def test_concurrency_beyond_max_batch_adds_no_throughput() -> None:
    cfg = model.SimConfig(max_batch=64)
    assert model.steady_state(cfg, 64, 1024, 1024) == model.steady_state(cfg, 4096, 1024, 1024)


def test_prefill_and_kv_transfer_grow_with_input_length() -> None:
    cfg = model.SimConfig()
    isls = [128, 1024, 8192, 32768]
    assert _increasing([model.prefill_time(cfg, n) for n in isls])
    assert _increasing([model.kv_transfer_time(cfg, n) for n in isls])
    assert model.prefill_time(cfg, 0) == 0 and model.kv_transfer_time(cfg, 0) == 0


def test_prefill_is_compute_bound_and_decode_memory_bound() -> None:
    cfg = model.SimConfig()
    more_flops = dataclasses.replace(cfg, compute_efficiency=cfg.compute_efficiency * 2)
    more_bw = dataclasses.replace(cfg, memory_efficiency=cfg.memory_efficiency * 2)
    assert model.prefill_time(more_flops, 8192) < model.prefill_time(cfg, 8192)
    assert model.prefill_time(more_bw, 8192) == model.prefill_time(cfg, 8192)
    assert model.decode_step_time(more_bw, 32, 32 * 2048) < model.decode_step_time(cfg, 32, 32 * 2048)
    assert model.decode_step_time(more_flops, 32, 32 * 2048) == model.decode_step_time(cfg, 32, 32 * 2048)


def test_decode_step_grows_slowly_with_batch() -> None:
    cfg = model.SimConfig()
    steps = [model.decode_step_time(cfg, b, b * 2048) for b in (1, 4, 16, 64, 256)]
    assert _increasing(steps)
    # slowly: 256x the sequences costs far less than 256x the time
    assert steps[-1] < steps[0] * 256 / 4


def test_more_kv_context_makes_a_step_slower() -> None:
    cfg = model.SimConfig()
    assert model.decode_step_time(cfg, 64, 64 * 1024) < model.decode_step_time(cfg, 64, 64 * 8192)


@pytest.mark.parametrize("gpu", sorted(model.GPUS))
def test_bigger_tp_makes_a_step_and_a_prefill_faster(gpu: str) -> None:
    steps, prefills = [], []
    for tp in (2, 4, 8):
        cfg = model.SimConfig(gpu=gpu, tp=tp, model_params_b=70, active_params_b=70, precision="fp8")
        steps.append(model.decode_step_time(cfg, 16, 16 * 2048))
        prefills.append(model.prefill_time(cfg, 4096))
    assert _increasing(steps[::-1]) and _increasing(prefills[::-1])


def test_lower_precision_is_faster() -> None:
    times = [
        model.decode_step_time(model.SimConfig(gpu="B200", precision=p), 8, 8 * 1024)
        for p in ("bf16", "fp8", "fp4")
    ]
    assert _increasing(times[::-1])


def test_newer_gpu_decodes_faster() -> None:
    def step(gpu: str) -> float:
        cfg = model.SimConfig(gpu=gpu, model_params_b=70, active_params_b=70, precision="fp8")
        return model.decode_step_time(cfg, 32, 32 * 2048)

    assert step("B200") < step("H200") < step("H100")


def test_gb200_nvlink_moves_kv_faster_than_a_nic() -> None:
    assert model.kv_transfer_time(model.SimConfig(gpu="GB200"), 8192) < model.kv_transfer_time(
        model.SimConfig(gpu="B200"), 8192
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"gpu": "A100"},
        {"precision": "int3"},
        {"tp": 0},
        {"active_params_b": 1000},
        {"model_params_b": 2000, "active_params_b": 37, "tp": 1},  # does not fit in one GPU
    ],
)
def test_validate_rejects_impossible_configs(changes: dict) -> None:
    with pytest.raises(ValueError):
        model.validate(dataclasses.replace(model.SimConfig(), **changes))


def test_every_listed_gpu_validates() -> None:
    for gpu in model.GPUS:
        model.validate(model.SimConfig(gpu=gpu))
