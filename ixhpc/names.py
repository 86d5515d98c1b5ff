"""Point and job keys: safe as file names, unique per distinct input, bounded in length.

A key is readable (the config key, sequence lengths, shape, concurrencies) where it can be.
When making it safe changed the text (``a b`` and ``a-b`` would both read ``a-b``; non-ASCII
letters become ``-``) or it is too long for a file name, a short hash of the exact text is
appended, so two distinct inputs never share a key and every key fits a file name with room
for suffixes (``.h5``, ``.sbatch``, ``.c<C>``, ``.damaged-<stamp>``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

MAX_KEY = 150            # bytes (ASCII); file names allow 255
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_HASH = 8                # hex digits of sha256


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH]


def key(text: str) -> str:
    """``text`` as a file-safe key; hashed when that changed it or it is too long."""
    safe = _UNSAFE.sub("-", text)
    if safe == text and len(safe) <= MAX_KEY:
        return safe
    return f"{safe[:MAX_KEY - _HASH - 1]}_{digest(text)}"


def concs(values: Sequence[int]) -> str:
    """A concurrency list as a key part: all of them when few, else first-last and count
    (the exact list is in the key's hash when two lists would read the same)."""
    if len(values) <= 4:
        return "-".join(map(str, values))
    return f"{values[0]}-{values[-1]}n{len(values)}"


# The concurrency part of a point key (``point_key``), before the suffixes ``unique`` adds.
_CONC_PART = re.compile(r"_c[0-9n-]+(?=(_[0-9a-f]{8})?(_[0-9]+)?$)")


def point_key(base: str, values: Sequence[int]) -> str:
    """A point's key: what it runs (``base``) and its concurrencies."""
    return key(f"{base}_c{concs(values)}")


def unique(k: str, definition: str, repeat: int = 1) -> str:
    """``k`` told apart from keys that read the same: a hash of the point's full definition,
    then (an identical point written again) its count."""
    k = key(f"{k}_{digest(definition)}")
    return key(f"{k}_{repeat}") if repeat > 1 else k


def with_concs(k: str, values: Sequence[int]) -> str:
    """The key ``k`` (a ``point_key``, perhaps made ``unique``) naming ``values`` instead of
    its own concurrencies; ``values`` appended where a hashed key lost them."""
    label = f"_c{concs(values)}"
    m = _CONC_PART.search(k)
    return key(k[:m.start()] + label + k[m.end():] if m else k + label)
