"""The validity gate: one verdict per benchmark point, with reason codes. The ONE place where
the codes, their thresholds and the verdict function live (docs/contracts.md, "Validity").

The load generator measures the evidence once, after the last request (``ixhpc.bench.metrics.
validity_evidence``: O(requests), nothing per event beyond a few counters), and ``judge`` turns it
into a verdict. Ingest judges the evidence again with these thresholds, stores the verdict in
the point's HDF5 file, and merges, reports and exports leave invalid points out unless asked.
A point file without a verdict (written before the gate existed) is ``unknown``: never invalid.

Standard library only: the load generator imports it inside engine containers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ixhpc.bench.agentic import gate

VALID, INVALID, UNKNOWN = "valid", "invalid", "unknown"
VERDICTS = (VALID, INVALID, UNKNOWN)

# ----------------------------------------------------------------------------- reason codes
FAILED_REQUESTS = "failed_requests"
STALLED_STREAM = "stalled_stream"
NO_OUTPUT_TOKENS = "no_output_tokens"
TOO_FEW_OUTPUT_TOKENS = "too_few_output_tokens"
OSL_OFF = "osl_off"
ISL_OFF = "isl_off"
OUTPUT_TOKENS_UNCONFIRMED = "output_tokens_unconfirmed"
CLIENT_BEHIND = "client_behind"
# agentic-coding points (the trace replay, agentx SPEC §3.7 and §2.1; ``judge_agentic``)
AGENTIC_FAILED_REQUESTS = "agentic_failed_requests"
BELOW_DURATION_FLOOR = "below_duration_floor"
# custom benchmarks (srt-slurm ``benchmark.type: custom``): only the step's exit status is known
CUSTOM_EXIT_STATUS = "custom_exit_status"

# Evidence keys a client without ixhpc's per-event counters adds (InferenceX's benchmark_serving,
# ixhpc.results.serving): the codes its data cannot check (comma-separated; the verdict lists
# them as "unchecked"), and who counted the input tokens ("server" unless said).
UNCHECKED = "unchecked"
INPUT_COUNTER = "input_counter"

CODES: dict[str, str] = {
    FAILED_REQUESTS: "too many requests failed (HTTP errors, refused connections, timeouts, broken "
                     "streams); they stay in the denominator",
    STALLED_STREAM: "a request received nothing for the stall timeout: the engine stalled",
    NO_OUTPUT_TOKENS: "no output token came back at all",
    TOO_FEW_OUTPUT_TOKENS: "too many completed requests returned fewer than 2 tokens (prefill only)",
    OSL_OFF: "the realized output length is far from the requested one",
    ISL_OFF: "the input length the server counted is far from the requested one",
    OUTPUT_TOKENS_UNCONFIRMED: "the server did not report usage and its chunks carry several tokens: "
                               "the output token counts (and throughput) are chunk counts",
    CLIENT_BEHIND: "the client read the stream later than the inter-token latency: token times are "
                   "its own, not the server's",
    AGENTIC_FAILED_REQUESTS: f"agentic replay: more than {gate.FAILURE_THRESHOLD:.0%} of the profiling requests "
                             f"failed, or none succeeded (InferenceX's gate; exactly {gate.FAILURE_THRESHOLD:.0%} "
                             "passes)",
    BELOW_DURATION_FLOOR: f"agentic replay: the profiling window is shorter than AgentX's "
                          f"{gate.MIN_CANONICAL_DURATION:g} s floor: a non-canonical run, not comparable with "
                          "InferenceX's rows",
    CUSTOM_EXIT_STATUS: "custom benchmark: its command exited with a non-zero status (its output is "
                        "its own: no throughput figures are judged)",
}

# ----------------------------------------------------------------------------- thresholds
# Failed requests are left out of the latency distributions, and they are the slow ones
# (timeouts, stalls): beyond 1% of them the p99 describes a censored sample.
MAX_FAILED_SHARE = 0.01
# Any stalled stream: a healthy engine never sends nothing for the whole stall timeout.
MAX_STALLED = 0
# A request with one token measured prefill only (no ITL, no TPOT): the signature of a decode
# stage that never ran (e.g. every KV transfer failed while prefill answered).
MIN_OUTPUT_TOKENS = 2
# ...tolerated for 1% of the completed requests, as the failed ones.
MAX_SHORT_SHARE = 0.01
# With ignore_eos a server must generate exactly max_tokens; 5% absorbs servers that count an
# end token differently, and is far below a real fault (a short or doubled stream).
OSL_TOLERANCE = 0.05
# Without ignore_eos the model may stop early; below half the requested length the point no
# longer measures the OSL its row states.
MIN_OSL_RATIO_WITHOUT_IGNORE_EOS = 0.5
# Text prompts are about one token per word, and a chat template adds tens of tokens: 10% and
# 64 tokens absorb both; a truncated or doubled prompt is far outside.
ISL_TOLERANCE = 0.10
ISL_SLACK_TOKENS = 64
# Without usage, chunks are counted as tokens. A BPE token holds one word at most (its leading
# space included): when more than a quarter of the chunks hold several words, or chunks average
# more than 3x a token's ~4 characters, chunks carry several tokens.
MAX_MULTI_WORD_CHUNK_SHARE = 0.25
MAX_CHARS_PER_CHUNK = 12.0
# The client is behind when a typical request's longest read wait exceeds the mean gap between
# tokens: the next token had arrived before the previous one was read, so events share reads
# (the mean, not the median: the median of gaps between events that shared a read is 0).
MAX_READ_LAG_ITL_RATIO = 1.0
# ...and by more than 1 ms: below that a lag is scheduler noise, and streams whose events come
# in bursts (gaps of microseconds) would look behind.
MIN_READ_LAG_MS = 1.0

# Stall timeout the job passes to the client: 1/20 of the job's time limit, at least 60 s (a
# long prompt at high concurrency can legitimately wait tens of seconds for its first token)
# and at most 300 s (the client's default): a stalled engine ends the point, not the job.
STALL_TIMEOUT_SHARE = 1 / 20
STALL_TIMEOUT_MIN_S = 60.0
STALL_TIMEOUT_MAX_S = 300.0


def stall_timeout(time_limit_min: int) -> str:
    """The ``--stall-timeout`` argument for a job of this time limit (minutes)."""
    seconds = time_limit_min * 60.0 * STALL_TIMEOUT_SHARE
    return f"{min(STALL_TIMEOUT_MAX_S, max(STALL_TIMEOUT_MIN_S, seconds)):g}"


def _share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


def _num(evidence: Mapping[str, Any], key: str) -> float:
    value = evidence.get(key, 0)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def judge(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict over a point's evidence (``metrics.validity_evidence``):
    ``{"verdict", "reasons": [code, ...], "details": {code: text}}``."""
    e = evidence
    details: dict[str, str] = {}
    n = _num(e, "requests")
    failed = _num(e, "failed")
    if failed > MAX_FAILED_SHARE * n:
        kinds = ", ".join(f"{int(_num(e, k))} {k.replace('_', ' ')}" for k in ("timed_out", "refused", "stalled")
                          if _num(e, k))
        details[FAILED_REQUESTS] = (f"{int(failed)} of {int(n)} requests failed"
                                    f"{' (' + kinds + ')' if kinds else ''}; more than {MAX_FAILED_SHARE:.0%}")
    if _num(e, "stalled") > MAX_STALLED:
        details[STALLED_STREAM] = f"{int(_num(e, 'stalled'))} request(s) stalled ({e.get('stall_timeout')} s)"
    completed = n - failed
    out = _num(e, "output_tokens")
    if out == 0:
        details[NO_OUTPUT_TOKENS] = "0 output tokens"
    short = _num(e, "short_requests")
    if completed and short > MAX_SHORT_SHARE * completed:
        details[TOO_FEW_OUTPUT_TOKENS] = (f"{int(short)} of {int(completed)} completed requests returned fewer "
                                          f"than {MIN_OUTPUT_TOKENS} tokens")
    # requests completed without usage: their chunks were counted as tokens
    chunks = _num(e, "nousage_chunks")
    multi_word = _share(_num(e, "nousage_multi_word_chunks"), chunks)
    chars = _share(_num(e, "nousage_text_chars"), chunks)
    unconfirmed = _num(e, "nousage_requests") > 0 and chunks > 0 and (
        multi_word > MAX_MULTI_WORD_CHUNK_SHARE or chars > MAX_CHARS_PER_CHUNK
        or (bool(e.get("ignore_eos")) and chunks < (1 - OSL_TOLERANCE) * _num(e, "nousage_max_tokens")))
    if unconfirmed:
        details[OUTPUT_TOKENS_UNCONFIRMED] = (
            f"{int(_num(e, 'nousage_requests'))} request(s) without usage: {int(chunks)} chunks for "
            f"{int(_num(e, 'nousage_max_tokens'))} max_tokens, {multi_word:.0%} of several words, "
            f"{chars:.1f} characters each")
    requested = _num(e, "requested_output_tokens")
    if out and requested and not unconfirmed:  # unconfirmed: the realized OSL is not known
        ratio = out / requested
        if e.get("ignore_eos") and abs(ratio - 1) > OSL_TOLERANCE:
            details[OSL_OFF] = f"realized OSL {ratio:.0%} of the requested (ignore_eos: within {OSL_TOLERANCE:.0%})"
        elif not e.get("ignore_eos") and ratio < MIN_OSL_RATIO_WITHOUT_IGNORE_EOS:
            details[OSL_OFF] = (f"realized OSL {ratio:.0%} of the requested "
                                f"(at least {MIN_OSL_RATIO_WITHOUT_IGNORE_EOS:.0%})")
    asked, counted = _num(e, "requested_input_tokens"), _num(e, "reported_input_tokens")
    n_reported = _num(e, "reported_input_requests")
    if asked and n_reported and abs(counted - asked) > ISL_TOLERANCE * asked + ISL_SLACK_TOKENS * n_reported:
        details[ISL_OFF] = (f"{e.get(INPUT_COUNTER) or 'server'} counted {counted / n_reported:.0f} input "
                            f"tokens per request, {asked / n_reported:.0f} requested")
    lag, itl = _num(e, "median_read_lag_ms"), _num(e, "mean_itl_ms")
    if itl > 0 and lag > MAX_READ_LAG_ITL_RATIO * itl and lag > MIN_READ_LAG_MS:
        details[CLIENT_BEHIND] = f"median read lag {lag:.2f} ms > mean ITL {itl:.2f} ms (raise --workers)"
    reasons = [code for code in CODES if code in details]
    judged: dict[str, Any] = {"verdict": INVALID if reasons else VALID, "reasons": reasons, "details": details}
    unchecked = [code for code in str(e.get(UNCHECKED) or "").split(",") if code in CODES]
    if unchecked:
        judged["unchecked"] = unchecked
    return judged


