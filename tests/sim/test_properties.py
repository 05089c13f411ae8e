"""Invariants of the simulator on random small fleets and loads (hypothesis), for every engine's
scheduling policy."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetplan.sim import FleetConfig, TraceLoad, simulate
from fleetplan.sim.kvcache import KVCache
from fleetplan.sim.metrics import Records
from fleetplan.sim.scheduler import POLICIES, RESERVING
from tests.sim.toy import ToyModel, toy_replica

MODEL = ToyModel()


@st.composite
def cases(draw: Any) -> tuple[FleetConfig, TraceLoad]:
    n = draw(st.integers(1, 30))
    bs = draw(st.sampled_from([1, 4, 16]))
    isl = draw(st.lists(st.integers(1, 300), min_size=n, max_size=n))
    osl = draw(st.lists(st.integers(1, 60), min_size=n, max_size=n))
    longest = max(i + o for i, o in zip(isl, osl, strict=True))
    # From just enough blocks for the longest request (forces preemption) to plenty.
    blocks = draw(st.integers(-(-longest // bs), 4 * longest // bs + 8))
    gaps = draw(st.lists(st.floats(0, 0.05), min_size=n, max_size=n))
    groups = draw(st.integers(1, 3))
    hashes = [[g * 1000 + j for j in range(8)] for g in draw(
        st.lists(st.integers(0, groups - 1), min_size=n, max_size=n))]
    table = pl.DataFrame({
        "arrival_s": np.cumsum(gaps), "input_tokens": isl, "output_tokens": osl,
        "hash_ids": hashes,
    })
    engine = draw(st.sampled_from(sorted(POLICIES)))
    budget = draw(st.integers(1, 512))
    if engine == "trtllm":  # chunked prefill off: every prompt must fit one step
        budget = max(budget, *isl)
    rep = toy_replica(MODEL, kv_blocks=blocks, block_size=bs,
                      max_num_seqs=draw(st.integers(1, 8)),
                      max_num_batched_tokens=budget,
                      prefix_caching=draw(st.booleans()), engine=engine,
                      chunked_prefill=engine != "trtllm",
                      max_prefill_tokens=draw(st.integers(1, 600)),
                      batch_wait_iters=draw(st.integers(0, 4)) if engine == "trtllm" else 0,
                      batch_wait_tokens=draw(st.integers(0, 400)),
                      recv_interval=draw(st.integers(1, 12)) if engine == "sglang" else 1)
    fleet = FleetConfig.homogeneous(rep, draw(st.integers(1, 3)),
                                    draw(st.sampled_from(["round-robin", "least-outstanding",
                                                          "prefix-aware"])))
    return fleet, TraceLoad(table, block_tokens=draw(st.sampled_from([16, 32])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_invariants(case: tuple[FleetConfig, TraceLoad]) -> None:
    fleet, load = case
    finished: list[int] = []
    generated: list[int] = []
    orig_finish, orig_alloc = Records.finish, KVCache.allocate

    def finish(self: Records, r: Any, replica: int, t: float) -> None:
        finished.append(r.idx)
        generated.append(r.generated)
        orig_finish(self, r, replica, t)

    def allocate(self: KVCache, req: Any, tokens: int, hits: int = 0) -> bool:
        ok = orig_alloc(self, req, tokens, hits)
        assert 0 <= self.free <= self.num_blocks
        assert self.used <= self.num_blocks
        return ok

    Records.finish = finish  # type: ignore[method-assign]
    KVCache.allocate = allocate  # type: ignore[method-assign]
    try:
        res = simulate(fleet, load, seed=1, sample_interval_s=1e-9)
    finally:
        Records.finish = orig_finish  # type: ignore[method-assign]
        KVCache.allocate = orig_alloc  # type: ignore[method-assign]
    df = res.requests
    n = load.table.height
    # Every request finishes exactly once.
    assert sorted(finished) == list(range(n))
    # Output tokens generated equal the sum of output lengths.
    assert sum(generated) == int(load.table["output_tokens"].sum())
    # Engines that reserve blocks to completion at admission never preempt.
    if fleet.replicas[0].engine in RESERVING:
        assert res.preemptions == 0
    # KV blocks in use never exceed capacity (also sampled after every step).
    assert res.timeseries["kv_cache_usage"].max() <= 1.0  # type: ignore[operator]
    # Times are monotone.
    arr, q, ttft, e2e = (df[c].to_numpy() for c in ("arrival_s", "queue_s", "ttft_s", "e2e_s"))
    assert (q >= 0).all() and (ttft >= q).all() and (e2e >= ttft).all()
    assert (df["finish_s"].to_numpy() >= arr).all()
    # TTFT is at least the request's own prefill time (when it was never preempted).
    budget = fleet.replicas[0].max_num_batched_tokens
    for row in df.filter(df["preemptions"] == 0).iter_rows(named=True):
        own = MODEL.prefill_alone_s(row["input_tokens"] - row["cached_tokens"], budget)
        assert row["ttft_s"] >= own * (1 - 1e-9)
    # The same seed gives the same result.
    again = simulate(fleet, load, seed=1, sample_interval_s=1e-9)
    assert again.requests.equals(df, null_equal=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_decode_runs_equal_stepping(case: tuple[FleetConfig, TraceLoad]) -> None:
    """Skipping over decode steps gives the results of stepping through each of them."""
    fleet, load = case
    fast = simulate(fleet, load, seed=0).requests
    slow = simulate(fleet, load, seed=0, decode_runs=False).requests
    for col in ("replica", "preemptions", "cached_tokens"):
        assert fast[col].to_list() == slow[col].to_list()
    for col in ("queue_s", "ttft_s", "e2e_s"):
        np.testing.assert_allclose(fast[col].to_numpy(), slow[col].to_numpy(), rtol=1e-9,
                                   atol=1e-12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 12), st.integers(1, 300), st.integers(1, 60),
       st.floats(0.05, 1.0), st.integers(1, 40), st.sampled_from(sorted(POLICIES)),
       st.integers(0, 3))
def test_closed_loop_with_drawn_lengths(conc: int, isl: int, osl: int, ratio: float,
                                        requests: int, engine: str, seed: int) -> None:
    """A closed loop whose lengths are drawn per request (`range_ratio`): every request's
    lengths lie in [max(1, int(r x L)), L]; every request finishes once, with the tokens it
    asked for; never more than `concurrency` in flight; the same seed repeats the run."""
    from fleetplan.sim import ClosedLoop

    budget = isl + conc if engine == "trtllm" else 256
    rep = toy_replica(MODEL, kv_blocks=4 * (isl + osl) * conc // 16 + 8, block_size=16,
                      max_num_seqs=conc, max_num_batched_tokens=budget, engine=engine,
                      chunked_prefill=engine != "trtllm")
    load = ClosedLoop(conc, isl, osl, requests=requests, range_ratio=ratio)
    res = simulate(FleetConfig.homogeneous(rep, 1), load, seed=seed, sample_interval_s=1e-9)
    df = res.requests
    i, o = df["input_tokens"].to_numpy(), df["output_tokens"].to_numpy()
    assert df.height == requests
    assert (i >= max(1, int(isl * ratio))).all() and (i <= isl).all()
    assert (o >= max(1, int(osl * ratio))).all() and (o <= osl).all()
    if ratio == 1.0:
        assert (i == isl).all() and (o == osl).all()
    # in flight at any arrival: requests sent before it and not yet finished
    arr, fin = df["arrival_s"].to_numpy(), df["finish_s"].to_numpy()
    for t in arr:
        assert int(((arr <= t) & (fin > t)).sum()) <= conc
    again = simulate(FleetConfig.homogeneous(rep, 1), load, seed=seed, sample_interval_s=1e-9)
    assert again.requests.equals(df, null_equal=True)
