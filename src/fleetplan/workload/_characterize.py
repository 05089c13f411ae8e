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
    RateStats,
    TailFit,
    TokenStats,
    arrival_rates,
    daily_profile,
    interarrival_cv,
    log2_histogram,
    rates_from_counts,
    tail_fit,
    token_stats_of,
)
from fleetplan.workload._stream import StreamedWorkload, StreamSummary

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
    grouped = table.group_by(column).agg(
        pl.len().alias("requests"),
        pl.col("input_tokens").mean().alias("input_tokens_mean"),
        pl.col("output_tokens").mean().alias("output_tokens_mean"),
        (pl.col("input_tokens") + pl.col("output_tokens")).sum().alias("tokens"),
    )
    return breakdown_rows(grouped, column, table.height, span_s)


def breakdown_rows(grouped: pl.DataFrame, column: str, n: int, span_s: float) -> list[
        dict[str, Any]]:
    """The TOP_GROUPS largest groups of a per-group frame (requests, means, tokens) as rows."""
    top = grouped.sort(["requests", column], descending=[True, False], nulls_last=True).head(
        TOP_GROUPS)
    rows = []
    for r in top.iter_rows(named=True):
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
    """Measure a workload. `cache_blocks` adds an LRU prefix-cache hit rate of that size.

    A workload `load` streamed (`StreamedWorkload`) is measured from its streamed summary, in
    bounded memory, with the same results.
    """
    if cache_blocks is not None and cache_blocks < 0:
        raise UsageError("must be >= 0 blocks", where="--cache-blocks")
    if isinstance(w, StreamedWorkload) and w.summary is not None:
        return _from_summary(w, w.summary)
    t = w.table
    arrival = t["arrival_s"]
    span = float(arrival[-1] - arrival[0]) if t.height else 0.0
    rates = arrival_rates(arrival, span)
    in_counts, out_counts = Counts.of(t["input_tokens"]), Counts.of(t["output_tokens"])
    reuse = None
    if w.has_hashes and w.block_tokens:
        reuse = prefix_reuse(t, w.block_tokens, cache_blocks)
    return _assemble(
        w, t.height, span, rates, interarrival_cv(arrival), in_counts, out_counts,
        by_tenant=_breakdown(t, "tenant", span) if w.has("tenant") else None,
        by_model=_breakdown(t, "model", span) if w.has("model") else None,
        reuse=reuse, workflows=workflow_stats(t) if w.has("workflow_id") else None,
    )


def _from_summary(w: Workload, s: StreamSummary) -> Characterization:
    rates = rates_from_counts(s.counts_1s, s.requests, s.span_s)
    groups: dict[str, list[dict[str, Any]] | None] = {}
    for col in ("tenant", "model"):
        g = s.groups.get(col)
        groups[col] = None if g is None or not w.has(col) else breakdown_rows(
            g.select(
                col, "requests",
                (pl.col("input_sum") / pl.col("requests")).alias("input_tokens_mean"),
                (pl.col("output_sum") / pl.col("requests")).alias("output_tokens_mean"),
                (pl.col("input_sum") + pl.col("output_sum")).alias("tokens"),
            ), col, s.requests, s.span_s)
    return _assemble(w, s.requests, s.span_s, rates, s.interarrival_cv, s.input_counts,
                     s.output_counts, by_tenant=groups["tenant"], by_model=groups["model"],
                     reuse=None, workflows=None)


def _assemble(
    w: Workload, n: int, span: float, rates: RateStats, cv: float | None, in_counts: Counts,
    out_counts: Counts, *, by_tenant: list[dict[str, Any]] | None,
    by_model: list[dict[str, Any]] | None, reuse: PrefixReuse | None,
    workflows: dict[str, Any] | None,
) -> Characterization:
    inp, out = token_stats_of(in_counts), token_stats_of(out_counts)
    return Characterization(
        source=w.source, format=w.format, requests=n, span_s=span,
        rate_mean_per_s=rates.mean_per_s, rate_peak_per_s=rates.peak_per_s,
        burst_factor=rates.burst_factor, interarrival_cv=cv,
        input_tokens=inp, output_tokens=out,
        io_ratio=inp.mean / out.mean if out.mean > 0 else None,
        context_histogram=log2_histogram(in_counts),
        output_histogram=log2_histogram(out_counts),
        output_tail=tail_fit(out_counts), start_epoch_s=w.start_epoch_s,
        profile=daily_profile(rates.counts_1s, span, w.start_epoch_s),
        by_tenant=by_tenant, by_model=by_model, prefix_reuse=reuse, workflows=workflows,
        skipped_rows=w.skipped.count,
        rate_per_min=[int(c) for c in rates.counts_1min],
    )
