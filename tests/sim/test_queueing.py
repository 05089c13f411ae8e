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
