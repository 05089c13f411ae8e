"""What the fleet is asked to serve: trace replay, synthetic arrivals, or a closed loop.

- `TraceLoad`: open-loop replay of a workload table (`arrival_s`, `input_tokens`,
  `output_tokens`, optional `hash_ids`), its arrival times divided by `rate_scale`.
- `PoissonLoad`: open loop with gamma inter-arrival gaps as `vllm bench serve` draws them
  (burstiness 1 = Poisson; gaps rescaled to the rate, ENGINES.md "vllm bench serve"), fixed or
  resampled lengths, optionally a shared prefix per group for prefix caching.
- `ClosedLoop`: `concurrency` clients with fixed ISL/OSL, or lengths drawn per request from
  [int(r x L), L] as vLLM-lineage benchmark clients do with `--random-range-ratio r` (seeded);
  each sends its next request the moment its last one finishes (`--max-concurrency` with rate
  inf: the first wave starts together), or after an exponential think time of mean `think_s`
  (seeded), which also lets the clients drift apart as real ones do (`ClientQueue`).

Prefix-cache keys: a trace gives one hash per `block_tokens` tokens (Mooncake: 512). The key of
the KV block that ends at token `e` is derived from the chain of trace hashes up to the one
covering token `e - 1`, so two requests share a block key exactly when their hash prefixes agree,
as vLLM's parent-chained block hashes do.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from fleetplan.errors import UsageError

__all__ = ["Arrivals", "ClientQueue", "ClosedLoop", "Load", "PoissonLoad", "TraceLoad",
           "block_keys", "drawn_length_range"]


def drawn_length_range(length: int, range_ratio: float) -> tuple[int, int]:
    """The integers [lo, hi] a vLLM-lineage benchmark client draws a request's length from with
    `--random-range-ratio r` (`sample_random_requests`: `np.random.randint(int(L * r), L + 1)`),
    at least 1 token; (L, L) where r >= 1 (fixed lengths)."""
    if range_ratio >= 1.0:
        return length, length
    return max(1, int(length * range_ratio)), length


@dataclass(frozen=True)
class Arrivals:
    """Open-loop requests, sorted by arrival (seconds)."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    hash_ids: Sequence[Sequence[int]] | None = None
    block_tokens: int = 512

    def __len__(self) -> int:
        return len(self.arrival_s)

    def keep(self, mask: np.ndarray) -> Arrivals:
        """The requests where `mask` is true."""
        h = None if self.hash_ids is None else [
            x for x, k in zip(self.hash_ids, mask.tolist(), strict=True) if k]
        return Arrivals(self.arrival_s[mask], self.input_tokens[mask], self.output_tokens[mask],
                        h, self.block_tokens)


@dataclass(frozen=True)
class TraceLoad:
    """Replay of a workload table; `rate_scale` k multiplies the request rate by k.

    `too_long="reject"` drops requests longer than the model context or a replica's KV pool
    and counts them (`SimResult.rejected`), as a vLLM server answers them with an error;
    `"error"` refuses the whole trace instead.
    """

    table: pl.DataFrame
    rate_scale: float = 1.0
    block_tokens: int = 512  # tokens per entry of `hash_ids` (Mooncake: 512)
    too_long: str = "reject"

    @classmethod
    def from_workload(cls, workload: Any, rate_scale: float = 1.0) -> TraceLoad:
        """From a `fleetplan.workload.Workload` (its `.table` and `.block_tokens`)."""
        bt = int(getattr(workload, "block_tokens", 512) or 512)
        return cls(workload.table, rate_scale, bt)

    def arrivals(self, rng: np.random.Generator) -> Arrivals:
        del rng  # a replay is deterministic
        if not (math.isfinite(self.rate_scale) and self.rate_scale > 0):
            raise UsageError(f"must be a finite number > 0, got {self.rate_scale}",
                             where="--rate-scale")
        if self.too_long not in ("reject", "error"):
            raise UsageError(f"must be 'reject' or 'error', got {self.too_long!r}",
                             where="too_long")
        t = self.table
        for col in ("arrival_s", "input_tokens", "output_tokens"):
            if col not in t.columns:
                raise UsageError(f"workload table has no '{col}' column", where="workload")
        if t.height == 0:
            raise UsageError("workload has no requests", where="workload")
        t = t.sort("arrival_s")
        arr = t["arrival_s"].to_numpy().astype(np.float64)
        arr = (arr - arr[0]) / self.rate_scale
        hashes = t["hash_ids"].to_list() if "hash_ids" in t.columns else None
        return Arrivals(
            arr,
            t["input_tokens"].to_numpy().astype(np.int64),
            t["output_tokens"].to_numpy().astype(np.int64),
            hashes,
            self.block_tokens,
        )


def _lengths(spec: int | Sequence[int], n: int, rng: np.random.Generator, name: str) -> np.ndarray:
    if isinstance(spec, int | np.integer):
        if spec < 1:
            raise UsageError(f"must be >= 1 token, got {spec}", where=name)
        return np.full(n, int(spec), dtype=np.int64)
    pool = np.asarray(spec, dtype=np.int64)
    if pool.size == 0:
        raise UsageError("needs at least one length", where=name)
    if int(pool.min()) < 1:
        raise UsageError(f"every length must be >= 1 token, got {int(pool.min())}", where=name)
    return rng.choice(pool, size=n)


