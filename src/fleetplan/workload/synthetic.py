"""Synthetic workloads for what-if analysis, from a measured trace or its characterization.

Arrivals: `poisson` (exponential gaps), `gamma` (gamma gaps with a chosen coefficient of
variation; cv > 1 is burstier than Poisson) or `mmpp` (a two-state Markov-modulated Poisson
process: a high state `burst` times the mean rate for 20 % of the time, mean dwell 60 s).
Lengths: `empirical` resamples whole (input, output, tenant, model) rows of the source trace,
keeping their correlation; `lognormal` draws from lognormals fitted to the source.
The mean rate is the source's times `rate_scale`, divided by `time_stretch`. Every draw comes
from one `numpy.random.Generator(seed)`, so equal arguments give an identical workload.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from fleetplan.errors import UsageError
from fleetplan.workload._characterize import Characterization, characterize
from fleetplan.workload._model import Workload

__all__ = ["ARRIVALS", "LENGTHS", "arrival_times", "check_arrival_options", "generate", "write"]

ARRIVALS: tuple[str, ...] = ("poisson", "gamma", "mmpp")
LENGTHS: tuple[str, ...] = ("empirical", "lognormal")
MMPP_HIGH_FRACTION = 0.2  # share of time in the high state
MMPP_HIGH_DWELL_S = 60.0  # mean time in the high state
Z90 = 1.2815515655446004  # standard normal 90th percentile
#: Most requests one synthetic workload may hold (~2.4 GB as a table; a guard against typos
#: such as --duration 1e12, which would otherwise exhaust memory).
MAX_REQUESTS = 100_000_000


def _renewal(rng: np.random.Generator, duration_s: float, rate: float, cv: float) -> np.ndarray:
    """Arrival times of a renewal process with gamma gaps (cv = 1 is Poisson) in [0, D)."""
    shape = 1.0 / (cv * cv)
    scale = 1.0 / (rate * shape)  # mean gap = shape * scale = 1 / rate
    expected = rate * duration_s
    chunks: list[np.ndarray] = []
    t = 0.0
    while t < duration_s:
        n = int(expected * 1.1 + 10 * math.sqrt(expected + 1) + 16)
        gaps = rng.exponential(1.0 / rate, n) if cv == 1.0 else rng.gamma(shape, scale, n)
        times = t + np.cumsum(gaps)
        chunks.append(times)
        t = float(times[-1])
    all_t = np.concatenate(chunks)
    return all_t[all_t < duration_s]


def _mmpp(rng: np.random.Generator, duration_s: float, rate: float, burst: float) -> np.ndarray:
    """Two-state MMPP with mean `rate`; the high state runs at `burst` * rate."""
    p = MMPP_HIGH_FRACTION
    if not 1.0 <= burst < 1.0 / p:
        raise UsageError(f"the MMPP burst must be in [1, {1 / p:g})", where="--burst")
    rates = (rate * (1 - p * burst) / (1 - p), rate * burst)  # (low, high)
    dwell = (MMPP_HIGH_DWELL_S * (1 - p) / p, MMPP_HIGH_DWELL_S)
    state = int(rng.random() < p)
    t = 0.0
    out: list[np.ndarray] = []
    while t < duration_s:
        end = min(duration_s, t + rng.exponential(dwell[state]))
        n = rng.poisson(rates[state] * (end - t))
        out.append(np.sort(rng.uniform(t, end, n)))
        t, state = end, 1 - state
    return np.concatenate(out) if out else np.zeros(0)


def arrival_times(
    rng: np.random.Generator, duration_s: float, rate_per_s: float, *, arrivals: str = "poisson",
    cv: float = 1.0, burst: float = 2.0,
) -> np.ndarray:
    """Sorted arrival times (s) in [0, duration_s) at mean rate `rate_per_s`."""
    if arrivals not in ARRIVALS:
        raise UsageError(f"unknown arrival process '{arrivals}'; use {ARRIVALS}",
                         where="--arrivals")
    if not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise UsageError(f"must be a finite number > 0, got {rate_per_s}", where="rate")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise UsageError(f"must be a finite number > 0, got {duration_s}", where="--duration")
    if arrivals == "mmpp":
        return _mmpp(rng, duration_s, rate_per_s, burst)
    if cv <= 0:
        raise UsageError("must be > 0", where="--cv")
    return _renewal(rng, duration_s, rate_per_s, 1.0 if arrivals == "poisson" else cv)


def check_arrival_options(arrivals: str, cv: float | None, burst: float | None) -> None:
    """Refuse a `cv` or `burst` the arrival process does not use (it would be ignored)."""
    for flag, v, process in (("--cv", cv, "gamma"), ("--burst", burst, "mmpp")):
        if v is not None and arrivals in ARRIVALS and arrivals != process:
            raise UsageError(f"applies only to --arrivals {process}, not {arrivals} (it would "
                             "be ignored)", where=flag)


def _lognormal_from(p50: float, p90: float) -> tuple[float, float]:
    mu = math.log(max(p50, 1.0))
    sigma = max(0.0, (math.log(max(p90, 1.0)) - mu) / Z90)
    return mu, sigma


def _lognormal_lengths(rng: np.random.Generator, c: Characterization, n: int) -> pl.DataFrame:
    cols = {}
    for name, stats in (("input_tokens", c.input_tokens), ("output_tokens", c.output_tokens)):
        mu, sigma = _lognormal_from(stats.p50, stats.p90)
        if name == "output_tokens" and c.output_tail.lognormal_mu is not None:
            mu, sigma = c.output_tail.lognormal_mu, c.output_tail.lognormal_sigma or 0.0
        draw = np.rint(rng.lognormal(mu, sigma, n))
        cols[name] = np.clip(draw, 1, max(stats.max, 1)).astype(np.int64)
    return pl.DataFrame(cols)


def _empirical_lengths(rng: np.random.Generator, w: Workload, n: int) -> pl.DataFrame:
    keep = [c for c in ("input_tokens", "output_tokens", "tenant", "model") if c in w.table.columns]
    idx = rng.integers(0, w.table.height, n)
    return w.table.select(keep)[idx]


def generate(
    source: Workload | Characterization,
    *,
    seed: int,
    duration_s: float | None = None,
    rate_scale: float = 1.0,
    time_stretch: float = 1.0,
    arrivals: str = "poisson",
    cv: float | None = None,
    burst: float | None = None,
    lengths: str = "empirical",
) -> Workload:
    """A synthetic Workload shaped like `source`; see the module docstring for the models.

    `cv` defaults to the source's measured inter-arrival CV, `burst` to its 1-minute burst
    factor (capped below 5), `duration_s` to the source span times `time_stretch`.
    """
    c = source if isinstance(source, Characterization) else characterize(source)
    if lengths not in LENGTHS:
        raise UsageError(f"unknown length model '{lengths}'; use {LENGTHS}", where="--lengths")
    if lengths == "empirical" and not isinstance(source, Workload):
        raise UsageError("empirical lengths need the trace, not only its characterization",
                         where="--lengths")
    check_arrival_options(arrivals, cv, burst)
    for flag, v in (("--rate-scale", rate_scale), ("--time-stretch", time_stretch),
                    ("--duration", duration_s), ("--cv", cv), ("--burst", burst)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UsageError(f"must be a finite number > 0, got {v}", where=flag)
    if c.rate_mean_per_s is None:
        raise UsageError("the source trace spans no time; it has no rate", where="--from")
    if seed < 0:  # numpy's seed sequence takes non-negative integers only
        raise UsageError(f"must be >= 0, got {seed}", where="--seed")
    rng = np.random.default_rng(seed)
    rate = c.rate_mean_per_s * rate_scale / time_stretch
    duration = duration_s if duration_s is not None else c.span_s * time_stretch
    cv_used = cv if cv is not None else (c.interarrival_cv or 1.0)
    burst_used = burst if burst is not None else min(c.burst_factor.get("1min") or 1.0, 4.9)
    expected = rate * duration
    if expected > MAX_REQUESTS:
        raise UsageError(
            f"{rate:.4g} requests/s for {duration:.4g} s is ~{expected:.3g} requests; at most "
            f"{MAX_REQUESTS:,} (a shorter --duration or a smaller --rate-scale)",
            where="--duration" if duration_s is not None else "--rate-scale")
    times = arrival_times(rng, duration, rate, arrivals=arrivals, cv=cv_used, burst=burst_used)
    n = len(times)
    if isinstance(source, Workload) and lengths == "empirical":
        body = _empirical_lengths(rng, source, n)
    else:
        body = _lognormal_lengths(rng, c, n)
    table = body.with_columns(pl.Series("arrival_s", times)).select(
        "arrival_s", *body.columns)
    return Workload(table, f"synthetic({c.source}, seed={seed})", "synthetic")


def write(w: Workload, path: str | Path) -> None:
    """Write a workload as CSV (or Parquet for a .parquet path); `load` reads it back."""
    out = Path(path)
    table = w.table.drop("hash_ids") if "hash_ids" in w.table.columns else w.table
    if out.suffix.lower() == ".parquet":
        table.write_parquet(out)
    else:
        table.write_csv(out, float_precision=6)
