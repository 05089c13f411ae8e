"""Paged KV cache of one replica: blocks allocated on demand, and the prefix cache.

Follows vLLM V1 (`vllm/v1/core/kv_cache_manager.py`, `block_pool.py`; ENGINES.md "Prefix
cache"):
- a request holds `ceil(tokens / block_size)` blocks for its computed plus scheduled tokens;
  allocation fails when the blocks it needs exceed the free blocks, and free blocks include
  cached blocks no request uses (they are evicted when allocated);
- only full prompt blocks carry a hash key; a lookup matches the longest run of leading keys
  present in the cache, and at most `num_tokens - 1` tokens (the last token is recomputed);
- freed blocks join the tail of one free queue and allocation pops its head, evicting a cached
  block's key; a request frees its blocks tail first, so its last blocks are evicted first
  (LRU); a hit on a free cached block takes it out of the queue ("touch");
- identical blocks are not deduplicated: a block computed while its key is already cached stays
  anonymous.

Models whose KV does not all grow with the context (sliding-window layers, the recurrent state of
linear-attention layers) are counted in blocks of the growing (full-attention) layers' KV: a
request also holds, from its first allocation to its release, `extra_for(req)` anonymous blocks
for the rest: the linear state (`state_blocks`) and its sliding-window layers' KV over
min(prompt + output, window) tokens (`window_ratio` blocks per block of full-layer KV). vLLM's
hybrid allocator frees the blocks a window has passed as decoding goes on; holding the window
from admission reaches about the same peak earlier (vLLM also holds a prompt's chunk beyond the
window while prefilling it, a brief peak not modelled).

Anonymous free blocks are kept as runs (one queue entry per freed request) so that freeing and
allocating cost O(1) per request, not per block, when no keys are involved.
"""

from __future__ import annotations

from collections import OrderedDict

from fleetplan.sim.request import Request

__all__ = ["KVCache", "extra_blocks"]


