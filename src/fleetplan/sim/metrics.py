"""What a simulation reports: per-request records, the summary, time series, and the same
figures under vLLM's Prometheus metric names.

Definitions follow the serving benchmarks (ENGINES.md "vllm bench serve"): TTFT = first token -
arrival; E2E = finish - arrival; TPOT per request = (E2E - TTFT) / (output_len - 1), only for
output_len > 1; statistics are over requests; throughput divides by the duration from the first
arrival to the last completion. Queue time = first scheduled - arrival (vLLM's
`request_queue_time_seconds`). The prefix-cache hit rate is hit tokens / queried tokens, as
vLLM's `prefix_cache_hits` / `prefix_cache_queries` counters give it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from fleetplan.errors import UsageError
from fleetplan.sim.request import Request

if TYPE_CHECKING:
    from fleetplan.sim.config import DisaggFleetConfig, FleetConfig
    from fleetplan.sim.replica import Replica

__all__ = ["SLO", "Records", "SimResult", "percentiles"]

QUANTILES = (50, 90, 95, 99)


class Records:
    """Per-request outcomes in preallocated arrays (indexed by request number)."""

    def __init__(self, n: int) -> None:
        self.arrival_s = np.full(n, np.nan)
        self.input_tokens = np.zeros(n, dtype=np.int64)
        self.output_tokens = np.zeros(n, dtype=np.int64)
        self.replica = np.full(n, -1, dtype=np.int32)
        self.first_sched_s = np.full(n, np.nan)
        self.first_token_s = np.full(n, np.nan)
        self.finish_s = np.full(n, np.nan)
        self.preemptions = np.zeros(n, dtype=np.int32)
        self.cached_tokens = np.zeros(n, dtype=np.int64)
        self.finished = 0

    def arrive(self, r: Request) -> None:
        i = r.idx
        self.arrival_s[i] = r.arrival_s
        self.input_tokens[i] = r.prompt
        self.output_tokens[i] = r.output

    def finish(self, r: Request, replica: int, t: float) -> None:
        i = r.idx
        self.replica[i] = replica
        self.first_sched_s[i] = r.first_sched_s
        self.first_token_s[i] = r.first_token_s
        self.finish_s[i] = t
        self.preemptions[i] = r.preemptions
        self.cached_tokens[i] = max(r.cached_tokens, 0)
        self.finished += 1


@dataclass(frozen=True)
class SLO:
    """Targets a request must all meet to count as attained (None: not checked)."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None

    def __post_init__(self) -> None:
        for flag, v in (("--slo-ttft", self.ttft_s), ("--slo-tpot", self.tpot_s),
                        ("--slo-e2e", self.e2e_s)):
            if v is not None and not (math.isfinite(v) and v > 0):
                raise UsageError(f"a target must be a finite number of seconds > 0, got {v}",
                                 where=flag)


