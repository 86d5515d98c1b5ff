"""The simulated engine's answers to arithmetic word problems (ixhpc.evals.problems).

A chat request whose last user message asks one of the generated questions gets a worked
answer ending in ``#### <number>`` instead of filler tokens, so lm-eval's extraction and
scoring run for real against the simulated engine. ``SIM_ANSWER_ERROR_RATE`` (0 to 1, in
the engine's environment: a recipe's ``ixhpc.env``) makes that share of questions answered
wrong; which ones is fixed by the question's text, so a score is the same run after run.
Any other request gets None (the engine's usual filler).
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from ixhpc.evals.problems import solve

ERROR_RATE_VAR = "SIM_ANSWER_ERROR_RATE"
_ASKED = re.compile(r"Question: (.*?)(?:\n|$)")


def error_rate() -> float:
    text = os.environ.get(ERROR_RATE_VAR, "0")
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{ERROR_RATE_VAR} must be a number from 0 to 1, found {text!r}")
    return rate


def _last_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list):
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        content = users[-1].get("content", "") if users else ""
        if isinstance(content, list):  # OpenAI content parts
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return str(content)
    return str(body.get("prompt", ""))


def wrong(question: str, rate: float) -> bool:
    """Whether this question is one the engine gets wrong at ``rate`` (fixed per question)."""
    h = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big")
    return h / 2**64 < rate


def reply(body: dict[str, Any]) -> str | None:
    """The answer text for a generated question in the request, else None."""
    asked = _ASKED.findall(_last_user_text(body))
    answer = solve(asked[-1]) if asked else None
    if answer is None:
        return None
    if wrong(asked[-1], error_rate()):
        answer += 1
    return f"Working through each step in order, the count comes to {answer}.\n#### {answer}"
