"""Check a sized plan in the simulator, statistically, and add replicas where it falls short.

The worksheet sizes a fleet from averages; SLOs are percentiles under bursts and queueing. For
the recommended candidate this module simulates the workload on the planned fleet:

- a trace workload is replayed with its own burstiness, its rate scaled by one factor that
  maps the trace's mean rate to the plan's rate; each Monte Carlo run replays its own window
  of consecutive requests, the window starts drawn one per equal stratum of the trace
  (`window_starts`), so the runs see the trace's quiet and busy stretches alike (a trace no
  longer than one window is one run);
- a preset or flag workload becomes Poisson arrivals at the *peak* rate the plan promises to
  absorb (mean x burst factor); a preset's (input, output) pairs are resampled from the bundled
  trace it characterizes (`Demand.lengths_from`: its joint lengths, mean and tails; scaled as
  `--isl`/`--osl` scaled the preset), other lengths drawn from a lognormal matched to the mean
  and median (fixed when they are equal), capped at the observed maximum.

Each run is long enough to reach and measure the steady state: at least `STEADY_LIFETIMES`
request lifetimes (the plan's TTFT + mean output x TPOT) of arrivals at the peak rate (a fleet
that starts empty fills its batches only after one lifetime; 2,000 requests of 2,000-token
answers at 60 req/s ended before the first one did, and a 10x overloaded fleet looked fine),
and the requests that arrive in its first lifetime (at most half the run), while the fleet
fills, are left out of the percentiles.

Each Monte Carlo run (its own seed) finds the fewest replicas whose simulated percentiles meet
every SLO target (bisection below the planned count when the plan meets them, adding replicas
one at a time when it falls short); the result reports those counts at P50/P90/P99 over the
runs and the attainment (share of requests within each target) at the planned size. The
recommendation becomes the P90 count when that exceeds the plan; a plan above it keeps its
headroom (the simulation shows how much).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fleetplan.perf import Deployment
from fleetplan.plan.demand import Demand, TokenStats, scaled_trace
from fleetplan.plan.slo import SLOTargets
from fleetplan.sim import FleetConfig, PoissonLoad, ReplicaConfig, TraceLoad, simulate
from fleetplan.sim.load import Load

__all__ = ["DEFAULT_REQUESTS", "MAX_AUTO_REQUESTS", "STEADY_LIFETIMES", "Verification",
           "lognormal_lengths", "run_requests", "verify", "window_starts"]

_COLUMN = {"ttft": "ttft_s", "tpot": "tpot_s", "e2e": "e2e_s"}
#: Requests per run when the load's lifetimes ask for no more.
DEFAULT_REQUESTS = 2000
#: Request lifetimes of arrivals each run holds at least (one fills the fleet, the rest are
#: measured).
STEADY_LIFETIMES = 3.0
#: Most requests an automatically sized run sends (beyond, the runs are shorter and say so).
MAX_AUTO_REQUESTS = 10_000


def run_requests(rate_per_s: float, lifetime_s: float, requests: int | None
                 ) -> tuple[int, str | None]:
    """Requests per run for arrivals at `rate_per_s` whose requests live `lifetime_s`, and a
    note when the run is shorter than `STEADY_LIFETIMES` lifetimes: `requests` as given, else
    the most of `DEFAULT_REQUESTS` and what the lifetimes need (at most `MAX_AUTO_REQUESTS`)."""
    need = math.ceil(STEADY_LIFETIMES * rate_per_s * lifetime_s) if lifetime_s > 0 else 0
    n = requests if requests is not None else min(max(DEFAULT_REQUESTS, need), MAX_AUTO_REQUESTS)
    if n >= need:
        return n, None
    return n, (f"each run holds {n:,} requests, {n / max(rate_per_s, 1e-12):,.0f} s of arrivals "
               f"at {rate_per_s:.3g} req/s, under {STEADY_LIFETIMES:g} request lifetimes "
               f"({lifetime_s:,.1f} s each; {need:,} requests): the fleet may not reach its "
               "steady state and the check may be optimistic"
               + (" (give --sim-requests)" if requests is None else ""))


@dataclass(frozen=True)
class Verification:
    load: str
    runs: int
    requests_per_run: int
    planned_replicas: int
    replicas_needed: list[int]  # per Monte Carlo run
    at_planned: list[dict[str, Any]]  # per run: achieved percentile and attainment per target
    max_replicas_tried: int
    notes: list[str] = field(default_factory=list)
    runs_unmet: int = 0  # runs whose SLO no replica count up to max_replicas_tried met

    def needed(self, q: float) -> int:
        return math.ceil(float(np.percentile(self.replicas_needed, q)))

    @property
    def recommended_replicas(self) -> int:
        return max(self.planned_replicas, self.needed(90))

    @property
    def met_at_planned(self) -> bool:
        return all(r["met"] for r in self.at_planned)

    def to_dict(self) -> dict[str, Any]:
        return {
            "load": self.load,
            "runs": self.runs,
            "requests_per_run": self.requests_per_run,
            "planned_replicas": self.planned_replicas,
            "replicas_needed": {
                "p50": self.needed(50),
                "p90": self.needed(90),
                "p99": self.needed(99),
            },
            "replicas_needed_per_run": self.replicas_needed,
            "recommended_replicas": self.recommended_replicas,
            "met_at_planned": self.met_at_planned,
            "runs_unmet_at_any_size": self.runs_unmet,
            "at_planned": self.at_planned,
            "notes": self.notes,
        }


def lognormal_lengths(stats: TokenStats, n: int, rng: np.random.Generator) -> np.ndarray:
    """Token lengths with the given median and mean (lognormal), capped at the maximum."""
    if stats.mean <= 0:
        return np.ones(n, dtype=np.int64)
    if stats.p50 <= 0 or stats.mean <= stats.p50 * 1.0001:
        return np.full(n, max(1, round(stats.mean)), dtype=np.int64)
    mu = math.log(stats.p50)
    sigma = math.sqrt(2.0 * math.log(stats.mean / stats.p50))
    x = rng.lognormal(mu, sigma, size=n)
    return np.clip(np.rint(x), 1, max(1.0, stats.max)).astype(np.int64)


def _evaluate(res: Any, slo: SLOTargets, overhead_s: float = 0.0,
              warmup_s: float = 0.0) -> dict[str, Any]:
    """Each target's achieved percentile and attainment over the requests that arrived after
    the first `warmup_s` of the run (at most half the run's arrivals are left out). The
    simulator models engine time; `overhead_s`, the request's fixed time before its first
    token that every TTFT the plan states includes (`Efficiency.request_overhead_s`), is added
    to TTFT and E2E alike."""
    req = res.requests
    if warmup_s > 0 and req.height:
        arr = req["arrival_s"].to_numpy()
        cut = min(float(arr.min()) + warmup_s, float(np.median(arr)))
        req = req.filter(req["arrival_s"] >= cut)
    out: dict[str, Any] = {"met": True, "targets": {}}
    for t in slo.targets:
        col = req[_COLUMN[t.metric]].to_numpy().astype(float)
        if t.metric != "tpot":
            col = col + overhead_s
        col = col[np.isfinite(col)]
        if col.size == 0:
            achieved, attain = math.inf, 0.0
        else:
            achieved = float(np.percentile(col, t.percentile))
            attain = float((col <= t.seconds).mean())
        ok = achieved <= t.seconds
        out["met"] = out["met"] and ok
        out["targets"][t.key] = {
            "target_s": t.seconds,
            "achieved_s": achieved if math.isfinite(achieved) else None,
            "attainment": attain,
            "met": ok,
        }
    return out


def _loads(
    demand: Demand, trace: Any | None, burst: float, runs: int, requests: int, seed: int
) -> tuple[list[Load], str]:
    rng = np.random.default_rng(seed)
    if trace is not None:
        return _trace_windows(demand, trace, runs, requests, rng)
    peak = demand.rate_per_s * burst
    pairs = _preset_lengths(demand)
    loads: list[Load] = []
    for _ in range(runs):
        if pairs is not None:
            pick = rng.integers(0, len(pairs[0]), size=requests)
            isl, osl = pairs[0][pick].tolist(), pairs[1][pick].tolist()
        else:
            isl = lognormal_lengths(demand.input_tokens, requests, rng).tolist()
            osl = lognormal_lengths(demand.output_tokens, requests, rng).tolist()
        loads.append(PoissonLoad(peak, requests, isl, osl))
    lengths = (f"; lengths resampled from {demand.lengths_from}" if pairs is not None else "")
    return loads, (f"Poisson at the planned peak {peak:.3g} req/s (mean x burst {burst:g})"
                   + lengths)


def _preset_lengths(demand: Demand) -> tuple[np.ndarray, np.ndarray] | None:
    """The (input, output) token counts of the bundled trace a preset characterizes, scaled as
    the demand's means scale them; None for a demand without one."""
    if demand.lengths_from is None:
        return None
    from fleetplan.workload import load

    table = scaled_trace(load(demand.lengths_from).table, demand)
    isl = np.maximum(table["input_tokens"].to_numpy(), 1)
    osl = np.maximum(table["output_tokens"].to_numpy(), 1)
    return isl.astype(np.int64), osl.astype(np.int64)


def window_starts(n: int, size: int, runs: int, rng: np.random.Generator) -> list[int]:
    """First rows of `runs` windows of `size` consecutive rows out of `n` (stratified sampling).

    The possible starts 0..n-size are cut into `runs` equal strata and one start is drawn
    uniformly in each, so the windows are random (seeded) and still spread over the whole
    trace; repeated starts (a trace barely longer than a window) are dropped. A trace of at
    most `size` rows has the one window that holds it all.
    """
    last = n - size
    if last <= 0:
        return [0]
    edges = np.linspace(0, last + 1, runs + 1)
    starts = {int(rng.integers(int(lo), max(int(lo) + 1, int(hi))))
              for lo, hi in itertools.pairwise(edges)}
    return sorted(min(s, last) for s in starts)


def _trace_windows(
    demand: Demand, trace: Any, runs: int, requests: int, rng: np.random.Generator
) -> tuple[list[Load], str]:
    """Monte Carlo over a trace: windows of `requests` consecutive requests (see module doc).

    Every window is replayed at the one rate scale that maps the whole trace's mean rate to
    the plan's rate, so a busy hour stays busier than a quiet one, as it was.
    """
    table = scaled_trace(trace.table, demand).sort("arrival_s")
    span = float(table["arrival_s"].max() - table["arrival_s"].min()) or 1.0
    scale = demand.rate_per_s / (table.height / span)
    size = min(requests, table.height)
    starts = window_starts(table.height, size, runs, rng)
    bt = int(trace.block_tokens or 512)
    loads: list[Load] = [
        TraceLoad(table.slice(s, size), rate_scale=scale, block_tokens=bt) for s in starts
    ]
    where = ("the whole trace" if size == table.height else
             f"{len(starts)} window(s) of {size} consecutive requests out of {table.height}, "
             "starts drawn one per stratum of the trace")
    return loads, f"trace replay ({where}; rate x{scale:.3g} of the trace's mean)"


def verify(
    dep: Deployment,
    planned_replicas: int,
    demand: Demand,
    slo: SLOTargets,
    *,
    burst: float,
    trace: Any | None = None,
    runs: int = 3,
    requests: int | None = None,
    seed: int = 0,
    max_extra_replicas: int = 16,
    lower_bound: int = 1,
    lifetime_s: float = 0.0,
) -> Verification:
    """Simulate the planned fleet; see the module docstring. `requests` per run: None sizes
    the runs from `lifetime_s` (`run_requests`); `lower_bound`: a replica count below which
    the fleet is expected to fail (checked once: where one fewer meets the targets, the search
    goes down to one replica)."""
    replica = ReplicaConfig.from_deployment(dep)
    rate = demand.rate_per_s * (1.0 if trace is not None else burst)
    requests, short = run_requests(rate, lifetime_s, requests)
    warmup_s = lifetime_s
    loads, desc = _loads(demand, trace, burst, runs, requests, seed)
    needed: list[int] = []
    at_planned: list[dict[str, Any]] = []
    top = planned_replicas + max_extra_replicas
    notes: list[str] = [short] if short else []
    unmet = 0
    for i, load in enumerate(loads):

        def met(r: int, i: int = i, load: Load = load) -> dict[str, Any]:
            fleet = FleetConfig.homogeneous(replica, r, "least-outstanding")
            return _evaluate(simulate(fleet, load, seed=seed + i), slo,
                             dep.efficiency.request_overhead_s, warmup_s)

        first = {"seed": seed + i, "replicas": planned_replicas, **met(planned_replicas)}
        at_planned.append(first)
        if first["met"]:  # fewest replicas that still meet every target (bisection)
            lo, hi = min(lower_bound, planned_replicas) - 1, planned_replicas
            if lo >= 1 and met(lo)["met"]:  # the bound does not hold: search from one
                lo, hi = 0, lo
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if met(mid)["met"] else (mid, hi)
            needed.append(hi)
            continue
        r = planned_replicas
        while r < top and not met(r + 1)["met"]:
            r += 1
        if r >= top:
            notes.append(f"run {i}: SLO not met even at {top} replicas: the recommendation "
                         "below does not keep it; more replicas will not, a faster candidate "
                         "or a looser target may")
            unmet += 1
        needed.append(min(r + 1, top))
    return Verification(
        desc, len(loads), requests, planned_replicas, needed, at_planned, top, notes, unmet
    )
