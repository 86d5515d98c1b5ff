"""A small arithmetic word-problem set in GSM8K's format, generated from a seed (no download).

Each problem is a few sentences, each one operation on a running count, and a question;
the answer is GSM8K's: worked steps, then ``#### <number>``. ``solve`` reads a question back
with the same sentence patterns: the simulated engine uses it to answer (ixhpc.sim.answers),
so a local eval exercises the whole path (lm-eval, extraction, scores, thresholds) for real.
Standard library only: the simulated engine imports it inside the run's bundle.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ivo", "Jin", "Kofi", "Lena")
ITEMS = ("apples", "marbles", "stickers", "pencils", "coins", "cards", "shells", "books")


@dataclass(frozen=True)
class Op:
    """One sentence kind: its text, its pattern, and what it does to the running count."""

    text: str                                  # over {who}, {item}, {a}, {b}
    pattern: str                               # matches the sentence, numbers as groups
    apply: Callable[[int, list[int]], int]
    step: str                                  # the worked step, over {x} {a} {b} {y}


START = Op("{who} has {a} {item}.", r"has (\d+) \w+\.", lambda x, n: n[0], "{who} starts with {y}.")
OPS = (
    Op("Then {who} buys {a} more.", r"buys (\d+) more\.", lambda x, n: x + n[0], "{x} + {a} = {y}."),
    Op("Then {who} gives away {a}.", r"gives away (\d+)\.", lambda x, n: x - n[0], "{x} - {a} = {y}."),
    Op("Then {who} gets {a} boxes with {b} {item} in each.", r"gets (\d+) boxes with (\d+) \w+ in each\.",
       lambda x, n: x + n[0] * n[1], "{x} + {a} * {b} = {y}."),
    Op("Then {who} doubles the {item}.", r"doubles the \w+\.", lambda x, n: 2 * x, "2 * {x} = {y}."),
)
_PATTERN = re.compile("|".join(f"(?:{op.pattern})" for op in (START, *OPS)))
QUESTION = "How many {item} does {who} have now?"


def _numbers(rng: random.Random, op: Op, x: int) -> list[int]:
    if op is START:
        return [rng.randint(5, 60)]
    if "gives away" in op.text:
        return [rng.randint(1, max(1, x - 1))]   # never below zero
    if "boxes" in op.text:
        return [rng.randint(2, 6), rng.randint(2, 12)]
    return [rng.randint(1, 40)] if "{a}" in op.text else []


def problem(rng: random.Random) -> dict[str, str]:
    """One problem as a GSM8K row: ``question`` and ``answer`` (steps, then ``#### N``)."""
    who, item = rng.choice(NAMES), rng.choice(ITEMS)
    sentences, steps, x = [], [], 0
    for op in (START, *rng.sample(OPS, rng.randint(2, 3))):
        n = _numbers(rng, op, x)
        y = op.apply(x, n)
        fields = {"who": who, "item": item, "a": n[0] if n else "", "b": n[1] if len(n) > 1 else ""}
        sentences.append(op.text.format(**fields))
        steps.append(op.step.format(x=x, y=y, **fields))
        x = y
    question = " ".join([*sentences, QUESTION.format(item=item, who=who)])
    return {"question": question, "answer": " ".join(steps) + f"\n#### {x}"}


def problems(seed: int, count: int) -> Iterator[dict[str, str]]:
    rng = random.Random(seed)
    for _ in range(count):
        yield problem(rng)


def solve(question: str) -> int | None:
    """The answer to a generated question (None: not one of ours)."""
    x, seen = 0, False
    for m in _PATTERN.finditer(question):
        op = next(o for o in (START, *OPS) if re.fullmatch(o.pattern, m.group(0)))
        x = op.apply(x, [int(g) for g in m.groups() if g is not None])
        seen = True
    return x if seen and question.rstrip().endswith("have now?") else None


def jsonl(rows: Iterator[dict[str, str]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
