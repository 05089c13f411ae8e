"""The simulation check: adds replicas to an undersized plan, keeps an adequate one."""

from __future__ import annotations

import numpy as np
import pytest

from fleetplan.perf import Deployment, Efficiency
from fleetplan.plan import parse_slo, resolve_demand
from fleetplan.plan.demand import TokenStats
from fleetplan.plan.verify import lognormal_lengths, verify

DEP = Deployment.build("llama-3.1-8b", "h100-sxm", "bf16", tp=1, efficiency=Efficiency())
SLO = parse_slo("ttft_p95=500ms,tpot_p95=40ms")


def test_undersized_plan_gets_more_replicas() -> None:
    demand = resolve_demand(None, 60.0, 1000, 200)
    v = verify(DEP, 1, demand, SLO, burst=1.0, runs=1, requests=600, seed=3)
    assert not v.met_at_planned
    assert v.recommended_replicas > 1
    # the recommended count meets the targets in its own run
    assert v.replicas_needed[0] == v.recommended_replicas


def test_adequate_plan_is_kept_and_bisection_finds_fewer() -> None:
    demand = resolve_demand(None, 2.0, 500, 100)
    v = verify(DEP, 4, demand, SLO, burst=1.0, runs=2, requests=200, seed=1)
    assert v.met_at_planned
    assert v.recommended_replicas == 4
    assert all(1 <= n <= 4 for n in v.replicas_needed)


def test_lognormal_lengths_match_median_and_mean() -> None:
    s = TokenStats(mean=1155.0, p50=1020.0, p90=0, p95=0, p99=0, max=1e9)
    x = lognormal_lengths(s, 200_000, np.random.default_rng(0))
    assert np.median(x) == pytest.approx(1020, rel=0.02)
    assert x.mean() == pytest.approx(1155, rel=0.02)


def test_fixed_lengths_stay_fixed() -> None:
    x = lognormal_lengths(TokenStats.fixed(300), 10, np.random.default_rng(0))
    assert (x == 300).all()
