"""The simulation check: adds replicas to an undersized plan, keeps an adequate one."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from fleetplan.perf import Deployment, Efficiency
from fleetplan.plan import parse_slo, resolve_demand
from fleetplan.plan.demand import TokenStats
from fleetplan.plan.verify import _loads, lognormal_lengths, verify, window_starts

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


def test_window_starts_one_per_stratum_seeded_and_deduplicated() -> None:
    # 100 rows, windows of 10: starts 0..90 cut into [0, 30.33), [30.33, 60.67), [60.67, 91)
    s = window_starts(100, 10, 3, np.random.default_rng(7))
    assert len(s) == 3 and s == sorted(s)
    assert 0 <= s[0] < 30 and 30 <= s[1] < 60 and 60 <= s[2] <= 90
    assert s == window_starts(100, 10, 3, np.random.default_rng(7))  # explicit seed
    assert window_starts(10, 10, 5, np.random.default_rng(0)) == [0]  # one window holds all
    assert set(window_starts(11, 10, 5, np.random.default_rng(0))) <= {0, 1}  # no repeats


def test_trace_runs_replay_windows_across_the_trace() -> None:
    """A quiet stretch then a busy one: the runs see both (the head alone saw only the quiet
    stretch), at the trace's own rates (one scale for the whole trace, here 1)."""
    arrival = np.concatenate([np.arange(600) * 2.0, 1200.0 + np.arange(600) / 60.0])
    table = pl.DataFrame({"arrival_s": arrival, "input_tokens": [1000] * 1200,
                          "output_tokens": [200] * 1200})
    trace = SimpleNamespace(table=table, block_tokens=None)
    span = float(arrival[-1] - arrival[0])
    demand = resolve_demand(None, 1200 / span, 1000, 200)
    v = verify(DEP, 1, demand, SLO, burst=1.0, trace=trace, runs=3, requests=300, seed=0)
    assert v.runs == 3 and "3 window(s) of 300 consecutive requests out of 1200" in v.load
    assert "rate x1 " in v.load
    quiet, busy = v.replicas_needed[0], v.replicas_needed[2]
    assert quiet == 1 and busy > 1
    assert v.recommended_replicas > 1  # the busy stretch raises the recommendation


def test_check_adds_the_request_overhead_the_plan_states() -> None:
    """The simulator models engine time; every TTFT the plan states includes the request's
    fixed overhead, so the check must too (it passed a target below the plan's own floor)."""
    dep = Deployment.build("llama-3.1-8b", "h100-sxm", "bf16", tp=1,
                           efficiency=Efficiency(request_overhead_s=0.5))
    demand = resolve_demand(None, 2.0, 500, 100)
    v = verify(dep, 4, demand, parse_slo("ttft_p50=400ms"), burst=1.0, runs=1, requests=100,
               seed=0, max_extra_replicas=1)
    got = v.at_planned[0]["targets"]["ttft_p50"]
    assert got["achieved_s"] > 0.5 and not got["met"] and v.runs_unmet == 1


def test_trace_windows_take_the_isl_osl_scaling_of_the_demand() -> None:
    arrival = np.arange(400) * 0.5
    table = pl.DataFrame({"arrival_s": arrival, "input_tokens": [1000, 3000] * 200,
                          "output_tokens": [100] * 400})
    trace = SimpleNamespace(table=table, block_tokens=None)
    demand = resolve_demand(None, 2.0, 2000, 100)
    loads, _ = _loads(replace(demand, input_tokens=demand.input_tokens.scaled_to_mean(4000),
                              trace=trace), trace, 1.0, 1, 400, 0)
    t = loads[0].table  # type: ignore[attr-defined]
    assert t["input_tokens"].to_list()[:2] == [2000, 6000] and t["input_tokens"].mean() == 4000
    assert t["output_tokens"].to_list()[0] == 100  # the output mean was kept


def test_recommendation_is_the_size_the_check_needs(cli) -> None:  # type: ignore[no-untyped-def]
    """When the simulation check raises the fleet, `recommended` (what a script reads) is the
    raised size, priced at it, with the worksheet's size beside it; the worksheet's step 5 keeps
    the planned size and step 7 the final one (`recommended.replicas` stayed at the planned 2
    while the check needed 6: a 3x under-provisioned fleet)."""
    r = cli("plan", "--workload", "azure-code-2023", "--model", "qwen3-32b", "--gpus", "mi300x",
            "--json")
    assert r.code == 0, r.err
    d = r.json()
    rec, sim, ws = d["recommended"], d["simulation"], d["worksheet"]
    assert sim["recommended_replicas"] > sim["planned_replicas"]  # the check raised it
    assert rec["replicas"] == sim["recommended_replicas"] == ws[6]["final_replicas"]
    assert rec["planned_replicas"] == sim["planned_replicas"] == ws[4]["replicas"]
    assert rec["gpus_total"] == rec["replicas"] * rec["gpus_per_replica"] == ws[6]["final_gpus"]
    assert rec["usd_per_hour"] == pytest.approx(ws[6]["final_usd_per_hour"])
    from fleetplan.catalog import get_gpu

    assert rec["usd_per_hour"] == pytest.approx(
        rec["gpus_total"] * get_gpu("mi300x").price_usd_per_hour.value)
    assert d["candidates"][0] == rec
    table = cli("plan", "--workload", "azure-code-2023", "--model", "qwen3-32b", "--gpus",
                "mi300x")
    assert table.code == 0 and "checked:" in table.out and "simulation check needs" in table.out


