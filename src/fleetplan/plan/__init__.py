"""Planner: demand + SLO -> per-candidate operating points -> sized, priced fleet options."""

from fleetplan.plan.demand import Demand, TokenStats, demand_presets, resolve_demand
from fleetplan.plan.operating import OperatingPoint, operating_point
from fleetplan.plan.search import Candidate, PlanFactors, pareto, search
from fleetplan.plan.slo import SLOTarget, SLOTargets, parse_slo
from fleetplan.plan.worksheet import Plan, make_plan

__all__ = [
    "Candidate",
    "Demand",
    "OperatingPoint",
    "Plan",
    "PlanFactors",
    "SLOTarget",
    "SLOTargets",
    "TokenStats",
    "demand_presets",
    "make_plan",
    "operating_point",
    "pareto",
    "parse_slo",
    "resolve_demand",
    "search",
]
