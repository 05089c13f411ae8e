"""Benchmark: the full plan search for one model over every GPU, TP and precision.

Target (issue 2): under 1 s wall time. Prints wall time and peak RSS.
Run: `make bench` or `.venv/bin/python bench/plan_search.py`.
"""

from __future__ import annotations

import resource
import time

from fleetplan.catalog import get_engine, get_model, load_catalog
from fleetplan.plan import PlanFactors, make_plan, parse_slo, resolve_demand


def main() -> None:
    cat = load_catalog()  # load (and cache) the catalog before timing
    model = get_model("llama-3.1-70b")
    engine = get_engine("vllm")
    demand = resolve_demand("chat", 20.0, None, None)
    slo = parse_slo("ttft_p95=1s,tpot_p95=50ms")
    gpus = list(cat.gpus.values())
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        plan = make_plan(model, gpus, engine, demand, slo, PlanFactors())
        runs.append(time.perf_counter() - t0)
    n = len(plan.candidates)
    feas = sum(c.feasible for c in plan.candidates)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"plan search: {len(gpus)} GPUs x TP(1,2,4,8) x precisions = {n} candidates")
    print(f"feasible: {feas}")
    print(f"wall time: best {min(runs):.3f} s, median {sorted(runs)[2]:.3f} s (target < 1 s)")
    print(f"peak RSS: {rss:.0f} MB")


if __name__ == "__main__":
    main()
