"""Wire messages of one request (SPEC §1.7): every hash id becomes a deterministic block of
``block_size`` words, equal ids give equal blocks within a trace (root and subagents), other
traces get unrelated blocks; synthetic tails come from a sampler keyed by
``<session_id>:turn_<k>:partial_tail``; the play's cache-bust marker opens the first user
message. No tokenizer runs here: a block is ``block_size`` common English words (one token each
in the usual BPE vocabularies, and exactly one token each under the simulated engine), so the
server's ``prompt_tokens`` is ``in`` plus template and marker tokens."""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from typing import Any

from ixhpc.bench.agentic.plan import Turn

WORDS = (
    "the of and to in is was that for on with as by at from his her they this had not are but "
    "one have were which all she when their there been has will more out would who so if about "
    "into them can only other time new some could these two may first then do any like my now "
    "over such our man me even most made after also did many before must through back years "
    "where much your way well down should because each just those people how too little state "
    "good very make world still own see men work long get here between both life being under "
    "never day same another know while last might us great old year off come since against go "
    "came right used take three"
).split()
_CACHE_BLOCKS = 1 << 16  # bounded: about 20 MB of block text


class BlockText:
    def __init__(self, seed: int, block_size: int) -> None:
        self.seed, self.block_size = seed, block_size
        self._cache: OrderedDict[tuple[str, int], str] = OrderedDict()

    def block(self, scope: str, hash_id: int) -> str:
        key = (scope, hash_id)
        text = self._cache.get(key)
        if text is not None:
            self._cache.move_to_end(key)
            return text
        digest = hashlib.sha256(f"{self.seed}:{scope}:{hash_id}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        text = " ".join(rng.choices(WORDS, k=self.block_size))
        self._cache[key] = text
        if len(self._cache) > _CACHE_BLOCKS:
            self._cache.popitem(last=False)
        return text

    def tail(self, session_id: str, turn: int, n: int) -> str:
        rng = random.Random(f"{self.seed}:{session_id}:turn_{turn}:partial_tail")
        return " ".join(rng.choices(WORDS, k=n))


def messages(text: BlockText, scope: str, session_id: str, turn: Turn, marker: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    marked = False
    for seg in turn.segments:
        parts = [text.block(scope, h) for h in seg.blocks]
        if seg.tail:
            parts.append(text.tail(session_id, turn.index, seg.tail))
        content = " ".join(parts)
        if seg.role == "user" and not marked:
            content = f"{marker}\n\n{content}"
            marked = True
        out.append({"role": seg.role, "content": content})
    if not marked:  # no user segment (a system-only prompt): the marker still opens the prompt
        out.insert(0, {"role": "user", "content": marker})
    return out
