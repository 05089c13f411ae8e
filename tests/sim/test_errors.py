"""Impossible configurations fail with a clear error before any simulation runs."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from fleetplan.errors import InfeasibleError, UsageError
from fleetplan.sim import SLO, ClosedLoop, FleetConfig, PoissonLoad, TraceLoad, simulate
from fleetplan.sim import fleet as fleet_mod
from tests.sim.toy import toy_replica


@pytest.fixture
def no_sim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the event loop starts."""
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("simulation ran")

    monkeypatch.setattr(fleet_mod, "_loop_open", boom)
    monkeypatch.setattr(fleet_mod, "_loop_closed", boom)


def test_model_that_does_not_fit() -> None:
    with pytest.raises(InfeasibleError, match=r"does not fit: weights .* GB"):
        FleetConfig.build("llama-3.1-405b", "h100-sxm", tp=1)


def test_zero_replicas() -> None:
    with pytest.raises(UsageError, match=r"--replicas: must be >= 1, got 0"):
        FleetConfig.build("llama-3.1-70b", "h100-sxm", tp=4, replicas=0)
    with pytest.raises(UsageError, match="at least one replica"):
        FleetConfig(())


def test_isl_beyond_context(no_sim: None) -> None:
    fleet = FleetConfig.build("llama-3.1-70b", "h100-sxm", tp=4)
    with pytest.raises(UsageError, match=r"need up to 131073 tokens .* context of 131072"):
        simulate(fleet, ClosedLoop(concurrency=1, isl=131_000, osl=73))


def test_request_larger_than_kv_pool(no_sim: None) -> None:
    fleet = FleetConfig.homogeneous(toy_replica(kv_blocks=10, block_size=16), 1)
    with pytest.raises(InfeasibleError, match="does not fit the KV cache of 160 tokens"):
        simulate(fleet, ClosedLoop(concurrency=1, isl=150, osl=20))


def test_bad_flags(no_sim: None) -> None:
    with pytest.raises(UsageError, match="--tp"):
        FleetConfig.build("llama-3.1-70b", "h100-sxm", tp=3)
    with pytest.raises(UsageError, match="unknown router 'nearest'"):
        FleetConfig.build("llama-3.1-70b", "h100-sxm", tp=4, router="nearest")
    with pytest.raises(UsageError, match="--max-num-seqs: must be >= 1"):
        FleetConfig.build("llama-3.1-70b", "h100-sxm", tp=4, max_num_seqs=0)
    with pytest.raises(UsageError, match="--concurrency: must be >= 1"):
        ClosedLoop(concurrency=0, isl=10, osl=10)
    fleet = FleetConfig.homogeneous(toy_replica(), 1)
    table = pl.DataFrame({"arrival_s": [0.0], "input_tokens": [5], "output_tokens": [5]})
    for scale in (0.0, math.nan, math.inf):
        with pytest.raises(UsageError, match="--rate-scale: must be a finite number > 0"):
            simulate(fleet, TraceLoad(table, rate_scale=scale))
    with pytest.raises(UsageError, match="no 'output_tokens' column"):
        simulate(fleet, TraceLoad(table.drop("output_tokens")))
    for rate in (0.0, math.nan, math.inf):
        with pytest.raises(UsageError, match="--rate: must be a finite number > 0"):
            simulate(fleet, PoissonLoad(rate, 10, 5, 5))
    with pytest.raises(UsageError, match="--burstiness: must be a finite number > 0"):
        simulate(fleet, PoissonLoad(1.0, 10, 5, 5, burstiness=math.nan))
    with pytest.raises(UsageError, match="--isl: needs at least one length"):
        simulate(fleet, PoissonLoad(1.0, 10, np.zeros(0, dtype=int).tolist(), 5))
    with pytest.raises(UsageError, match="--isl: must be >= 1 token, got -100"):
        simulate(fleet, PoissonLoad(1.0, 10, -100, 5))
    with pytest.raises(UsageError, match="--osl: every length must be >= 1 token, got 0"):
        simulate(fleet, PoissonLoad(1.0, 10, 5, [3, 0]))
    with pytest.raises(UsageError, match="--slo-ttft: a target must be a finite number"):
        SLO(ttft_s=-1.0)
    with pytest.raises(UsageError, match="--slo-e2e: a target must be a finite number"):
        SLO(e2e_s=math.nan)
    with pytest.raises(UsageError, match="--max-num-batched-tokens: must be >= 1, got 0"):
        FleetConfig.build("llama-3.1-70b", "h100-sxm", tp=4, max_num_batched_tokens=0)


def test_trace_requests_beyond_context_are_rejected_and_counted() -> None:
    fleet = FleetConfig.homogeneous(toy_replica(kv_blocks=100, block_size=16,
                                                max_model_len=1000), 1)
    table = pl.DataFrame({"arrival_s": [0.0, 1.0, 2.0], "input_tokens": [100, 990, 50],
                          "output_tokens": [10, 20, 5]})
    res = simulate(fleet, TraceLoad(table))
    assert res.rejected == 1 and res.requests.height == 2
    assert res.summary()["requests_rejected"] == 1
    # a refused request met no target: attainment is over the 3 sent (was over the 2 served)
    assert res.slo_attainment(SLO(e2e_s=1e9)) == pytest.approx(2 / 3)
    with pytest.raises(UsageError, match="beyond the model's context of 1000"):
        simulate(fleet, TraceLoad(table, too_long="error"))
