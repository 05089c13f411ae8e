"""`characterize()`: a Workload → measured statistics (`Characterization`) for planner and sim.

Definitions (also in docs/WORKLOAD.md): span = last arrival - first arrival; mean rate =
requests / span; peak rate per bin width b = the largest count in [k*b, (k+1)*b) over b;
burst factor = peak / mean; io_ratio = mean input tokens / mean output tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from fleetplan.errors import UsageError
from fleetplan.workload._model import Workload
from fleetplan.workload._prefix import PrefixReuse, prefix_reuse
from fleetplan.workload._stats import (
    Counts,
    TailFit,
    TokenStats,
    arrival_rates,
    daily_profile,
    interarrival_cv,
    log2_histogram,
    tail_fit,
    token_stats_of,
)

__all__ = ["Characterization", "characterize"]

TOP_GROUPS = 50  # tenants / models listed in a breakdown, by request count


@dataclass(frozen=True)
class Characterization:
    """Measured statistics of one trace. `to_dict()` is the CLI's JSON."""

    source: str
    format: str
    requests: int
    span_s: float
    rate_mean_per_s: float | None
    rate_peak_per_s: dict[str, float | None]
    burst_factor: dict[str, float | None]
    interarrival_cv: float | None
    input_tokens: TokenStats
    output_tokens: TokenStats
    io_ratio: float | None
    context_histogram: dict[str, list[int]]
    output_histogram: dict[str, list[int]]
    output_tail: TailFit
    start_epoch_s: float | None = None
    profile: dict[str, Any] | None = None
    by_tenant: list[dict[str, Any]] | None = None
    by_model: list[dict[str, Any]] | None = None
    prefix_reuse: PrefixReuse | None = None
    workflows: dict[str, Any] | None = None
    skipped_rows: int = 0
    rate_per_min: list[int] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; optional sections appear only when the trace has the data."""
        out: dict[str, Any] = {
            "source": self.source, "format": self.format, "requests": self.requests,
            "span_s": self.span_s, "start_epoch_s": self.start_epoch_s,
            "rate_mean_per_s": self.rate_mean_per_s, "rate_peak_per_s": self.rate_peak_per_s,
            "burst_factor": self.burst_factor, "interarrival_cv": self.interarrival_cv,
            "input_tokens": self.input_tokens.to_dict(),
            "output_tokens": self.output_tokens.to_dict(), "io_ratio": self.io_ratio,
            "context_histogram": self.context_histogram,
            "output_histogram": self.output_histogram,
            "output_tail": self.output_tail.to_dict(), "skipped_rows": self.skipped_rows,
        }
        optional: dict[str, Any] = {
            "profile": self.profile, "by_tenant": self.by_tenant, "by_model": self.by_model,
            "prefix_reuse": self.prefix_reuse.to_dict() if self.prefix_reuse else None,
            "workflows": self.workflows,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


def _breakdown(table: pl.DataFrame, column: str, span_s: float) -> list[dict[str, Any]]:
    n = table.height
    grouped = (
        table.group_by(column)
        .agg(
            pl.len().alias("requests"),
            pl.col("input_tokens").mean().alias("input_tokens_mean"),
            pl.col("output_tokens").mean().alias("output_tokens_mean"),
            (pl.col("input_tokens") + pl.col("output_tokens")).sum().alias("tokens"),
        )
        .sort(["requests", column], descending=[True, False], nulls_last=True)
        .head(TOP_GROUPS)
    )
    rows = []
    for r in grouped.iter_rows(named=True):
        rows.append({
            column: r[column], "requests": r["requests"], "share": r["requests"] / n,
            "rate_mean_per_s": r["requests"] / span_s if span_s > 0 else None,
            "input_tokens_mean": r["input_tokens_mean"],
            "output_tokens_mean": r["output_tokens_mean"], "tokens": r["tokens"],
        })
    return rows


def _dist(values: pl.Series) -> dict[str, float]:
    arr = values.cast(pl.Float64).to_numpy()
    return {"mean": float(arr.mean()), "p50": float(np.percentile(arr, 50)),
            "p90": float(np.percentile(arr, 90)), "max": float(arr.max())}


def workflow_stats(table: pl.DataFrame) -> dict[str, Any]:
    """Calls and tokens per agent workflow, and token inflation = workflow tokens / first call's.

    Tokens are input + output. Workflows whose first call has zero tokens have no inflation.
    """
    tokens = pl.col("input_tokens") + pl.col("output_tokens")
    per = (
        table.filter(pl.col("workflow_id").is_not_null())
        .group_by("workflow_id")
        .agg(
            pl.len().alias("calls"),
            tokens.sum().alias("tokens"),
            tokens.sort_by("arrival_s").first().alias("first_tokens"),
        )
    )
    inflation = per.filter(pl.col("first_tokens") > 0).select(
        (pl.col("tokens") / pl.col("first_tokens")).alias("x"))["x"]
    out: dict[str, Any] = {
        "workflows": per.height,
        "calls_per_workflow": _dist(per["calls"]),
        "tokens_per_workflow": _dist(per["tokens"]),
    }
    if inflation.len():
        out["token_inflation"] = _dist(inflation)
    return out


def characterize(w: Workload, *, cache_blocks: int | None = None) -> Characterization:
    """Measure a workload. `cache_blocks` adds an LRU prefix-cache hit rate of that size."""
    if cache_blocks is not None and cache_blocks < 0:
        raise UsageError("must be >= 0 blocks", where="--cache-blocks")
    t = w.table
    arrival = t["arrival_s"]
    span = float(arrival[-1] - arrival[0]) if t.height else 0.0
    rates = arrival_rates(arrival, span)
    in_counts, out_counts = Counts.of(t["input_tokens"]), Counts.of(t["output_tokens"])
    inp, out = token_stats_of(in_counts), token_stats_of(out_counts)
    reuse = None
    if w.has_hashes and w.block_tokens:
        reuse = prefix_reuse(t, w.block_tokens, cache_blocks)
    return Characterization(
        source=w.source, format=w.format, requests=t.height, span_s=span,
        rate_mean_per_s=rates.mean_per_s, rate_peak_per_s=rates.peak_per_s,
        burst_factor=rates.burst_factor, interarrival_cv=interarrival_cv(arrival),
        input_tokens=inp, output_tokens=out,
        io_ratio=inp.mean / out.mean if out.mean > 0 else None,
        context_histogram=log2_histogram(in_counts),
        output_histogram=log2_histogram(out_counts),
        output_tail=tail_fit(out_counts), start_epoch_s=w.start_epoch_s,
        profile=daily_profile(rates.counts_1s, span, w.start_epoch_s),
        by_tenant=_breakdown(t, "tenant", span) if w.has("tenant") else None,
        by_model=_breakdown(t, "model", span) if w.has("model") else None,
        prefix_reuse=reuse,
        workflows=workflow_stats(t) if w.has("workflow_id") else None,
        skipped_rows=w.skipped.count,
        rate_per_min=[int(c) for c in rates.counts_1min],
    )