def percentiles(x: np.ndarray) -> dict[str, float]:
    """p50/p90/p95/p99 and mean of the finite values (NaN when there are none)."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {**{f"p{q}": math.nan for q in QUANTILES}, "mean": math.nan}
    ps = np.percentile(x, QUANTILES)
    out = {f"p{q}": float(v) for q, v in zip(QUANTILES, ps, strict=True)}
    out["mean"] = float(x.mean())
    return out


def _stat(x: np.ndarray, f: Callable[[np.ndarray], Any]) -> float:
    return float(f(x)) if x.size else 0.0


@dataclass(frozen=True)
class SimResult:
    """Outcome of `simulate`: `.requests` (one row per request), `.timeseries` (sampled per
    replica at step ends, at least `sample_interval_s` apart: for plots, not for means, as
    samples at events bunch at arrivals), `.gauges` (exact time averages), fleet counters."""

    requests: pl.DataFrame
    timeseries: pl.DataFrame
    gpus: int
    replicas: int
    preemptions: int
    prefix_query_tokens: int
    prefix_hit_tokens: int
    steps: int
    wall_s: float
    rejected: int = 0  # trace requests refused as too long (not in `requests`)
    waiting_peak: int = 0  # most requests waiting at once on one replica (exact, not sampled)
    # per replica: time averages of (running, waiting, KV usage) over the run (Replica.gauge_means)
    gauges: tuple[tuple[float, float, float], ...] = ()
    kv_usage_peak: float = 0.0  # highest KV usage of any replica (exact, not sampled)
    #: fixed time per request before its first token added to `ttft_s` and `e2e_s`
    #: (`with_request_overhead`); 0: engine time only
    request_overhead_s: float = 0.0

    @classmethod
    def build(
        cls, fleet: FleetConfig | DisaggFleetConfig, reps: list[Replica], rec: Records, *,
        wall_s: float, rejected: int = 0,
    ) -> SimResult:
        end = max((r.int_t for r in reps), default=0.0)  # the run's last event
        out = rec.output_tokens.astype(np.float64)
        ttft = rec.first_token_s - rec.arrival_s
        e2e = rec.finish_s - rec.arrival_s
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(out > 1, (e2e - ttft) / (out - 1), np.nan)
        df = pl.DataFrame({
            "request_id": np.arange(len(out), dtype=np.int64),
            "replica": rec.replica,
            "arrival_s": rec.arrival_s,
            "queue_s": rec.first_sched_s - rec.arrival_s,
            "ttft_s": ttft,
            "tpot_s": tpot,
            "e2e_s": e2e,
            "finish_s": rec.finish_s,
            "input_tokens": rec.input_tokens,
            "output_tokens": rec.output_tokens,
            "cached_tokens": rec.cached_tokens,
            "preemptions": rec.preemptions,
        }, nan_to_null=False)
        ts = pl.concat([
            pl.DataFrame({
                "replica": np.full(len(r.ts_t), r.index, dtype=np.int32),
                "t_s": np.array(r.ts_t, dtype=np.float64),
                "kv_cache_usage": np.array(r.ts_kv, dtype=np.float64),
                "running": np.array(r.ts_running, dtype=np.int64),
                "waiting": np.array(r.ts_waiting, dtype=np.int64),
            })
            for r in reps
        ])
        return cls(
            requests=df,
            timeseries=ts,
            gpus=fleet.gpus,
            replicas=len(reps),
            preemptions=sum(r.preemptions for r in reps),
            prefix_query_tokens=sum(r.kv.query_tokens for r in reps),
            prefix_hit_tokens=sum(r.kv.hit_tokens for r in reps),
            steps=sum(r.steps for r in reps),
            wall_s=wall_s,
            rejected=rejected,
            waiting_peak=max((r.waiting_peak for r in reps), default=0),
            gauges=tuple(r.gauge_means(end) for r in reps),
            kv_usage_peak=max((r.kv_peak / r.kv.num_blocks for r in reps if r.kv.num_blocks),
                              default=0.0),
        )

    def with_request_overhead(self, overhead_s: float) -> SimResult:
        """This result with `overhead_s` of fixed time per request before its first token
        (`Efficiency.request_overhead_s`: HTTP, tokenisation, admission, streaming the first
        token; the calibration fits it into every measured TTFT) added to every TTFT and E2E;
        TPOT, queueing and finish times unchanged."""
        if overhead_s < 0:
            raise ValueError(f"overhead_s must be >= 0, got {overhead_s}")
        df = self.requests.with_columns(pl.col("ttft_s") + overhead_s,
                                        pl.col("e2e_s") + overhead_s)
        return replace(self, requests=df,
                       request_overhead_s=self.request_overhead_s + overhead_s)

    # ---- figures -----------------------------------------------------------------------------
    def _col(self, name: str) -> np.ndarray:
        return self.requests[name].to_numpy()

    @property
    def duration_s(self) -> float:
        fin = self._col("finish_s")
        if not np.isfinite(fin).any():
            return 0.0
        return float(np.nanmax(fin) - np.nanmin(self._col("arrival_s")))

    @property
    def mean_ttft_s(self) -> float:
        return percentiles(self._col("ttft_s"))["mean"]

    @property
    def mean_tpot_s(self) -> float:
        return percentiles(self._col("tpot_s"))["mean"]

    @property
    def prefix_cache_hit_rate(self) -> float:
        q = self.prefix_query_tokens
        return self.prefix_hit_tokens / q if q else 0.0

    def slo_attainment(self, slo: SLO) -> float:
        """Fraction of the requests sent that met every target given: a request refused as
        too long (`rejected`) met none; a TPOT target ignores 1-token outputs, which have no
        TPOT."""
        ok = np.isfinite(self._col("e2e_s"))
        if slo.ttft_s is not None:
            ok &= self._col("ttft_s") <= slo.ttft_s
        if slo.tpot_s is not None:
            tpot = self._col("tpot_s")
            ok &= ~(tpot > slo.tpot_s)
        if slo.e2e_s is not None:
            ok &= self._col("e2e_s") <= slo.e2e_s
        sent = ok.size + self.rejected
        return float(ok.sum()) / sent if sent else 0.0

    def summary(self, slo: SLO | None = None) -> dict[str, Any]:
        """The JSON summary: latency percentiles, throughput, SLO attainment, cache figures."""
        done = np.isfinite(self._col("finish_s"))
        dur = self.duration_s
        n_in = int(self._col("input_tokens")[done].sum())
        n_out = int(self._col("output_tokens")[done].sum())

        def rate(v: float) -> float:
            return float(v) / dur if dur > 0 else 0.0

        ts = self.timeseries
        out: dict[str, Any] = {
            "requests_completed": int(done.sum()),
            "requests_rejected": self.rejected,
            "duration_s": dur,
            "ttft_s": percentiles(self._col("ttft_s")),
            "tpot_s": percentiles(self._col("tpot_s")),
            "e2e_s": percentiles(self._col("e2e_s")),
            "queue_s": percentiles(self._col("queue_s")),
            "throughput_requests_per_s": rate(done.sum()),
            "throughput_input_tokens_per_s": rate(n_in),
            "throughput_output_tokens_per_s": rate(n_out),
            "throughput_output_tokens_per_s_per_gpu": rate(n_out) / self.gpus,
            "throughput_input_tokens_per_s_per_gpu": rate(n_in) / self.gpus,
            "prefix_cache_hit_rate": self.prefix_cache_hit_rate,
            "prefix_cached_tokens": int(self._col("cached_tokens").sum()),
            "preemptions": self.preemptions,
            "replicas": self.replicas,
            "gpus": self.gpus,
            "kv_cache_usage_mean": (float(np.mean([g[2] for g in self.gauges]))
                                    if self.gauges else 0.0),  # time average, over replicas
            "kv_cache_usage_max": max(self.kv_usage_peak,
                                      _stat(ts["kv_cache_usage"].to_numpy(), np.max)),
            "waiting_max": self.waiting_peak,
            "request_overhead_s": self.request_overhead_s,
            "sim_steps": self.steps,
            "sim_wall_s": self.wall_s,
        }
        if slo is not None:
            out["slo"] = {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s, "e2e_s": slo.e2e_s}
            out["slo_attainment"] = self.slo_attainment(slo)
        return out

    def prometheus(self, model_name: str = "simulated") -> str:
        """The summary as vLLM `/metrics` text (see `fleetplan.sim.prometheus`)."""
        from fleetplan.sim.prometheus import exposition

        return exposition(self, model_name)
