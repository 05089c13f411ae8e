"""Simulated figures under vLLM V1's Prometheus metric names, in the text exposition format.

Names and bucket bounds follow `vllm/v1/metrics/loggers.py` (`PrometheusStatLogger`), labels
`model_name` and `engine` (here: the replica index), so that simulated and live scrapes can be put
side by side. Gauges (`num_requests_running`, `num_requests_waiting`, `kv_cache_usage_perc`) are
instantaneous in vLLM; here they are each replica's exact time average over the run
(`SimResult.gauges`), which is what a dashboard's average over the same window shows.
`vllm:request_time_per_output_token_seconds` is the per-request TPOT of the benchmark definition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from fleetplan.sim.metrics import SimResult

__all__ = ["exposition"]

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0)
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                   60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


def _fmt(v: float) -> str:
    return repr(float(v)) if np.isfinite(v) else ("+Inf" if v > 0 else "NaN")


def _histogram(lines: list[str], name: str, help_: str, labels: list[str],
               values: list[np.ndarray], buckets: tuple[float, ...]) -> None:
    lines += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
    edges = np.asarray(buckets)
    for lab, raw in zip(labels, values, strict=True):
        v = raw[np.isfinite(raw)]
        cum = np.searchsorted(np.sort(v), edges, side="right")
        for le, c in zip(buckets, cum, strict=True):
            lines.append(f'{name}_bucket{{{lab},le="{le}"}} {int(c)}')
        lines.append(f'{name}_bucket{{{lab},le="+Inf"}} {v.size}')
        lines.append(f"{name}_sum{{{lab}}} {_fmt(float(v.sum()))}")
        lines.append(f"{name}_count{{{lab}}} {v.size}")


def _scalar(lines: list[str], name: str, kind: str, help_: str, labels: list[str],
            values: list[float]) -> None:
    # a counter's family is named with its `_total` suffix, as prometheus_client writes it
    # (`generate_latest`, the text format vLLM's /metrics serves)
    fam = f"{name}_total" if kind == "counter" else name
    lines += [f"# HELP {fam} {help_}", f"# TYPE {fam} {kind}"]
    for lab, v in zip(labels, values, strict=True):
        lines.append(f"{fam}{{{lab}}} {_fmt(v)}")


def exposition(res: SimResult, model_name: str) -> str:
    """Prometheus text format, one series per replica."""
    reqs = res.requests
    n = res.replicas
    labels = [f'engine="{i}",model_name="{model_name}"' for i in range(n)]
    per = [reqs.filter(pl.col("replica") == i) for i in range(n)]
    lines: list[str] = []

    def col(frames: list[pl.DataFrame], c: str) -> list[np.ndarray]:
        return [f[c].to_numpy().astype(np.float64) for f in frames]

    g = list(res.gauges) or [(0.0, 0.0, 0.0)] * n  # time averages per replica
    _scalar(lines, "vllm:num_requests_running", "gauge",
            "Number of requests in model execution batches (time average over the run).",
            labels, [x[0] for x in g])
    _scalar(lines, "vllm:num_requests_waiting", "gauge",
            "Number of requests waiting to be processed (time average over the run).", labels,
            [x[1] for x in g])
    _scalar(lines, "vllm:kv_cache_usage_perc", "gauge",
            "KV-cache usage. 1 means 100 percent usage (time average over the run).", labels,
            [x[2] for x in g])
    pre = [float(f["preemptions"].sum()) for f in per]
    _scalar(lines, "vllm:num_preemptions", "counter", "Cumulative number of preemption from the "
            "engine.", labels, pre)
    _scalar(lines, "vllm:prompt_tokens", "counter", "Number of prefill tokens processed.", labels,
            [float(f["input_tokens"].sum()) for f in per])
    _scalar(lines, "vllm:generation_tokens", "counter", "Number of generation tokens processed.",
            labels, [float(f["output_tokens"].sum()) for f in per])
    _scalar(lines, "vllm:request_success", "counter", "Count of successfully processed requests.",
            [lab + ',finished_reason="length"' for lab in labels], [float(f.height) for f in per])
    _scalar(lines, "vllm:prefix_cache_hits", "counter", "Prefix cache hits, in terms of number of "
            "cached tokens (fleet total on engine 0).", labels[:1], [float(res.prefix_hit_tokens)])
    _scalar(lines, "vllm:prefix_cache_queries", "counter", "Prefix cache queries, in terms of "
            "number of queried tokens (fleet total on engine 0).", labels[:1],
            [float(res.prefix_query_tokens)])
    _histogram(lines, "vllm:time_to_first_token_seconds", "Histogram of time to first token in "
               "seconds.", labels, col(per, "ttft_s"), TTFT_BUCKETS)
    _histogram(lines, "vllm:request_time_per_output_token_seconds", "Histogram of "
               "time_per_output_token_seconds per request.", labels, col(per, "tpot_s"),
               TPOT_BUCKETS)
    _histogram(lines, "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in "
               "seconds.", labels, col(per, "e2e_s"), LATENCY_BUCKETS)
    _histogram(lines, "vllm:request_queue_time_seconds", "Histogram of time spent in WAITING "
               "phase for request.", labels, col(per, "queue_s"), LATENCY_BUCKETS)
    return "\n".join(lines) + "\n"
