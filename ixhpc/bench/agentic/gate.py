"""The agentic replay's gate (agentx SPEC §3.7), spelled once: ``report`` applies it to a replay,
``ixhpc.bench.validity`` to a stored point. No imports: the validity module stays stdlib-only.

InferenceX fails a point whose errors exceed 10 % of the completed profiling requests
(inclusive: exactly 10 % passes); AgentX calls a profile shorter than 900 s non-canonical (its
steady state needs it)."""

FAILURE_THRESHOLD = 0.10       # errors / completed profiling requests
MIN_CANONICAL_DURATION = 900.0  # profiling seconds
