"""Agentic trace replay (InferenceX's AgentX ``agentic-coding`` scenario), docs/agentic.md.

``traces``: the corpus format (read, validate, generate synthetic corpora); ``plan``: streams,
spawn/join anchors, pacing delays and prompt segment plans of one trace; ``prompts``: the wire
messages; ``schedule``: the replay state machine (lanes, t*, warm-up, idle caps), clock-free;
``simulate``: that machine under a toy latency model (the SPEC's worked schedule);
``replay``: that machine on the live HTTP client; ``report``: the SPEC §3 metrics and gate.
Standard library and numpy only: this runs inside engine containers.
"""
