"""Queueing sanity: one-at-a-time service under Poisson arrivals is an M/D/1 queue.

With `max_num_seqs=1`, fixed ISL/OSL and the toy step model, every request takes the same
service time D (one prefill step and OSL-1 decode steps) and requests are served one at a time in
arrival order, so the mean wait before the first step is Pollaczek-Khinchine's
Wq = rho / (2 mu (1 - rho)) = rho D / (2 (1 - rho)).
"""

from __future__ import annotations

import numpy as np

from fleetplan.sim import ClosedLoop, FleetConfig, PoissonLoad, simulate
from tests.sim.toy import ToyModel, toy_replica

ISL, OSL = 100, 10


def _fleet() -> FleetConfig:
    return FleetConfig.homogeneous(toy_replica(ToyModel(), max_num_seqs=1), 1)


def _service_s(fleet: FleetConfig) -> float:
    res = simulate(fleet, ClosedLoop(concurrency=1, isl=ISL, osl=OSL, requests=1))
    return float(res.requests["e2e_s"][0])


def test_mean_wait_matches_md1() -> None:
    fleet = _fleet()
    d = _service_s(fleet)
    m = ToyModel()
    # D by hand: one prefill step of ISL tokens, then OSL-1 decode steps from ISL+1 tokens.
    assert np.isclose(d, m.prefill_alone_s(ISL, 2048) + m.decode_run_time_s(1, ISL + 1, OSL - 1))
    waits = []
    for rho in (0.3, 0.5):
        res = simulate(fleet, PoissonLoad(rho / d, 20_000, ISL, OSL), seed=7)
        wq = float(res.requests["queue_s"].mean())  # type: ignore[arg-type]
        expected = rho * d / (2 * (1 - rho))
        waits.append(wq)
        # Tolerance: 10% (the sample mean of 20,000 correlated waits at rho <= 0.5 has a
        # relative standard error of about 3%).
        assert abs(wq - expected) <= 0.10 * expected, (rho, wq, expected)
    assert waits[1] > waits[0]


def test_queue_grows_without_bound_over_capacity() -> None:
    fleet = _fleet()
    d = _service_s(fleet)
    res = simulate(fleet, PoissonLoad(1.3 / d, 4_000, ISL, OSL), seed=3)
    q = res.requests["queue_s"].to_numpy()
    first, last = q[:400].mean(), q[-400:].mean()
    # Arrivals outpace service by 30%: the n-th request waits about 0.3 n D.
    assert last > 10 * first
    assert last > 0.2 * 4_000 * d
    assert res.timeseries["waiting"].max() > 500  # type: ignore[operator]


def test_closed_loop_think_time_is_exponential_and_seeded() -> None:
    """One client, service time D: each request is sent an exponential think time after the
    previous one finished (mean within 6% of `think_s` over 1,500 gaps; the largest gap is
    several means, as an exponential's is), the same for the same seed, different for
    another; no think time sends the next request the moment the last one finishes."""
    fleet = _fleet()
    d = _service_s(fleet)
    think = 2.0 * d

    def gaps(seed: int, think_s: float) -> np.ndarray:
        res = simulate(fleet, ClosedLoop(concurrency=1, isl=ISL, osl=OSL, requests=1500,
                                         think_s=think_s), seed=seed)
        df = res.requests.sort("arrival_s")
        arr = df["arrival_s"].to_numpy()
        fin = arr + df["e2e_s"].to_numpy()
        return arr[1:] - fin[:-1]

    g = gaps(0, think)
    assert np.all(g >= -1e-12)
    assert abs(g.mean() / think - 1.0) < 0.06
    assert g.max() > 4.0 * think and np.median(g) < think  # exponential: skewed
    np.testing.assert_array_equal(g, gaps(0, think))
    assert not np.array_equal(g, gaps(1, think))
    np.testing.assert_allclose(gaps(0, 0.0), 0.0, atol=1e-12)


def test_closed_loop_think_time_must_be_finite_and_not_negative() -> None:
    import pytest

    from fleetplan.errors import UsageError

    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(UsageError, match="--think"):
            ClosedLoop(concurrency=1, isl=ISL, osl=OSL, think_s=bad)
