"""The capacity plan as a worksheet: every step of the method with its inputs and result.

1. workload: rate, input/output means and tails;  2. SLO targets;
3. theoretical minimum GPUs (per-replica throughput at the TPOT/TTFT target, replicas for the
   mean rate) and the efficiency tax;  4. burst factor;  5. headroom;
6. the bottleneck resource and why.
`make_plan` runs the search and returns a `Plan` whose `to_dict()` is the CLI's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetplan.catalog import GPU, Engine, ModelSpec, Quant
from fleetplan.plan.demand import Demand, TokenStats
from fleetplan.plan.search import Candidate, PlanFactors, pareto, search
from fleetplan.plan.slo import SLOTargets

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

    @property
    def best(self) -> Candidate | None:
        feas = [c for c in self.candidates if c.feasible]
        return feas[0] if feas else None

    def worksheet(self) -> list[dict[str, Any]]:
        d, f, best = self.demand, self.factors, self.best
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
        p, s = best.point, best.sizing
        steps += [
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
                "replicas": best.replicas,
                "gpus_total": best.gpus_total,
            },
            {
                "step": 6,
                "name": "bottleneck",
                "limit": p.limit,
                "resource": p.bottleneck,
                "why": p.why,
            },
        ]
        return steps

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "model": self.model.name,
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
) -> Plan:
    cands = search(model, gpus, engine, demand, slo, factors, tps=tps, precisions=precisions)
    return Plan(model, demand, slo, factors, cands)