def extra_blocks(tokens: int, block_size: int, window_tokens: int, window_ratio: float,
                 state_blocks: int) -> int:
    """Blocks a sequence of `tokens` tokens holds beside its growing KV (module docstring):
    its linear state and its windowed layers' KV over min(tokens, window) tokens."""
    n = state_blocks
    if window_ratio:
        n += -(-int(window_ratio * min(tokens, window_tokens)) // block_size)
    return n


class KVCache:
    """Blocks of `block_size` tokens; `num_blocks` in all."""

    __slots__ = (
        "_keyed",
        "_next_run",
        "_queue",
        "_ref",
        "block_size",
        "caching",
        "free",
        "hit_tokens",
        "num_blocks",
        "query_tokens",
        "state_blocks",
        "window_ratio",
        "window_tokens",
    )

    def __init__(self, num_blocks: int, block_size: int, *, prefix_caching: bool = True,
                 window_tokens: int = 0, window_ratio: float = 0.0,
                 state_blocks: int = 0) -> None:
        if num_blocks < 1:
            raise ValueError(f'"num_blocks" must be >= 1, got {num_blocks}')
        if block_size < 1:
            raise ValueError(f'"block_size" must be >= 1, got {block_size}')
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.caching = prefix_caching
        self.free = num_blocks  # free blocks, evictable cached blocks included
        self._ref: dict[int, int] = {}  # cached key -> requests referencing it (0: in queue)
        # Free queue in eviction order: int key -> 1 (a cached block), (None, n) -> run length.
        self._queue: OrderedDict[object, int] = OrderedDict()
        self._next_run = 1
        # The queue is built when the first request with keys arrives: until then every block
        # is anonymous, order does not matter, and a counter is enough.
        self._keyed = False
        self.window_tokens = window_tokens  # sliding window of the windowed layers (0: none)
        self.window_ratio = window_ratio  # their KV per token / the full layers' KV per token
        self.state_blocks = state_blocks  # per-sequence recurrent state, in blocks
        self.query_tokens = 0  # vLLM prefix_cache_queries (tokens looked up)
        self.hit_tokens = 0  # vLLM prefix_cache_hits

    @property
    def used(self) -> int:
        """Blocks held by requests (vLLM usage = used / num_blocks)."""
        return self.num_blocks - self.free

    @property
    def cached_blocks(self) -> int:
        """Blocks whose key is in the prefix cache (in use or evictable)."""
        return len(self._ref)

    def _start_queue(self) -> None:
        self._keyed = True
        if self.free:
            self._queue[(None, 0)] = self.free

    @property
    def keyed(self) -> bool:
        """Whether any block carries a prefix-cache key (else blocks are just counted)."""
        return self._keyed

    def take_anonymous(self, n: int) -> None:
        """Take `n` free blocks for requests whose `held` the caller already raised (only while
        no block is keyed)."""
        if self._keyed or n > self.free:  # pragma: no cover - guarded by the callers
            raise RuntimeError(f"cannot take {n} anonymous blocks ({self.free} free)")
        self.free -= n

    def extra_for(self, req: Request) -> int:
        """Blocks `req` holds beside its growing KV: linear state and sliding windows."""
        return extra_blocks(req.prompt + req.output, self.block_size, self.window_tokens,
                            self.window_ratio, self.state_blocks)

    def _first_extra(self, req: Request, tokens: int) -> int:
        """The extra blocks an allocation of `tokens` takes: all of them on `req`'s first
        allocation, none after."""
        return self.extra_for(req) if not req.held and not req.extra and tokens > 0 else 0

    def lookup(self, req: Request) -> int:
        """Leading prompt blocks of `req` found in the cache (not yet claimed)."""
        keys = req.keys
        if not self._keyed or not keys:
            return 0
        limit = min(len(keys), (req.prompt + req.generated - 1) // self.block_size)
        ref = self._ref
        n = 0
        while n < limit and keys[n] in ref:
            n += 1
        return n

    def _unreferenced(self, req: Request, hits: int) -> int:
        """Of `req`'s first `hits` cached blocks, those no request holds (claiming them takes
        them off the free list)."""
        keys = req.keys
        assert keys is not None
        ref = self._ref
        return sum(1 for j in range(hits) if ref[keys[j]] == 0)

    def fits(self, req: Request, tokens: int, hits: int = 0) -> bool:
        """Whether `allocate(req, tokens, hits)` would succeed (nothing changes)."""
        new = -(-tokens // self.block_size) - req.held - hits + self._first_extra(req, tokens)
        return new <= self.free - (self._unreferenced(req, hits) if hits else 0)

    def allocate(self, req: Request, tokens: int, hits: int = 0) -> bool:
        """Give `req` the blocks for `tokens` tokens, first claiming `hits` cached blocks from a
        fresh lookup. Returns False, changing nothing, when the free blocks do not suffice."""
        bs = self.block_size
        new = -(-tokens // bs) - req.held - hits
        extra = self._first_extra(req, tokens)
        new += extra
        if hits:
            touched = self._unreferenced(req, hits)
            if new > self.free - touched:
                return False
            keys = req.keys
            assert keys is not None
            ref = self._ref
            queue = self._queue
            for j in range(hits):
                key = keys[j]
                if ref[key] == 0:
                    del queue[key]
                ref[key] += 1
            req.cached.extend(keys[:hits])
            req.held += hits
            req.reg = hits
            self.free -= touched
        elif new > self.free:
            return False
        if self.caching and req.keys is not None and not self._keyed:
            self._start_queue()
        if new > 0:
            if self._keyed:
                self._take(new)
            self.free -= new
            req.held += new - extra
            if extra:
                req.extra = extra
        if self._keyed and req.keys is not None:
            self._register(req, tokens)
        return True

    def _register(self, req: Request, tokens: int) -> None:
        keys = req.keys
        assert keys is not None
        full = min(tokens // self.block_size, len(keys))
        ref = self._ref
        for j in range(req.reg, full):
            key = keys[j]
            if key not in ref:
                ref[key] = 1
                req.cached.append(key)
        req.reg = max(req.reg, full)

    def _take(self, n: int) -> None:
        """Pop `n` blocks from the head of the free queue, evicting cached keys."""
        queue, ref = self._queue, self._ref
        while n:
            head = next(iter(queue))
            if isinstance(head, tuple):
                run = queue[head]
                if run > n:
                    queue[head] = run - n
                    return
                del queue[head]
                n -= run
            else:
                del queue[head]
                del ref[head]  # type: ignore[arg-type]
                n -= 1

    def release(self, req: Request) -> None:
        """Free all of `req`'s blocks (on finish or preemption), tail first."""
        if not self._keyed:
            self.free += req.held + req.extra
            req.held = req.extra = 0
            return
        anon = req.held - len(req.cached) + req.extra
        freed = anon
        queue = self._queue
        if anon:
            queue[(None, self._next_run)] = anon
            self._next_run += 1
        ref = self._ref
        for key in reversed(req.cached):
            c = ref[key] - 1
            ref[key] = c
            if c == 0:
                queue[key] = 1
                freed += 1
        self.free += freed
        req.held = req.extra = 0
        req.cached = []
        req.reg = 0
