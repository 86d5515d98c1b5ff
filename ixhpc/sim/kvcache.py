"""The simulated engine's prefix cache (SPEC §5.2-5.3 of the AgentX reference): KV blocks keyed
by a chained hash of the prompt's tokens, a finite GPU pool with LRU eviction, an optional
DRAM tier.

* **Keys.** Block ``j`` of a prompt is keyed by the hash of (key of block ``j-1``, the tokens of
  block ``j``): a hit is always a prefix, and two prompts share a key exactly when they share
  every token up to the end of that block, as in vLLM's and SGLang's caches. Only whole blocks
  are cached; an engine always recomputes at least one token, so at most ``prompt - 1`` hit.
* **GPU pool** of ``gpu_tokens``. Running requests hold ``prompt + max_tokens`` (the engine's
  reservation, as before); their prompt blocks are pinned. A finished request's prompt blocks
  stay resident as *evictable* blocks in an LRU; they are evicted (oldest first) only when the
  reservations plus the evictable blocks would exceed the pool. Two running requests sharing a
  block both count it (rare under agentic traffic: each stream's turns are sequential).
* **DRAM tier** (``dram_tokens`` > 0, the point's ``total-cpu-dram-gb``): write-back, a block
  evicted from the GPU is copied to DRAM (its own LRU, inclusive: a block loaded back keeps its
  DRAM copy). A request's prefix is GPU hits, then DRAM hits continuing it, then compute; DRAM
  hits cost a host-to-device copy (``load_time``) instead of their prefill.

Counters follow vLLM's: queries and hits in prompt tokens; the DRAM ("external") tier's queries
are the same prompt tokens, so GPU hits + DRAM hits + computed = prompt tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

BLOCK_SIZE = 64  # the AgentX traces' block size; engines use 16-256
# Host-to-device copy rate per GPU: PCIe Gen5 x16, or NVLink-C2C on Grace-Blackwell.
H2D_BYTES_PER_S = {"GB200": 450e9, "GB300": 450e9}
DEFAULT_H2D_BYTES_PER_S = 50e9


@dataclass(frozen=True)
class CacheConfig:
    enabled: bool = True
    block_size: int = BLOCK_SIZE
    gpu_tokens: int = 0    # 0: what the timing model says fits beside the weights
    dram_tokens: int = 0   # 0: no DRAM tier


DEFAULT = CacheConfig()

def dram_tokens(total_cpu_dram_gb: float, kv_bytes_per_token: float) -> int:
    """KV tokens a host budget of ``total_cpu_dram_gb`` (decimal GB, InferenceX's) holds."""
    return int(total_cpu_dram_gb * 1e9 // kv_bytes_per_token)


def block_keys(tokens: Sequence[object], block_size: int) -> list[int]:
    """Chained keys of the whole blocks of ``tokens``."""
    keys: list[int] = []
    key = 0
    for i in range(block_size, len(tokens) + 1, block_size):
        key = hash((key, tuple(tokens[i - block_size:i])))
        keys.append(key)
    return keys


@dataclass(frozen=True)
class Lookup:
    gpu_tokens: int     # prompt tokens found on the GPU
    dram_tokens: int    # found in DRAM, loaded to the GPU
    dram_blocks: int

    def computed(self, prompt_tokens: int) -> int:
        return prompt_tokens - self.gpu_tokens - self.dram_tokens


@dataclass
class Counters:
    queries: int = 0            # prompt tokens looked up
    gpu_hits: int = 0
    dram_hits: int = 0
    bytes_gpu_to_cpu: float = 0.0
    bytes_cpu_to_gpu: float = 0.0


@dataclass(eq=False)
class PrefixCache:
    cfg: CacheConfig
    gpu_capacity: int               # tokens
    kv_bytes_per_token: float
    lru: OrderedDict[int, None] = field(default_factory=OrderedDict)    # evictable GPU blocks, oldest first
    pinned: dict[int, int] = field(default_factory=dict)                # block -> running requests holding it
    dram: OrderedDict[int, None] = field(default_factory=OrderedDict)
    counters: Counters = field(default_factory=Counters)

    @property
    def evictable_tokens(self) -> int:
        return len(self.lru) * self.cfg.block_size

    def lookup(self, keys: list[int], prompt_tokens: int) -> Lookup:
        """The prompt's cached prefix now."""
        gpu = 0
        while gpu < len(keys) and (keys[gpu] in self.pinned or keys[gpu] in self.lru):
            gpu += 1
        dram = gpu
        while dram < len(keys) and keys[dram] in self.dram:
            dram += 1
        bs, top = self.cfg.block_size, max(0, prompt_tokens - 1)
        gpu_tokens = min(gpu * bs, top)
        return Lookup(gpu_tokens, min(dram * bs, top) - gpu_tokens, dram - gpu)

    def admit(self, keys: list[int], found: Lookup, prompt_tokens: int, reserved: int) -> None:
        """Count the query, pin the request's blocks (hit, loaded or about to be computed), then
        evict until the reservations (``reserved`` tokens, this request's included) and the
        evictable blocks fit."""
        c = self.counters
        c.queries += prompt_tokens
        c.gpu_hits += found.gpu_tokens
        c.dram_hits += found.dram_tokens
        c.bytes_cpu_to_gpu += found.dram_tokens * self.kv_bytes_per_token
        for k in keys:
            self.lru.pop(k, None)
            self.pinned[k] = self.pinned.get(k, 0) + 1
        gpu_blocks = -(-found.gpu_tokens // self.cfg.block_size)
        for k in keys[gpu_blocks:gpu_blocks + found.dram_blocks]:
            if k in self.dram:
                self.dram.move_to_end(k)
        self.evict(reserved)

    def release(self, keys: list[int]) -> None:
        """A request ended: its prompt blocks become evictable (most recently used)."""
        for k in keys:
            n = self.pinned.get(k, 0) - 1
            if n > 0:
                self.pinned[k] = n
            elif n == 0:
                del self.pinned[k]
                self.lru[k] = None

    def evict(self, reserved: int) -> None:
        while self.lru and reserved + self.evictable_tokens > self.gpu_capacity:
            key, _ = self.lru.popitem(last=False)
            if self.cfg.dram_tokens:
                self._to_dram(key)

    def _to_dram(self, key: int) -> None:
        bs = self.cfg.block_size
        if key in self.dram:  # inclusive tier: the copy is still there
            self.dram.move_to_end(key)
            return
        self.dram[key] = None
        self.counters.bytes_gpu_to_cpu += bs * self.kv_bytes_per_token
        while len(self.dram) * bs > self.cfg.dram_tokens:
            self.dram.popitem(last=False)

    def dram_usage(self) -> float:
        return min(1.0, len(self.dram) * self.cfg.block_size / self.cfg.dram_tokens) if self.cfg.dram_tokens else 0.0


def h2d_bytes_per_s(gpu: str) -> float:
    return H2D_BYTES_PER_S.get(gpu.upper(), DEFAULT_H2D_BYTES_PER_S)
