"""Prefix reuse of traces with per-block hashes (Mooncake style): how much a prefix cache saves.

A request's blocks are looked up in order and only the leading run found in the cache is a
hit, as in a prefix (radix) cache; the request's blocks are then inserted (or refreshed). A
block's hash is compared with blocks of *earlier* requests only. Hit tokens are the leading
hit blocks times the block size, capped at the request's input tokens (the last block is
partial), and the hit rate is hit tokens over all input tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

__all__ = ["PrefixReuse", "leading_hits_lru", "leading_hits_unbounded", "prefix_reuse"]


@dataclass(frozen=True)
class PrefixReuse:
    """Block repetition and token-weighted prefix-cache hit rates."""

    block_tokens: int
    blocks_total: int
    blocks_unique: int
    repeat_block_fraction: float
    hit_rate_unbounded: float
    cache_blocks: int | None = None
    hit_rate_lru: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def _explode(hash_ids: pl.Series) -> pl.Series:
    """Flatten lists; empty lists contribute nothing (polars < 1.34 gives them as nulls)."""
    try:
        return hash_ids.explode(empty_as_null=False)
    except TypeError:  # pragma: no cover - older polars without the keyword
        return hash_ids.explode()


def _flat(hash_ids: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat hashes, request index of each, list lengths)."""
    lens = hash_ids.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = _explode(hash_ids).drop_nulls().to_numpy().astype(np.int64)
    req = np.repeat(np.arange(len(lens)), lens)
    return flat, req, lens


def leading_hits_unbounded(hash_ids: pl.Series) -> np.ndarray:
    """Per request, the length of the leading run of blocks seen in an earlier request."""
    flat, req, lens = _flat(hash_ids)
    if flat.size == 0:
        return np.zeros(len(lens), dtype=np.int64)
    _, first_idx, inverse = np.unique(flat, return_index=True, return_inverse=True)
    seen_before = req[first_idx][inverse] < req
    starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
    pos = np.arange(flat.size) - np.repeat(starts, lens)
    first_miss = lens.copy()
    miss = ~seen_before
    np.minimum.at(first_miss, req[miss], pos[miss])
    return first_miss


def leading_hits_lru(hash_ids: pl.Series, cache_blocks: int) -> np.ndarray:
    """Per request, the leading run of blocks found in an LRU cache of `cache_blocks` blocks."""
    cache: OrderedDict[int, None] = OrderedDict()
    out = np.zeros(hash_ids.len(), dtype=np.int64)
    for r, blocks in enumerate(hash_ids.to_list()):
        if not blocks:
            continue
        hits = 0
        for h in blocks:
            if h not in cache:
                break
            hits += 1
        out[r] = hits
        for h in blocks:
            if h in cache:
                cache.move_to_end(h)
            else:
                cache[h] = None
                if len(cache) > cache_blocks:
                    cache.popitem(last=False)
    return out


def _hit_rate(hits: np.ndarray, input_tokens: np.ndarray, block_tokens: int) -> float:
    total = int(input_tokens.sum())
    if total == 0:
        return 0.0
    hit_tokens = np.minimum(hits * block_tokens, input_tokens)
    return float(hit_tokens.sum()) / total


def prefix_reuse(table: pl.DataFrame, block_tokens: int, cache_blocks: int | None) -> PrefixReuse:
    """Reuse figures of a canonical table with a `hash_ids` column."""
    hash_ids = table["hash_ids"]
    flat, _, _ = _flat(hash_ids)
    unique = int(np.unique(flat).size)
    repeat = 1.0 - unique / flat.size if flat.size else 0.0
    tokens = table["input_tokens"].to_numpy()
    unbounded = _hit_rate(leading_hits_unbounded(hash_ids), tokens, block_tokens)
    lru = None
    if cache_blocks is not None:
        lru = _hit_rate(leading_hits_lru(hash_ids, cache_blocks), tokens, block_tokens)
    return PrefixReuse(block_tokens, int(flat.size), unique, repeat, unbounded, cache_blocks, lru)
