"""The capacity plan as a worksheet: every step of the method with its inputs and result.

1. workload: rate, input/output means and tails;  2. SLO targets;
3. theoretical minimum GPUs (per-replica throughput at the TPOT/TTFT target, replicas for the
   mean rate) and the efficiency tax;  4. burst factor;  5. headroom;
6. the bottleneck resource and why.
`make_plan` runs the search and returns a `Plan` whose `to_dict()` is the CLI's JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from fleetplan.catalog import GPU, Engine, ModelSpec, Quant, load_catalog
from fleetplan.perf import Deployment
from fleetplan.perf.calibration import efficiency_for, model_class_of
from fleetplan.plan.demand import Demand, TokenStats
from fleetplan.plan.search import Candidate, PlanFactors, pareto, search
from fleetplan.plan.slo import SLOTargets
from fleetplan.plan.verify import Verification, verify

__all__ = ["Plan", "make_plan"]


def _stats(s: TokenStats) -> dict[str, float]:
    return {"mean": s.mean, "p50": s.p50, "p90": s.p90, "p95": s.p95, "p99": s.p99, "max": s.max}


@dataclass(frozen=True)
class Plan:
    model: ModelSpec
    demand: Demand
    slo: SLOTargets
    factors: PlanFactors
    candidates: list[Candidate]
    verification: Verification | None = None

    @property
    def best(self) -> Candidate | None:
        feas = [c for c in self.candidates if c.feasible]
        return feas[0] if feas else None

    def worksheet(self) -> list[dict[str, Any]]:
        """The method's steps with their inputs and results (steps 3-7 need a feasible
        candidate; step 7 a simulation check)."""
        d, best = self.demand, self.best
        steps: list[dict[str, Any]] = [
            {
                "step": 1,
                "name": "workload",
                "source": d.source,
                "rate_per_s": d.rate_per_s,
                "input_tokens": _stats(d.input_tokens),
                "output_tokens": _stats(d.output_tokens),
            },
            {
                "step": 2,
                "name": "slo",
                "targets": {t.key: t.seconds for t in self.slo.targets},
            },
        ]
        if best is None or best.point is None:
            return steps
        steps += _sizing_steps(best, self.factors)
        if self.verification is not None:
            steps.append(_check_step(best, self.verification))
        return steps

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "model": self.model.name,
            "simulation": self.verification.to_dict() if self.verification else None,
            "worksheet": self.worksheet(),
            "recommended": best.to_dict() if best else None,
            "candidates": [c.to_dict() for c in self.candidates],
            "pareto": [
                {
                    "gpu": c.gpu,
                    "tp": c.tp,
                    "precision": c.precision,
                    "usd_per_hour": c.usd_per_hour,
                    "pred_tpot_at_mean_load_s": c.tpot_at_mean_load_s,
                }
                for c in pareto(self.candidates)
            ],
        }


def _sizing_steps(best: Candidate, f: PlanFactors) -> list[dict[str, Any]]:
    """Steps 3-6: theoretical minimum and tax, burst, headroom, bottleneck."""
    assert best.point is not None
    p, s = best.point, best.sizing
    return [
        {
            "step": 3,
            "name": "theoretical_minimum",
            "candidate": f"{best.gpu} TP{best.tp} {best.precision} ({best.engine})",
            "batch_per_replica": p.batch,
            "pred_tpot_s": p.tpot_s,
            "pred_ttft_s": p.ttft_s,
            "replica_requests_per_s": p.requests_per_s,
            "formula": "rate / replica_requests_per_s x gpus_per_replica",
            "theoretical_gpus": s["theoretical_gpus"],
            "efficiency_tax": f.efficiency_tax,
            "after_tax_gpus": s["after_tax_gpus"],
            "efficiency_source": best.efficiency_source,
            "kv_cache": best.kv_cache,
        },
        {
            "step": 4,
            "name": "burst",
            "burst_factor": f.burst,
            "burst_source": f.burst_source,
            "after_burst_gpus": s["after_burst_gpus"],
        },
        {
            "step": 5,
            "name": "headroom",
            "headroom": f.headroom,
            "after_headroom_gpus": s["after_headroom_gpus"],
            "replicas": best.planned_replicas,
            "gpus_total": best.planned_replicas * best.gpus_per_replica,
        },
        {"step": 6, "name": "bottleneck", "limit": p.limit, "resource": p.bottleneck, "why": p.why},
    ]


def _check_step(best: Candidate, v: Verification) -> dict[str, Any]:
    """Step 7: the simulation check and the final size."""
    final = v.recommended_replicas
    return {
        "step": 7,
        "name": "simulation_check",
        "load": v.load,
        "runs": v.runs,
        "requests_per_run": v.requests_per_run,
        "planned_replicas": v.planned_replicas,
        "replicas_needed": v.to_dict()["replicas_needed"],
        "met_at_planned": v.met_at_planned,
        "attainment_at_planned": v.at_planned,
        "final_replicas": final,
        "final_gpus": final * best.gpus_per_replica,
        "final_usd_per_hour": final * best.usd_per_hour / max(best.replicas, 1),
        "notes": v.notes,
    }


def make_plan(
    model: ModelSpec,
    gpus: list[GPU],
    engine: Engine,
    demand: Demand,
    slo: SLOTargets,
    factors: PlanFactors,
    *,
    tps: tuple[int, ...] = (1, 2, 4, 8),
    precisions: list[Quant] | None = None,
    max_quality_cost: float | None = None,
    kv_precision: Quant | None = None,
    check: bool = False,
    mc_runs: int = 3,
    sim_requests: int | None = None,
    seed: int = 0,
) -> Plan:
    """Search, size and price; with `check`, verify the best candidate in the simulator
    (`sim_requests` per run; None: enough for the steady state, `verify.run_requests`)."""
    cands = search(
        model,
        gpus,
        engine,
        demand,
        slo,
        factors,
        tps=tps,
        precisions=precisions,
        max_quality_cost=max_quality_cost,
        kv_precision=kv_precision,
    )
    plan = Plan(model, demand, slo, factors, cands)
    best = plan.best
    if not check or best is None or best.point is None:
        return plan
    cat = load_catalog()
    dep = Deployment(
        model,
        cat.gpus[best.gpu],
        cat.quants[best.precision],
        engine,
        tp=best.tp,
        kv_quant=kv_precision,
        efficiency=efficiency_for(best.gpu, engine.name, best.precision,
                                  model_class_of(model), model),
    )
    v = verify(
        dep,
        best.replicas,
        demand,
        slo,
        burst=factors.burst,
        trace=demand.trace,
        runs=mc_runs,
        requests=sim_requests,
        seed=seed,
        # a fleet below the theoretical minimum at the simulated peak is expected to fail
        # (verify checks it once and searches lower where it does not)
        lower_bound=max(
            1, math.floor(best.theoretical_gpus * factors.burst / best.gpus_per_replica)
        ),
        # a request's life at the operating point: how long the runs must be
        lifetime_s=best.point.ttft_s + demand.output_tokens.mean * best.point.tpot_mean_s,
    )
    if demand.trace is not None and demand.burst_factor is not None and not math.isclose(
            factors.burst, demand.burst_factor, rel_tol=1e-9):
        v = replace(v, notes=[*v.notes, (
            f"the fleet is sized for a burst of x{factors.burst:g} ({factors.burst_source}); "
            "the check replays the trace's own arrivals, whose peak over mean is "
            f"x{demand.burst_factor:.3g} at {demand.burst_bin} bins")])
    # The recommendation is the checked size: the best candidate at the replicas the
    # simulation needs (the worksheet's steps 3-5 keep the planned size; step 7 shows both).
    sized = best.resized(v.recommended_replicas, dep, demand)
    cands = [sized if c is best else c for c in cands]
    return replace(plan, candidates=cands, verification=v)