def test_runs_hold_enough_arrivals_for_the_steady_state() -> None:
    """2,000 requests of 2,000-token answers at 180 req/s end before the first answer does (a
    fleet starting empty never fills): the runs are sized from the lifetimes, capped, and say
    when they are shorter than that."""
    from fleetplan.plan.verify import (
        DEFAULT_REQUESTS,
        MAX_AUTO_REQUESTS,
        STEADY_LIFETIMES,
        run_requests,
    )

    assert run_requests(5.0, 6.0, None) == (DEFAULT_REQUESTS, None)  # 90 needed: the default
    n, note = run_requests(20.0, 60.0, None)
    assert n == math.ceil(STEADY_LIFETIMES * 20.0 * 60.0) == 3600 and note is None
    n, note = run_requests(180.0, 90.0, None)
    assert n == MAX_AUTO_REQUESTS and note is not None and "--sim-requests" in note
    n, note = run_requests(180.0, 90.0, 500)  # given: kept, and said to be short
    assert n == 500 and note is not None and "optimistic" in note
    assert run_requests(1.0, 0.0, 100) == (100, None)


def test_requests_arriving_while_the_fleet_fills_are_left_out() -> None:
    """The first `warmup_s` of arrivals (at most half of them) leave the percentiles."""
    from fleetplan.plan.verify import _evaluate

    arr = np.arange(10.0)
    ttft = np.where(arr < 3, 0.01, 0.5)  # the empty fleet answers its first arrivals at once
    res = SimpleNamespace(requests=pl.DataFrame({"arrival_s": arr, "ttft_s": ttft}))
    slo = parse_slo("ttft_p50=100ms")
    assert _evaluate(res, slo)["targets"]["ttft_p50"]["attainment"] == pytest.approx(0.3)
    warm = _evaluate(res, slo, warmup_s=3.0)["targets"]["ttft_p50"]
    assert warm["attainment"] == 0.0 and warm["achieved_s"] == pytest.approx(0.5)
    capped = _evaluate(res, slo, warmup_s=100.0)["targets"]["ttft_p50"]  # at most half out
    assert capped["achieved_s"] == pytest.approx(0.5) and capped["attainment"] == 0.0


def test_a_lower_bound_that_does_not_hold_is_searched_below() -> None:
    """The bound from the theoretical minimum is checked once: where one replica fewer meets
    the targets, the search goes down to one replica (it reported the bound itself)."""
    demand = resolve_demand(None, 2.0, 500, 100)
    v = verify(DEP, 4, demand, SLO, burst=1.0, runs=1, requests=200, seed=1, lower_bound=4)
    free = verify(DEP, 4, demand, SLO, burst=1.0, runs=1, requests=200, seed=1)
    assert v.replicas_needed == free.replicas_needed and v.replicas_needed[0] < 3


def test_a_given_burst_the_trace_replay_does_not_have_is_said(cli) -> None:  # type: ignore[no-untyped-def]
    """--burst sizes the fleet; the check replays the trace's own arrivals: the plan says
    that the two differ (it checked a 5x-sized fleet against a 1.53x trace silently)."""
    base = ("plan", "--workload", "azure-conv-2023", "--model", "llama-3.1-8b", "--gpus",
            "h100-sxm", "--json")
    given = cli(*base, "--burst", "5")
    assert given.code == 0, given.err
    notes = given.json()["simulation"]["notes"]
    assert any("sized for a burst of x5" in n and "x1.53" in n for n in notes)
    measured = cli(*base)
    assert not any("sized for a burst" in n for n in measured.json()["simulation"]["notes"])


def test_a_presets_check_resamples_the_lengths_of_the_trace_it_characterizes() -> None:
    """The chat preset's check drew lognormal lengths matched to the mean and median: an input
    p95 of ~2,300 tokens where the preset states 4,083. The bundled trace it characterizes is
    resampled: its percentiles and mean, scaled as --isl scales the preset."""
    from fleetplan.plan.verify import _loads

    d = resolve_demand("chat", None, None, None)
    assert d.lengths_from == "azure-conv-2023"
    loads, desc = _loads(d, None, 3.0, 2, 20_000, 0)
    assert "resampled from azure-conv-2023" in desc
    isl = np.asarray(loads[0].isl, dtype=float)  # type: ignore[attr-defined]
    osl = np.asarray(loads[0].osl, dtype=float)  # type: ignore[attr-defined]
    assert np.percentile(isl, 95) == pytest.approx(d.input_tokens.p95, rel=0.05)
    assert isl.mean() == pytest.approx(d.input_tokens.mean, rel=0.03)
    assert np.percentile(osl, 99) == pytest.approx(d.output_tokens.p99, rel=0.05)
    scaled = resolve_demand("chat", None, 2000, None)
    loads2, _ = _loads(scaled, None, 3.0, 1, 20_000, 0)
    isl2 = np.asarray(loads2[0].isl, dtype=float)  # type: ignore[attr-defined]
    assert isl2.mean() == pytest.approx(2000, rel=0.03)
    flags = resolve_demand(None, 5.0, 1000, 100)  # no trace behind flags: fixed lengths
    _, desc3 = _loads(flags, None, 3.0, 1, 100, 0)
    assert "resampled" not in desc3
