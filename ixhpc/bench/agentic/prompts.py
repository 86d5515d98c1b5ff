"""Wire messages of one request (SPEC §1.7): every hash id becomes a deterministic block of
``block_size`` words, equal ids give equal blocks within a trace (root and subagents), other
traces get unrelated blocks; synthetic tails come from a sampler keyed by
``<session_id>:turn_<k>:partial_tail``; the play's cache-bust marker opens the first user
message. No tokenizer runs here: a block is ``block_size`` common English words (one token each
in the usual BPE vocabularies, and exactly one token each under the simulated engine), so the
server's ``prompt_tokens`` is ``in`` plus template and marker tokens."""

from __future__ import annotations

import hashlib
import json
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
assert all(json.dumps(w) == f'"{w}"' for w in WORDS)  # block text needs no JSON escaping (messages_json)


class BlockText:
    """Block text, kept encoded (ASCII words): the wire body is built from these bytes."""

    def __init__(self, seed: int, block_size: int) -> None:
        self.seed, self.block_size = seed, block_size
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def block(self, scope: str, hash_id: int) -> str:
        return self.block_bytes(scope, hash_id).decode()

    def block_bytes(self, scope: str, hash_id: int) -> bytes:
        key = (scope, hash_id)
        text = self._cache.get(key)
        if text is not None:
            self._cache.move_to_end(key)
            return text
        digest = hashlib.sha256(f"{self.seed}:{scope}:{hash_id}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        text = " ".join(rng.choices(WORDS, k=self.block_size)).encode()
        self._cache[key] = text
        if len(self._cache) > _CACHE_BLOCKS:
            self._cache.popitem(last=False)
        return text

    def tail(self, session_id: str, turn: int, n: int) -> str:
        rng = random.Random(f"{self.seed}:{session_id}:turn_{turn}:partial_tail")
        return " ".join(rng.choices(WORDS, k=n))


def messages_json(text: BlockText, scope: str, session_id: str, turn: Turn, marker: str) -> bytes:
    """The request's chat messages as a JSON array: a message per segment (its blocks' text,
    then its tail), the play's marker opening the first user message. Joined from the blocks'
    cached bytes: the words need no escaping, so only roles and the marker go through the JSON
    encoder (encoding tens of kB of prompt per request was most of the replay's own cost)."""
    out: list[bytes] = []
    marked = False
    for seg in turn.segments:
        parts = [text.block_bytes(scope, h) for h in seg.blocks]
        if seg.tail:
            parts.append(text.tail(session_id, turn.index, seg.tail).encode())
        head = b""
        if seg.role == "user" and not marked:
            head, marked = json.dumps(f"{marker}\n\n")[1:-1].encode(), True
        out.append(b'{"role": ' + json.dumps(seg.role).encode() + b', "content": "' + head + b" ".join(parts) + b'"}')
    if not marked:
        out.insert(0, b'{"role": "user", "content": ' + json.dumps(marker).encode() + b"}")
    return b"[" + b", ".join(out) + b"]"


def messages(text: BlockText, scope: str, session_id: str, turn: Turn, marker: str) -> list[dict[str, Any]]:
    """The request's chat messages (``messages_json`` decoded)."""
    return list(json.loads(messages_json(text, scope, session_id, turn, marker)))
