"""Paged KV cache and prefix cache: allocation, sharing, the LRU free queue."""

from __future__ import annotations

import pytest

from fleetplan.sim.kvcache import KVCache
from fleetplan.sim.request import Request


def _req(i: int, prompt: int, keys: list[int] | None = None) -> Request:
    return Request(i, 0.0, prompt, 4, keys)


def test_allocation_counts_blocks_and_fails_without_change() -> None:
    kv = KVCache(10, 16, prefix_caching=False)
    a = _req(0, 100)
    assert kv.allocate(a, 100)  # ceil(100/16) = 7 blocks
    assert (a.held, kv.free, kv.used) == (7, 3, 7)
    b = _req(1, 64)
    assert not kv.allocate(b, 64)  # 4 > 3 free
    assert (b.held, kv.free) == (0, 3)
    kv.release(a)
    assert kv.free == 10


def test_prefix_hits_share_blocks_and_stop_before_last_token() -> None:
    kv = KVCache(20, 16)
    keys = [11, 12, 13, 14]
    a = _req(0, 64, keys)
    assert kv.allocate(a, 64)
    b = _req(1, 64, keys)
    # 64 tokens: at most 63 may hit, so 3 full blocks.
    assert kv.lookup(b) == 3
    assert kv.allocate(b, 64, hits=3)
    assert kv.used == 4 + 1  # the three shared blocks are counted once
    kv.release(a)
    kv.release(b)
    assert kv.free == 20
    assert kv.cached_blocks == 4


def test_freed_cached_blocks_are_evicted_in_lru_order_tail_first() -> None:
    kv = KVCache(4, 16)
    a = _req(0, 64, [1, 2, 3, 4])
    assert kv.allocate(a, 64)
    kv.release(a)  # queue: 4, 3, 2, 1 (tail block first)
    c = _req(1, 16)
    c.keys = []
    assert kv.allocate(c, 16)  # evicts key 4
    d = _req(2, 64, [1, 2, 3, 4])
    assert kv.lookup(d) == 3  # 1, 2, 3 still cached; 4 was evicted
    assert kv.allocate(d, 64, hits=3) is False  # needs 1 more block, none free
    kv.release(c)
    assert kv.allocate(d, 64, hits=3)
    assert kv.free == 0


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match='"num_blocks" must be >= 1'):
        KVCache(0, 16)
    with pytest.raises(ValueError, match='"block_size" must be >= 1'):
        KVCache(4, 0)
