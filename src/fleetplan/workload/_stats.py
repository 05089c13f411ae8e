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
    "BINS_S",
    "QUANTILES",
    "Counts",
    "RateStats",
    "TailFit",
    "TokenStats",
    "arrival_rates",
    "daily_profile",
    "interarrival_cv",
    "ks_distance",
    "log2_histogram",
    "rates_from_counts",
    "seconds_bincount",
    "tail_fit",
    "token_stats",
    "token_stats_of",
]

QUANTILES: dict[str, float] = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}
BINS_S: dict[str, int] = {"1s": 1, "1min": 60, "1h": 3600}
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


BINCOUNT_MAX = 1 << 26  # count values directly up to this max token count, else sort


@dataclass(frozen=True)
class Counts:
    """A non-negative integer sample as sorted distinct values and their counts.

    Built in one O(n) `bincount` pass for token counts (or one sort for huge values); every
    statistic below is then O(distinct values), which is what makes 10M rows cheap.
    """

    values: np.ndarray  # sorted, distinct (int64; float64 for derived samples)
    counts: np.ndarray  # > 0
    cum: np.ndarray  # cumulative counts

    @classmethod
    def of(cls, series: pl.Series) -> Counts:
        arr = series.to_numpy()
        if arr.size and int(arr.min()) >= 0 and int(arr.max()) <= BINCOUNT_MAX:
            full = np.bincount(arr)
            values = np.flatnonzero(full)
            counts = full[values]
        else:
            uniq = np.unique(arr, return_counts=True)
            values, counts = uniq[0], uniq[1]
        return cls(values.astype(np.int64), counts.astype(np.int64), np.cumsum(counts))

    @property
    def n(self) -> int:
        return int(self.cum[-1]) if self.cum.size else 0

    def at_rank(self, ranks: np.ndarray) -> np.ndarray:
        """The order statistics x_(r) (0-based ranks) of the sample."""
        out: np.ndarray = self.values[np.searchsorted(self.cum, ranks, side="right")]
        return out

    def quantile(self, q: float) -> float:
        """Linear interpolation between order statistics: numpy's default method."""
        h = (self.n - 1) * q
        lo = math.floor(h)
        x = self.at_rank(np.array([lo, min(lo + 1, self.n - 1)]))
        return float(x[0] + (h - lo) * (x[1] - x[0]))

    def mean(self) -> float:
        return float(np.dot(self.values.astype(np.float64), self.counts) / self.n)


def token_stats(frame: pl.DataFrame, column: str) -> TokenStats:
    """Percentiles (linear interpolation), max and mean of one Int64 column."""
    return token_stats_of(Counts.of(frame[column]))


def token_stats_of(c: Counts) -> TokenStats:
    qs = {k: c.quantile(q) for k, q in QUANTILES.items()}
    return TokenStats(**qs, max=int(c.values[-1]), mean=c.mean())


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

    peak = max over bins of count / b, and at least the mean; the last, partial bin is divided
    by the full width b (so it can only understate). When the span is shorter than b there is
    no full bin and the peak is the mean over the span (burst factor 1). Mean = requests /
    span.
    """
    return rates_from_counts(seconds_bincount(arrival_s), arrival_s.len(), span_s)


def seconds_bincount(arrival_s: pl.Series) -> np.ndarray:
    """Requests in each whole second [k, k+1) from t = 0 (arrival_s >= 0)."""
    sec = arrival_s.to_numpy().astype(np.int64)  # truncation = floor, since arrival_s >= 0
    counts: np.ndarray = np.bincount(sec)  # one pass; sec is bounded by the span in seconds
    return counts


def rates_from_counts(counts_1s: np.ndarray, n: int, span_s: float) -> RateStats:
    """`arrival_rates` from the per-second counts of `n` requests over `span_s`."""
    mean = n / span_s if span_s > 0 else None
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
            # Fixed bins can split an even trace so that no bin reaches the mean, which counts
            # the requests at both ends of the span (3 requests 1 s apart: mean 1.5/s, every
            # 1 s bin 1/s); some window of that width holds at least the mean, so the peak does.
            peak = max(float(counts.max()) / width, mean)
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


def log2_histogram(c: Counts) -> dict[str, list[int]]:
    """Counts in bins [0,1), [1,2), [2,4), ... [2^k, 2^(k+1)); `edges` has one more entry."""
    top = int(c.values[-1]) if c.values.size else 0
    edges = [0] + [2**k for k in range(top.bit_length() + 1)]
    below = np.searchsorted(c.values, edges, side="left")  # distinct values < each edge
    cum = np.concatenate(([0], c.cum))
    counts = np.diff(cum[below])
    return {"edges": edges, "counts": [int(x) for x in counts]}


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


def ks_distance(c: Counts, cdf: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of the sample in `c` to a continuous CDF given at c.values.

    Exact on the whole sample, ties included (as scipy.stats.kstest computes it).
    """
    n = c.n
    after = c.cum / n
    before = (c.cum - c.counts) / n
    return float(max(np.max(after - cdf), np.max(cdf - before)))


def tail_fit(c: Counts) -> TailFit:
    """Lognormal MLE on positive values, and the Hill tail index on the top 5 %."""
    from scipy.special import ndtr

    keep = c.values > 0
    pos = Counts(c.values[keep], c.counts[keep], np.cumsum(c.counts[keep]))
    n = pos.n
    if n < HILL_MIN_K + 1:
        return TailFit(None, None, None, None, 0, None, None)
    logs = np.log(pos.values.astype(np.float64))
    mu = float(np.dot(logs, pos.counts) / n)
    sigma = float(math.sqrt(max(np.dot((logs - mu) ** 2, pos.counts) / n, 0.0)))
    ks_ln = ks_distance(pos, ndtr((logs - mu) / sigma)) if sigma > 0 else None
    k = min(n - 1, max(HILL_MIN_K, int(HILL_FRACTION * n)))
    threshold = float(pos.at_rank(np.array([n - k - 1]))[0])  # the (k+1)-th largest value
    above = pos.values > threshold
    ratio = pos.values[above] / threshold
    excess = float(np.dot(np.log(ratio), pos.counts[above]))
    if excess <= 0:
        return TailFit(mu, sigma, ks_ln, None, k, threshold, None)
    alpha = k / excess
    at_threshold = k - int(pos.counts[above].sum())  # top-k values equal to the threshold
    tail_vals = np.concatenate(([1.0], ratio)) if at_threshold else ratio
    tail_cnts = np.concatenate(([at_threshold], pos.counts[above])) if at_threshold else \
        pos.counts[above]
    tail = Counts(tail_vals, tail_cnts, np.cumsum(tail_cnts))
    ks_hill = ks_distance(tail, 1.0 - tail_vals ** (-alpha))
    return TailFit(mu, sigma, ks_ln, alpha, k, threshold, ks_hill)


def daily_profile(counts_1s: np.ndarray, span_s: float, start_epoch_s: float | None) -> dict[
        str, object] | None:
    """Mean rate by hour of day (span >= 1 day) and by day of week (span >= 7 days).

    Hours are UTC clock hours when the trace has wall-clock times, else hours since its start.
    """
    if span_s < 86400:
        return None
    sec = np.arange(len(counts_1s), dtype=np.int64)
    if start_epoch_s is not None:  # bin k covers [start + k, start + k + 1): its midpoint's second
        sec = np.floor(sec + (start_epoch_s + 0.5)).astype(np.int64)
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
