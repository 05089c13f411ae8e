"""Statistics of one trace: percentiles, arrival rates per bin, histograms, the output tail.

Pure functions of polars Series / numpy arrays; `_characterize` assembles them.
Percentiles use linear interpolation between order statistics (numpy's default method).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

__all__ = [
    "BINS_S", "QUANTILES", "RateStats", "TailFit", "TokenStats", "arrival_rates",
    "daily_profile", "interarrival_cv", "log2_histogram", "tail_fit", "token_stats",
]

QUANTILES: dict[str, float] = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}
BINS_S: dict[str, int] = {"1s": 1, "1min": 60, "1h": 3600}
KS_SAMPLE = 200_000  # KS distance on a seeded subsample of at most this many values
KS_SEED = 0
HILL_FRACTION = 0.05  # Hill estimator on the top 5 % of values (at least HILL_MIN_K)
HILL_MIN_K = 10


@dataclass(frozen=True)
class TokenStats:
    """Token-count distribution: linear-interpolation percentiles, max and mean."""

    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    max: int
    mean: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def token_stats(frame: pl.DataFrame, column: str) -> TokenStats:
    """Percentiles of one Int64 column in a single polars pass."""
    col = pl.col(column)
    exprs = [col.quantile(q, interpolation="linear").alias(k) for k, q in QUANTILES.items()]
    row = frame.select(*exprs, col.max().alias("max"), col.mean().alias("mean")).row(0, named=True)
    return TokenStats(**{k: float(row[k]) for k in QUANTILES}, max=int(row["max"]),
                      mean=float(row["mean"]))


@dataclass(frozen=True)
class RateStats:
    """Mean and peak arrival rate (requests/s) per bin width, and per-bin counts for charts."""

    mean_per_s: float | None
    peak_per_s: dict[str, float | None]
    burst_factor: dict[str, float | None]
    counts_1s: np.ndarray  # requests in each 1 s bin from t = 0
    counts_1min: np.ndarray


def arrival_rates(arrival_s: pl.Series, span_s: float) -> RateStats:
    """Rates over fixed bins [k*b, (k+1)*b) from the first request.

    peak = max over bins of count / b; the last, partial bin is divided by the full width b
    (so it can only understate). When the span is shorter than b there is no full bin and the
    peak is the mean over the span (burst factor 1). Mean = requests / span.
    """
    n = arrival_s.len()
    mean = n / span_s if span_s > 0 else None
    sec = arrival_s.floor().cast(pl.Int64).to_numpy()
    counts_1s = np.bincount(sec)  # one pass; sec is bounded by the span in seconds
    peaks: dict[str, float | None] = {}
    bursts: dict[str, float | None] = {}
    per_bin: dict[str, np.ndarray] = {}
    for key, width in BINS_S.items():
        counts = _rebin(counts_1s, width)
        per_bin[key] = counts
        if mean is None:
            peaks[key], bursts[key] = None, None
        elif span_s < width:
            peaks[key], bursts[key] = mean, 1.0
        else:
            peak = float(counts.max()) / width
            peaks[key], bursts[key] = peak, peak / mean
    return RateStats(mean, peaks, bursts, counts_1s, per_bin["1min"])


def _rebin(counts_1s: np.ndarray, width: int) -> np.ndarray:
    if width == 1:
        return counts_1s
    pad = (-len(counts_1s)) % width
    out: np.ndarray = np.pad(counts_1s, (0, pad)).reshape(-1, width).sum(axis=1)
    return out


def interarrival_cv(arrival_s: pl.Series) -> float | None:
    """Coefficient of variation (std / mean, population std) of the gaps between arrivals."""
    gaps = arrival_s.diff().drop_nulls()
    if gaps.len() < 2:
        return None
    mean = gaps.mean()
    std = gaps.std(ddof=0)
    if not isinstance(mean, float) or not isinstance(std, float) or mean <= 0:
        return None
    return std / mean


def log2_histogram(values: pl.Series) -> dict[str, list[int]]:
    """Counts in bins [0,1), [1,2), [2,4), ... [2^k, 2^(k+1)); `edges` has one more entry."""
    v = values.cast(pl.Float64)
    idx = pl.select(
        pl.when(v < 1).then(0).otherwise(v.clip(1.0).log(2).floor().cast(pl.Int64) + 1).alias("b")
    )["b"].to_numpy()
    counts = np.bincount(idx)
    edges = [0] + [2**k for k in range(len(counts))]
    return {"edges": edges, "counts": [int(c) for c in counts]}


@dataclass(frozen=True)
class TailFit:
    """Fits of the output-length distribution and how well they fit (KS distance, 0 = exact)."""

    lognormal_mu: float | None
    lognormal_sigma: float | None
    lognormal_ks: float | None
    hill_alpha: float | None
    hill_k: int
    hill_threshold: float | None
    hill_ks: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def tail_fit(values: pl.Series) -> TailFit:
    """Lognormal MLE on positive values, and the Hill tail index on the top 5 %."""
    from scipy import stats

    pos = values.filter(values > 0).cast(pl.Float64)
    if pos.len() < HILL_MIN_K + 1:
        return TailFit(None, None, None, None, 0, None, None)
    logs = pos.log()
    mu, sigma = float(logs.mean()), float(logs.std(ddof=0))  # type: ignore[arg-type]
    sample = pos.to_numpy()
    if sample.size > KS_SAMPLE:
        rng = np.random.default_rng(KS_SEED)
        sample = rng.choice(sample, size=KS_SAMPLE, replace=False)
    ks_ln = None
    if sigma > 0:
        ks_ln = float(stats.kstest(sample, "lognorm", args=(sigma, 0, math.exp(mu))).statistic)
    k = min(pos.len() - 1, max(HILL_MIN_K, int(HILL_FRACTION * pos.len())))
    top = np.sort(pos.top_k(k + 1).to_numpy())[::-1]
    threshold = float(top[k])
    excess = np.log(top[:k] / threshold)
    alpha = float(k / excess.sum()) if excess.sum() > 0 else None
    ks_hill = None
    if alpha is not None:
        ks_hill = float(stats.kstest(top[:k] / threshold, "pareto", args=(alpha,)).statistic)
    return TailFit(mu, sigma, ks_ln, alpha, k, threshold, ks_hill)


def daily_profile(counts_1s: np.ndarray, span_s: float, start_epoch_s: float | None) -> dict[
        str, object] | None:
    """Mean rate by hour of day (span >= 1 day) and by day of week (span >= 7 days).

    Hours are UTC clock hours when the trace has wall-clock times, else hours since its start.
    """
    if span_s < 86400:
        return None
    offset = int(start_epoch_s) if start_epoch_s is not None else 0
    sec = np.arange(len(counts_1s)) + offset
    hour_counts = np.bincount((sec // 3600) % 24, weights=counts_1s, minlength=24)
    hour_seconds = np.bincount((sec // 3600) % 24, minlength=24)
    out: dict[str, object] = {
        "clock": "UTC" if start_epoch_s is not None else "since trace start",
        "hour_of_day_rate_per_s": _ratio(hour_counts, hour_seconds),
    }
    if span_s >= 7 * 86400:
        shift = 3 if start_epoch_s is not None else 0  # 1970-01-01 was a Thursday; 0 = Monday
        day = ((sec // 86400) + shift) % 7
        day_counts = np.bincount(day, weights=counts_1s, minlength=7)
        out["day_of_week_rate_per_s"] = _ratio(day_counts, np.bincount(day, minlength=7))
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> list[float | None]:
    return [float(a) / float(b) if b > 0 else None for a, b in zip(num, den, strict=True)]
