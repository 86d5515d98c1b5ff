"""Layouts and MTP as the references launch them (issue 15, item 5)."""

from __future__ import annotations

import json

import pytest
import yaml

from ixhpc import engines


def _launch(framework: str, role: str, **over: object) -> engines.Launch:
    base: dict[str, object] = dict(framework=framework, role=role, model="/m", served_model_name="m",
                                   host="h", port=8000, precision="fp4")
    return engines.launch(engines.LaunchSpec(**{**base, **over}))


def _after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_a_tp1_ep16_dp_attention_item_is_a_16_gpu_engine() -> None:
    """InferenceX's AMD decode items `tp: 1, ep: 16, dp-attn` (their scripts: TP = nodes x 8 /
    workers = 16): 16-way DP attention with experts over 16, not a TP1/DP1 engine on 16 GPUs."""
    dep = dict(tp=1, ep=16, dp_attn=True)
    sg = _launch("sglang-disagg", "decode", **dep).argv
    assert (_after(sg, "--tp-size"), _after(sg, "--dp-size"), _after(sg, "--ep-size")) == ("16", "16", "16")
    vl = _launch("vllm", "decode", **dep).argv
    assert (_after(vl, "--tensor-parallel-size"), _after(vl, "--data-parallel-size")) == ("1", "16")
    trt = _launch("trt", "decode", **dep).argv
    assert (_after(trt, "--tp_size"), _after(trt, "--ep_size")) == ("16", "16")
    # tp >= ep keeps its layout
    plain = _launch("sglang", "server", tp=8, ep=1).argv
    assert _after(plain, "--tp-size") == "8" and "--dp-size" not in plain


@pytest.mark.parametrize("framework", ["sglang-disagg", "vllm", "trt", "atom"])
def test_mtp_depth_comes_from_the_recipe_or_the_engine_default(framework: str) -> None:
    role = "server" if framework == "atom" else "decode"
    default = _launch(framework, role, tp=8, spec_decoding="mtp")
    text = json.dumps(default.argv) + json.dumps(default.files)
    for invented in ("--speculative-num-steps", "num_speculative_tokens", "num_nextn_predict_layers",
                     "--num-speculative-tokens"):
        assert invented not in text, (framework, invented)
    assert any(w in text for w in ("EAGLE", "mtp", "MTP"))
    set2 = _launch(framework, role, tp=8, spec_decoding="mtp", additional_settings=["MTP_SIZE=2"])
    text2 = json.dumps(set2.argv) + json.dumps(set2.files)
    assert any(w in text2 for w in ('"--speculative-num-steps", "2"', '\\"num_speculative_tokens\\": 2',
                                     "num_nextn_predict_layers: 2", '"--num-speculative-tokens", "2"')), text2


@pytest.mark.parametrize("framework", ["sglang-disagg", "vllm", "trt", "dynamo-sglang"])
def test_mtp_only_on_the_roles_that_decode(framework: str) -> None:
    prefill = _launch(framework, "prefill", tp=8, spec_decoding="mtp", additional_settings=["MTP_SIZE=1"])
    decode = _launch(framework, "decode", tp=8, spec_decoding="mtp", additional_settings=["MTP_SIZE=1"])
    flat = [json.dumps(x.argv) + json.dumps({k: yaml.safe_load(v) for k, v in x.files.items()})
            for x in (prefill, decode)]
    speculative = ("EAGLE", "mtp", "MTP")
    assert not any(s in flat[0] for s in speculative), framework
    assert any(s in flat[1] for s in speculative), framework


def test_the_client_sends_temperature_zero_and_can_use_the_chat_template() -> None:
    from ixhpc.bench import client
    from ixhpc.bench.__main__ import build_parser
    from ixhpc.bench.dataset import Prompt

    prompt = Prompt("a b c", 3, 8)
    body = client._payload(client.ClientConfig(base_url="http://x", model="m"), prompt)
    assert body["temperature"] == 0.0 and body["prompt"] == "a b c"
    args = build_parser().parse_args(["--base-url", "http://x", "--isl", "3", "--osl", "8",
                                      "--max-concurrency", "1", "--use-chat-template"])
    assert args.use_chat_template and args.temperature == 0.0
    chat = client._payload(client.ClientConfig(base_url="http://x", model="m",
                                                endpoint="/v1/chat/completions"), prompt)
    assert chat["messages"] == [{"role": "user", "content": "a b c"}] and "prompt" not in chat