def judge_agentic(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict of an agentic point over ``{profiling_requests, failed, duration}`` (the
    profiling requests, how many failed, the profiling seconds asked for), by the replay's gate."""
    n, failed, duration = _num(evidence, "profiling_requests"), _num(evidence, "failed"), _num(evidence, "duration")
    details: dict[str, str] = {}
    if n - failed <= 0:
        details[AGENTIC_FAILED_REQUESTS] = f"no successful profiling request ({int(n)} sent)"
    elif failed > gate.FAILURE_THRESHOLD * n:
        details[AGENTIC_FAILED_REQUESTS] = (f"{int(failed)} of {int(n)} profiling requests failed; more than "
                                            f"{gate.FAILURE_THRESHOLD:.0%}")
    if duration < gate.MIN_CANONICAL_DURATION:
        details[BELOW_DURATION_FLOOR] = (f"profiled {duration:g} s, below the {gate.MIN_CANONICAL_DURATION:g} s "
                                         f"floor (non-canonical)")
    reasons = [code for code in CODES if code in details]
    return {"verdict": INVALID if reasons else VALID, "reasons": reasons, "details": details}


def judge_custom(exit_status: int) -> dict[str, Any]:
    """A custom benchmark's verdict: its command's exit status, the only evidence there is."""
    if exit_status == 0:
        return {"verdict": VALID, "reasons": [], "details": {}}
    return {"verdict": INVALID, "reasons": [CUSTOM_EXIT_STATUS],
            "details": {CUSTOM_EXIT_STATUS: f"exit status {exit_status}"}}


def verdict_of(validity: Mapping[str, Any] | None) -> str:
    """A stored verdict, ``unknown`` for a point judged before the gate existed."""
    value = validity.get("verdict") if validity else None
    return value if value in VERDICTS else UNKNOWN


def line(validity: Mapping[str, Any] | None) -> str:
    """One line: ``invalid: code (detail); code (detail)``, ``valid`` or ``unknown``, and the
    checks the client's data could not make (``valid; not checked: code, code``)."""
    verdict = verdict_of(validity)
    unchecked = f"; not checked: {', '.join(validity['unchecked'])}" if validity and validity.get("unchecked") else ""
    if verdict != INVALID or not validity:
        return verdict + unchecked
    details = validity.get("details") or {}
    return "invalid: " + "; ".join(f"{c} ({details[c]})" if c in details else c
                                   for c in validity.get("reasons", [])) + unchecked
