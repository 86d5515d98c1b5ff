"""InferenceX's ``framework:`` values and the engine family each names (``ixhpc.engines``
builds the families' command lines; recipes are checked against this table without loading
those builders)."""

FRAMEWORKS: dict[str, str] = {
    "sglang": "sglang", "sglang-disagg": "sglang",
    "vllm": "vllm",
    "trt": "trt", "trt-llm": "trt", "trtllm": "trt",
    "dynamo-sglang": "dynamo-sglang", "dynamo-trt": "dynamo-trt", "dynamo-vllm": "dynamo-vllm",
    "atom": "atom",
    "sim": "sim",
}