@dataclass(frozen=True)
class PoissonLoad:
    """`requests` arrivals at `rate_per_s`, gamma gaps of shape `burstiness` (1 = Poisson).

    `isl`/`osl` are fixed lengths or pools to resample from. With `shared_prefix_tokens` > 0,
    each request starts with one of `prefix_groups` shared prefixes (e.g. system prompts).
    """

    rate_per_s: float
    requests: int
    isl: int | Sequence[int]
    osl: int | Sequence[int]
    burstiness: float = 1.0
    shared_prefix_tokens: int = 0
    prefix_groups: int = 1
    prefix_block_tokens: int = 16

    def arrivals(self, rng: np.random.Generator) -> Arrivals:
        for flag, v in (("--rate", self.rate_per_s), ("--burstiness", self.burstiness)):
            if not (math.isfinite(v) and v > 0):
                raise UsageError(f"must be a finite number > 0, got {v}", where=flag)
        if self.requests < 1:
            raise UsageError(f"must be >= 1, got {self.requests}", where="--requests")
        n = self.requests
        theta = 1.0 / (self.rate_per_s * self.burstiness)
        gaps = rng.gamma(self.burstiness, theta, size=n)
        arr = np.cumsum(gaps) - gaps[0]
        isl = _lengths(self.isl, n, rng, "--isl")
        osl = _lengths(self.osl, n, rng, "--osl")
        hashes: list[list[int]] | None = None
        if self.shared_prefix_tokens > 0:
            groups = rng.integers(0, max(1, self.prefix_groups), size=n)
            nblk = self.shared_prefix_tokens // self.prefix_block_tokens
            isl = np.maximum(isl, self.shared_prefix_tokens + 1)
            hashes = [[int(g) * 1_000_003 + j for j in range(nblk)] for g in groups]
        return Arrivals(arr, isl, osl, hashes, self.prefix_block_tokens)


@dataclass(frozen=True)
class ClosedLoop:
    """`concurrency` clients, `requests` in all (default 4 x concurrency); each client waits an
    exponential think time of mean `think_s` (0: none) between a response and its next request.
    Lengths: fixed `isl` / `osl` (`range_ratio` 1), or each request's drawn uniformly from the
    integers [int(r x isl), isl] and [int(r x osl), osl] (at least 1), the lengths a
    vLLM-lineage `benchmark_serving.py --random-range-ratio r` sends (`lengths`)."""

    concurrency: int
    isl: int
    osl: int
    requests: int | None = None
    think_s: float = 0.0
    range_ratio: float = 1.0
    total: int = field(init=False)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError(f"must be >= 1, got {self.concurrency}", where="--concurrency")
        if self.isl < 1:
            raise UsageError(f"must be >= 1, got {self.isl}", where="--isl")
        if self.osl < 1:
            raise UsageError(f"must be >= 1, got {self.osl}", where="--osl")
        if not self.think_s >= 0.0 or self.think_s == float("inf"):
            raise UsageError(f"must be a finite number >= 0, got {self.think_s}",
                             where="--think")
        if not 0.0 < self.range_ratio <= 1.0:
            raise UsageError(f"must be in (0, 1] (1: fixed lengths), got {self.range_ratio}",
                             where="--range-ratio")
        total = 4 * self.concurrency if self.requests is None else self.requests
        if total < 1:
            raise UsageError(f"must be >= 1, got {total}", where="--requests")
        object.__setattr__(self, "total", total)

    def lengths(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(ISL, OSL) of every request in send order: fixed, or drawn from `rng` as the
        class says (all drawn before the run, as the benchmark client samples its prompts)."""
        n = self.total
        if self.range_ratio >= 1.0:
            return np.full(n, self.isl, dtype=np.int64), np.full(n, self.osl, dtype=np.int64)
        (lo_i, hi_i), (lo_o, hi_o) = (drawn_length_range(x, self.range_ratio)
                                      for x in (self.isl, self.osl))
        return rng.integers(lo_i, hi_i + 1, size=n), rng.integers(lo_o, hi_o + 1, size=n)


Load = TraceLoad | PoissonLoad | ClosedLoop


class ClientQueue:
    """Send times of a closed loop's idle clients, earliest first: all clients at t = 0, then
    each response time (`append`) plus the client's think time (exponential with mean
    `think_s`, drawn from `rng`; none when 0, where this is a plain FIFO of response times)."""

    def __init__(self, clients: int, think_s: float, rng: np.random.Generator) -> None:
        # (send time, order made): read-only outside; the event loops peek at heap[0][0]
        self.heap: list[tuple[float, int]] = [(0.0, i) for i in range(clients)]
        self._n = clients
        self._think = think_s
        self._rng = rng

    def append(self, t: float) -> None:
        if self._think > 0.0:
            t += float(self._rng.exponential(self._think))
        heapq.heappush(self.heap, (t, self._n))
        self._n += 1

    def __bool__(self) -> bool:
        return bool(self.heap)

    def popleft(self) -> float:
        return heapq.heappop(self.heap)[0]


def block_keys(
    hash_ids: Sequence[int], block_tokens: int, block_size: int, prompt: int
) -> list[int]:
    """Prefix-cache key of each full KV block of a prompt (see the module docstring)."""
    keys: list[int] = []
    chain = 0
    m_done = -1
    n_hash = len(hash_ids)
    for j in range(prompt // block_size):
        m = ((j + 1) * block_size - 1) // block_tokens
        if m >= n_hash:
            break
        while m_done < m:
            m_done += 1
            chain = hash((chain, int(hash_ids[m_done])))
        keys.append(hash((chain, j)))
    return keys
