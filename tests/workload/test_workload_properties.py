"""Hypothesis properties of the statistics, the prefix cache and synthetic generation."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetplan.workload import Workload, characterize
from fleetplan.workload._prefix import leading_hits_lru, leading_hits_unbounded, prefix_reuse
from fleetplan.workload._stats import token_stats
from fleetplan.workload.synthetic import arrival_times, generate

FAST = settings(max_examples=40, deadline=None)


@FAST
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=300))
def test_percentiles_monotone_and_linear(values: list[int]) -> None:
    s = token_stats(pl.DataFrame({"x": values}, schema={"x": pl.Int64}), "x")
    chain = [s.p50, s.p90, s.p95, s.p99, s.p999, float(s.max)]
    assert all(a <= b + 1e-9 for a, b in itertools.pairwise(chain))
    assert s.p90 == pytest.approx(np.percentile(values, 90))  # numpy's linear method
    assert min(values) <= s.p50 <= max(values)


hash_lists = st.lists(st.lists(st.integers(0, 30), min_size=0, max_size=12), min_size=1,
                      max_size=60)


@FAST
@given(hash_lists, st.integers(0, 40))
def test_lru_hits_never_exceed_unbounded(lists: list[list[int]], cache: int) -> None:
    s = pl.Series("hash_ids", lists, dtype=pl.List(pl.Int64))
    lru = leading_hits_lru(s, cache)
    unbounded = leading_hits_unbounded(s)
    assert (lru <= unbounded).all()
    table = pl.DataFrame({"hash_ids": s, "input_tokens": [16 * len(x) + 1 for x in lists]})
    p = prefix_reuse(table, 16, cache)
    assert p.hit_rate_lru is not None
    assert 0 <= p.hit_rate_lru <= p.hit_rate_unbounded <= 1


@FAST
@given(hash_lists)
def test_lru_large_enough_equals_unbounded(lists: list[list[int]]) -> None:
    s = pl.Series("hash_ids", lists, dtype=pl.List(pl.Int64))
    assert (leading_hits_lru(s, 10_000) == leading_hits_unbounded(s)).all()


def _source(seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    n = 400
    t = np.sort(rng.uniform(0, 200.0, n))
    t -= t[0]
    table = pl.DataFrame({"arrival_s": t, "input_tokens": rng.integers(1, 4000, n),
                          "output_tokens": rng.integers(1, 500, n)})
    return Workload(table, "test", "synthetic")


@settings(max_examples=15, deadline=None)
@given(st.floats(0.25, 8.0), st.sampled_from(["poisson", "gamma", "mmpp"]),
       st.integers(0, 2**31))
def test_rate_scale_multiplies_mean_rate(scale: float, arrivals: str, seed: int) -> None:
    src = _source(1)
    base = characterize(src).rate_mean_per_s
    assert base is not None
    duration = 30_000.0 / (base * scale)  # about 30,000 requests whatever the scale
    if arrivals == "mmpp":  # the rate varies with the state mix: ~700 state cycles
        duration = 200_000.0
    w = generate(src, seed=seed, rate_scale=scale, duration_s=duration, arrivals=arrivals,
                 cv=1.5 if arrivals == "gamma" else None,
                 burst=2.0 if arrivals == "mmpp" else None)
    measured = w.requests / duration
    assert measured == pytest.approx(base * scale, rel=0.05)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from(["poisson", "gamma", "mmpp"]),
       st.sampled_from(["empirical", "lognormal"]))
def test_seeds_reproducible(seed: int, arrivals: str, lengths: str) -> None:
    src = _source(2)
    a = generate(src, seed=seed, arrivals=arrivals, lengths=lengths, duration_s=300.0)
    b = generate(src, seed=seed, arrivals=arrivals, lengths=lengths, duration_s=300.0)
    assert a.table.equals(b.table)
    c = generate(src, seed=seed + 1, arrivals=arrivals, lengths=lengths, duration_s=300.0)
    assert not c.table.equals(a.table)


def test_gamma_cv_and_poisson_cv() -> None:
    rng = np.random.default_rng(5)
    for arrivals, cv in (("gamma", 2.0), ("poisson", 1.0)):
        t = arrival_times(rng, 20_000.0, 2.0, arrivals=arrivals, cv=cv)
        gaps = np.diff(t)
        assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.05)
        assert (np.diff(t) >= 0).all()
        assert t.min() >= 0 and t.max() < 20_000.0


def test_daily_and_weekly_profile() -> None:
    # 8 days; 2 requests/s during UTC hour 12, none otherwise. Start 2024-01-01 00:00 UTC (Mon).
    start = 1704067200.0
    t = np.concatenate([d * 86400 + 12 * 3600 + np.arange(0, 3600, 0.5) for d in range(8)])
    table = pl.DataFrame({"arrival_s": t - t[0], "input_tokens": np.ones(t.size, np.int64),
                          "output_tokens": np.ones(t.size, np.int64)})
    c = characterize(Workload(table, "test", "synthetic", start_epoch_s=start + t[0]))
    assert c.profile is not None
    hours = c.profile["hour_of_day_rate_per_s"]
    assert hours[12] == pytest.approx(2.0)
    assert hours[13] == 0.0 and hours[11] == 0.0
    days = c.profile["day_of_week_rate_per_s"]
    assert days[0] == pytest.approx(2 * 2.0 / 24, rel=0.1)  # Monday appears twice in the span
    assert c.profile["clock"] == "UTC"
    assert characterize(load_short()).profile is None


def test_hour_of_day_of_a_trace_starting_mid_second() -> None:
    """Rates are binned at one second from the trace's start; a bin belongs to the hour of its
    midpoint. A trace starting at 00:59:59.8 UTC whose requests come at 01:00:00.3 (and a day
    later): its first bin, [00:59:59.8, 01:00:00.8), is hour 1's (it was labelled by the
    start's whole second, 00:59:59, and all of it counted for hour 0)."""
    start = 1704067200.0 + 3599.8  # 2024-01-01 00:59:59.8 UTC
    t = np.concatenate([[0.0], np.full(50, 0.5), [86400.5]])
    table = pl.DataFrame({"arrival_s": t, "input_tokens": np.ones(t.size, np.int64),
                          "output_tokens": np.ones(t.size, np.int64)})
    c = characterize(Workload(table, "test", "synthetic", start_epoch_s=start))
    assert c.profile is not None
    hours = c.profile["hour_of_day_rate_per_s"]
    assert hours[1] == pytest.approx(52 / 3601) and hours[0] == 0.0


def load_short() -> Workload:
    table = pl.DataFrame({"arrival_s": [0.0, 10.0], "input_tokens": [1, 2],
                          "output_tokens": [1, 2]})
    return Workload(table, "short", "synthetic")
