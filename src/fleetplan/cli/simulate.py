"""`fleetplan simulate`: run the request-level fleet simulator from the command line.

A thin layer over `fleetplan.sim`: flags become a `FleetConfig` and a load, the engine's own
defaults fill what is not given, and the summary is printed as a table or JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fleetplan.cli._app import (
    ENGINES,
    app,
    check_writable,
    console,
    err_console,
    write_text,
    writing,
)
from fleetplan.cli.workload import FormatOpt, MapOpt, parse_mapping, reported_warnings
from fleetplan.errors import UsageError
from fleetplan.sim import (
    SLO,
    ClosedLoop,
    DisaggFleetConfig,
    FleetConfig,
    Load,
    PoissonLoad,
    ReplicaConfig,
    TraceLoad,
    simulate,
)
from fleetplan.sim.io import check_output, write_result

Opt = typer.Option

#: Most requests one run may send (a guard against typos: ~0.3 GiB and ~40 s per million).
MAX_REQUESTS = 10_000_000
#: Requests an open loop (--rate) sends when --requests is not given.
DEFAULT_RATE_REQUESTS = 1000


def _load(workload: str | None, rate_scale: float | None, concurrency: int | None,
          rate: float | None, isl: int | None, osl: int | None, requests: int | None,
          burstiness: float | None, think_s: float | None = None,
          range_ratio: float | None = None, fmt: str | None = None,
          mapping: str | None = None) -> Load:
    """The load the flags describe; a flag given where it would be ignored is refused (each
    optional flag is None unless the user gave it)."""
    chosen = [x for x in (workload, concurrency, rate) if x is not None]
    if len(chosen) != 1:
        raise UsageError("give exactly one of --workload, --concurrency or --rate",
                         where="load")
    if concurrency is None and think_s is not None:
        raise UsageError("--think applies to a closed loop (--concurrency)", where="--think")
    if concurrency is None and range_ratio is not None:
        raise UsageError("--range-ratio applies to a closed loop (--concurrency)",
                         where="--range-ratio")
    if concurrency is not None and burstiness is not None:
        raise UsageError("--burstiness shapes --rate arrivals; in a closed loop (--concurrency) "
                         "each client sends its next request when the last one ends",
                         where="--burstiness")
    if workload is None and (fmt or mapping):
        raise UsageError("--format and --map describe a --workload trace file; none given",
                         where="--format/--map")
    if requests is not None and not 1 <= requests <= MAX_REQUESTS:
        raise UsageError(f"must be in [1, {MAX_REQUESTS:,}], got {requests}", where="--requests")
    if workload is not None:
        from fleetplan.workload import load

        for flag, v in (("--isl", isl), ("--osl", osl)):
            if v is not None:
                raise UsageError(f"{flag} applies to --concurrency or --rate; a --workload "
                                 "trace brings its own lengths", where=flag)
        if burstiness is not None:
            raise UsageError("--burstiness shapes --rate arrivals; a --workload trace brings "
                             "its own (--rate-scale changes its rate)", where="--burstiness")
        with reported_warnings():
            w = load(workload, format=fmt, mapping=parse_mapping(mapping))
        trace = TraceLoad.from_workload(w, rate_scale=1.0 if rate_scale is None else rate_scale)
        if requests is not None:  # the first K requests of the trace, in arrival order
            trace = replace(trace, table=trace.table.sort("arrival_s").head(requests))
        return trace
    if rate_scale is not None:
        raise UsageError("--rate-scale multiplies a --workload trace's rate; with --rate give "
                         "the rate itself", where="--rate-scale")
    if isl is None or osl is None:
        raise UsageError("--isl and --osl are needed with --concurrency or --rate", where="load")
    if concurrency is not None:
        return ClosedLoop(concurrency, isl, osl, requests, think_s or 0.0,
                          1.0 if range_ratio is None else range_ratio)
    assert rate is not None
    return PoissonLoad(rate, DEFAULT_RATE_REQUESTS if requests is None else requests, isl, osl,
                       1.0 if burstiness is None else burstiness)


def _pool(spec: str, flag: str) -> tuple[int, int]:
    """'N:TP' -> (workers, tensor parallelism)."""
    try:
        n, tp = (int(x) for x in spec.split(":"))
    except ValueError:
        raise UsageError(f"expected WORKERS:TP such as 2:4, got '{spec}'", where=flag) from None
    return n, tp


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


#: The summary's figures as the human table shows them: (key, label, format).
_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("requests_completed", "requests completed", "{:,}"),
    ("requests_rejected", "requests refused (longer than the context or KV pool)", "{:,}"),
    ("duration_s", "duration, s", "{:,.1f}"),
    ("throughput_requests_per_s", "throughput, requests/s", "{:,.2f}"),
    ("throughput_input_tokens_per_s", "throughput, input tokens/s", "{:,.0f}"),
    ("throughput_output_tokens_per_s", "throughput, output tokens/s", "{:,.0f}"),
    ("throughput_output_tokens_per_s_per_gpu", "throughput, output tokens/s per GPU", "{:,.0f}"),
    ("prefix_cache_hit_rate", "prefix-cache hit rate", "{:.1%}"),
    ("preemptions", "preemptions", "{:,}"),
    ("kv_cache_usage_mean", "KV cache usage, time average", "{:.1%}"),
    ("kv_cache_usage_max", "KV cache usage, peak", "{:.1%}"),
    ("waiting_max", "requests waiting, peak (one replica)", "{:,}"),
    ("request_overhead_s", "request overhead in TTFT and E2E (calibrated), ms", "{:.1f}"),
    ("slo_attainment", "SLO attainment (requests within every target)", "{:.1%}"),
)


def _print_table(s: dict[str, Any]) -> None:
    t = Table("metric", "p50", "p90", "p95", "p99", "mean", title="latency (ms)")
    for key in ("ttft_s", "tpot_s", "e2e_s", "queue_s"):
        v = s[key]
        t.add_row(key[:-2], *(f"{1e3 * v[q]:.1f}" for q in ("p50", "p90", "p95", "p99", "mean")))
    console.print(t)
    u = Table("figure", "value")
    for key, label, fmt in _FIGURES:
        if key in s:
            v = s[key] * 1e3 if key == "request_overhead_s" else s[key]
            u.add_row(label, fmt.format(v))
    console.print(u)


def _with_batch_wait(fleet: FleetConfig | DisaggFleetConfig, iters: int,
                     ratio: float) -> FleetConfig:
    """`fleet` with TensorRT-LLM batch waiting on every replica (aggregated only: a
    disaggregated prefill worker runs no generation requests, so it never waits)."""
    if isinstance(fleet, DisaggFleetConfig):
        raise UsageError("batch waiting holds prompts while generation runs on the same "
                         "replica: it applies to aggregated replicas only",
                         where="--batch-wait-timeout-iters")
    if iters < 0:
        raise UsageError(f"must be >= 0, got {iters}", where="--batch-wait-timeout-iters")
    if not 0.0 <= ratio <= 1.0:
        raise UsageError(f"must be in [0, 1], got {ratio}", where="--batch-wait-max-tokens-ratio")
    if iters == 0:
        raise UsageError("give the timeout too (--batch-wait-timeout-iters > 0): TensorRT-LLM "
                         "waits until one of the two ends it", where="--batch-wait-timeout-iters")
    reps = tuple(replace(r, batch_wait_iters=iters,
                         batch_wait_tokens=int(ratio * r.max_num_batched_tokens))
                 for r in fleet.replicas)
    return replace(fleet, replicas=reps)


def _with_recv_interval(fleet: FleetConfig | DisaggFleetConfig,
                        every: int) -> FleetConfig | DisaggFleetConfig:
    """`fleet` with SGLang's scheduler receive interval on every replica (both pools of a
    disaggregated fleet)."""
    def one(r: ReplicaConfig) -> ReplicaConfig:
        return replace(r, recv_interval=every)

    if isinstance(fleet, DisaggFleetConfig):
        return replace(fleet, prefill=tuple(map(one, fleet.prefill)),
                       decode=tuple(map(one, fleet.decode)))
    return replace(fleet, replicas=tuple(map(one, fleet.replicas)))


@app.command("simulate")
def simulate_cmd(
    model: Annotated[str, Opt("--model", help="catalog name, alias, Hugging Face id, or a "
                              "config.json (the file or its folder)")],
    gpu: Annotated[str, Opt("--gpu", help="GPU name from the catalog")],
    replicas: Annotated[int, Opt("--replicas", help="number of replicas")] = 1,
    tp: Annotated[int, Opt("--tp", help="tensor parallelism per replica")] = 1,
    pp: Annotated[int, Opt("--pp", help="pipeline parallelism per replica")] = 1,
    precision: Annotated[str, Opt("--precision", help="weight precision")] = "bf16",
    engine: Annotated[str, Opt("--engine", help=f"serving engine: {', '.join(ENGINES)}")] = "vllm",
    max_num_seqs: Annotated[int | None, Opt(
        "--max-num-seqs", help="most requests a replica runs at once (default: the engine's "
        "default on this GPU, e.g. vLLM 256 under 70 GiB or on an A100, SGLang's from its KV "
        "pool; at most --max-num-batched-tokens)")] = None,
    max_num_batched_tokens: Annotated[int | None, Opt(
        "--max-num-batched-tokens", help="token budget of one engine step (default: the "
        "engine's default on this GPU)")] = None,
    block_size: Annotated[int | None, Opt(
        "--block-size", help="tokens per KV-cache block (default: the engine's catalog "
        "value)")] = None,
    prefix_caching: Annotated[bool | None, Opt(
        "--prefix-caching/--no-prefix-caching", help="reuse the KV of repeated prompt "
        "prefixes (default: on where the engine's catalog entry supports it)")] = None,
    batch_wait_iters: Annotated[int, Opt(
        "--batch-wait-timeout-iters", help="TensorRT-LLM batch waiting: steps a new prompt may "
        "be held while others decode (0: off)")] = 0,
    batch_wait_ratio: Annotated[float, Opt(
        "--batch-wait-max-tokens-ratio", help="TensorRT-LLM batch waiting: share of the token "
        "budget that ends the wait early (0: none)")] = 0.0,
    recv_interval: Annotated[int, Opt(
        "--scheduler-recv-interval", help="SGLang: decode steps between the scheduler's polls "
        "for new requests (1: every step, the default)")] = 1,
    router: Annotated[str, Opt("--router", help="round-robin | least-outstanding | "
                                                 "prefix-aware")] = "round-robin",
    workload: Annotated[str | None, Opt("--workload", help="trace file or preset")] = None,
    fmt: FormatOpt = None,
    mapping: MapOpt = None,
    rate_scale: Annotated[float | None, Opt("--rate-scale", help="with --workload: multiply "
                                            "the trace's rate (default 1)")] = None,
    concurrency: Annotated[int | None, Opt("--concurrency", help="closed loop clients")] = None,
    rate: Annotated[float | None, Opt("--rate", help="open loop requests/s (gamma)")] = None,
    burstiness: Annotated[float | None, Opt(
        "--burstiness", help="with --rate: gamma shape of the gaps between arrivals (1 = "
        "Poisson, the default; below 1 burstier, above 1 more even)")] = None,
    isl: Annotated[int | None, Opt("--isl", help="input tokens per request")] = None,
    osl: Annotated[int | None, Opt("--osl", help="output tokens per request")] = None,
    requests: Annotated[int | None, Opt(
        "--requests", help="requests to send (default: 4 x --concurrency; "
        f"{DEFAULT_RATE_REQUESTS:,} with --rate; with --workload the whole trace, or its first "
        "N when given)")] = None,
    think: Annotated[float | None, Opt("--think", help="closed loop: mean think time between a "
                                       "response and the client's next request, seconds "
                                       "(exponential, seeded; default 0)")] = None,
    range_ratio: Annotated[float | None, Opt(
        "--range-ratio", help="closed loop: draw each request's ISL and OSL from \\[int(r x L), "
        "L] as benchmark_serving --random-range-ratio r does (default 1: fixed)")] = None,
    slo_ttft: Annotated[float | None, Opt("--slo-ttft", help="TTFT target, seconds")] = None,
    slo_tpot: Annotated[float | None, Opt("--slo-tpot", help="TPOT target, seconds")] = None,
    slo_e2e: Annotated[float | None, Opt("--slo-e2e", help="E2E target, seconds")] = None,
    disagg_prefill: Annotated[str | None, Opt(
        "--disagg-prefill", help="disaggregated: prefill pool as WORKERS:TP")] = None,
    disagg_decode: Annotated[str | None, Opt(
        "--disagg-decode", help="disaggregated: decode pool as WORKERS:TP")] = None,
    kv_transfer_gb_s: Annotated[float | None, Opt(
        "--kv-transfer-gb-s", help="disaggregated: KV transfer GB/s (default: 0.8 x the "
        "catalog interconnect of the slower worker)")] = None,
    seed: Annotated[int, Opt("--seed", help="seed of the run's random draws: --rate arrivals, "
                             "--think times, --range-ratio lengths")] = 0,
    as_json: Annotated[bool, Opt("--json", help="print the summary as JSON only")] = False,
    out: Annotated[Path | None, Opt("--out", help="per-request records (.parquet/.duckdb)")] = None,
    prometheus: Annotated[Path | None, Opt("--prometheus", help="write vLLM /metrics text")] = None,
) -> None:
    """Simulate a fleet serving a trace, a synthetic load or a closed-loop benchmark."""
    check_writable(out, "--out", (".parquet", ".duckdb", ".db"))
    check_writable(prometheus, "--prometheus")
    if out is not None:
        check_output(out)  # an existing file that is no DuckDB database, before simulating
    if seed < 0:
        raise UsageError(f"must be >= 0, got {seed}", where="--seed")
    limits: dict[str, Any] = {
        "max_num_seqs": max_num_seqs, "max_num_batched_tokens": max_num_batched_tokens,
        "block_size": block_size, "prefix_caching": prefix_caching,
    }
    fleet: FleetConfig | DisaggFleetConfig
    disagg: dict[str, Any] | None = None
    if disagg_prefill is not None or disagg_decode is not None:
        if disagg_prefill is None or disagg_decode is None:
            raise UsageError("give both --disagg-prefill and --disagg-decode", where="disagg")
        if replicas != 1 or tp != 1:
            raise UsageError("with disaggregated pools give workers and TP as WORKERS:TP",
                             where="--replicas/--tp")
        (n_p, tp_p), (n_d, tp_d) = (_pool(disagg_prefill, "--disagg-prefill"),
                                    _pool(disagg_decode, "--disagg-decode"))
        if kv_transfer_gb_s is not None and not kv_transfer_gb_s > 0:
            raise UsageError(f"must be > 0, got {kv_transfer_gb_s}", where="--kv-transfer-gb-s")
        fleet = DisaggFleetConfig.build(
            model, gpu, prefill_workers=n_p, prefill_tp=tp_p, decode_workers=n_d,
            decode_tp=tp_d, pp=pp, precision=precision, engine=engine, router=router,
            kv_transfer_bytes_per_s=None if kv_transfer_gb_s is None else kv_transfer_gb_s * 1e9,
            **limits,
        )
        disagg = {"prefill": disagg_prefill, "decode": disagg_decode,
                  "kv_transfer_s_per_prompt_token": fleet.transfer_s_per_token(fleet.prefill[0])}
    elif kv_transfer_gb_s is not None:
        raise UsageError("--kv-transfer-gb-s needs --disagg-prefill/--disagg-decode",
                         where="--kv-transfer-gb-s")
    else:
        fleet = FleetConfig.build(model, gpu, tp=tp, pp=pp, precision=precision, engine=engine,
                                  replicas=replicas, router=router, **limits)
    if batch_wait_iters or batch_wait_ratio:
        fleet = _with_batch_wait(fleet, batch_wait_iters, batch_wait_ratio)
    if recv_interval != 1:  # ReplicaConfig checks it: >= 1, SGLang replicas only
        fleet = _with_recv_interval(fleet, recv_interval)
    load = _load(workload, rate_scale, concurrency, rate, isl, osl, requests, burstiness, think,
                 range_ratio, fmt, mapping)
    # the calibrated time before the first token outside the engine's steps (the replica that
    # makes the first token: a disaggregated fleet's prefill workers)
    first = fleet.prefill[0] if isinstance(fleet, DisaggFleetConfig) else fleet.replicas[0]
    res = simulate(fleet, load, seed=seed).with_request_overhead(first.request_overhead_s)
    has_slo = any(x is not None for x in (slo_ttft, slo_tpot, slo_e2e))
    summary = res.summary(SLO(slo_ttft, slo_tpot, slo_e2e) if has_slo else None)
    summary["config"] = {"model": model, "gpu": gpu, "tp": tp, "pp": pp, "precision": precision,
                         "engine": engine, "router": router,
                         "max_num_seqs": fleet.replicas[0].max_num_seqs,
                         "max_num_batched_tokens": fleet.replicas[0].max_num_batched_tokens,
                         "block_size": fleet.replicas[0].block_size,
                         "kv_blocks": fleet.replicas[0].kv_blocks,
                         "prefix_caching": fleet.replicas[0].prefix_caching,
                         "scheduler": fleet.replicas[0].engine,
                         "batch_wait_timeout_iters": fleet.replicas[0].batch_wait_iters,
                         "batch_wait_max_tokens": fleet.replicas[0].batch_wait_tokens,
                         "scheduler_recv_interval": fleet.replicas[0].recv_interval}
    if disagg is not None:
        summary["config"]["disaggregated"] = disagg
    if out is not None:
        writing(out, "--out", lambda: write_result(res, out))
        err_console.print(f"wrote {len(res.requests):,} request records to {out}", highlight=False)
    if prometheus is not None:
        write_text(prometheus, res.prometheus(model), "--prometheus")
        err_console.print(f"wrote vLLM /metrics text to {prometheus}", highlight=False)
    if as_json:
        print(json.dumps(_clean(summary), indent=2, sort_keys=True))
    else:
        _print_table(summary)
