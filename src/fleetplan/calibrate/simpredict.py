"""Predict measured points by simulating the benchmark itself (`fleetplan.sim`).

Each row is replayed as the closed-loop benchmark it records (docs/FIDELITY.md):

- **deployment**: `features.resolve` (the mapping the analytic path uses: catalog model, GPU,
  precision, engine, TP/PP/EP/attention-DP layout); the step model is the roofline with the
  calibrated `Efficiency` of the row's (GPU, engine, precision) (`efficiency_for`);
- **aggregated rows**: one replica of that deployment under its engine's scheduling policy,
  with the TensorRT-LLM batch waiting and SGLang receive interval the row (or its recipe) gives;
- **disaggregated rows**: `prefill.workers` prefill replicas and `decode.workers` decode
  replicas (`DisaggFleetConfig`, round-robin in each pool, so each decode worker holds about
  ceil(N / D) clients, the split the analytic path uses), KV moved at the default link estimate;
  a row that does not record its prefill workers gets the pool sized to its load at the stored
  utilisation (`benchmark.prefill_pool_load`; `sized_prefill_workers`), and one that does not
  record its decode workers as many decode workers as its clients need for their KV (each at
  most the sequences its KV pools hold, `closedloop.kv_capacity`), as the analytic path;
  As in the analytic path (`runner.predict_stored`) the stored disaggregated-mode log factors
  multiply the efficiencies and the stored disaggregated decode speed-up (unrecorded MTP
  speculative decoding) divides the decode workers' step times;
- **load**: `ClosedLoop(N, ISL, OSL)` with N = `silicon_concurrency`, each request's lengths
  drawn from [int(r x L), L] where the row's benchmark client drew them (`range_ratio` r, a
  recipe setting; seeded); every client starts at t = 0, so the first N requests are the
  start-up wave;
- **request count and wave weight**: the stored fit gives the start-up wave a weight `w` per
  engine (the YAML's `benchmark.wave_weight`; the mean over engines where a row's engine has
  none, 0.15 without any). The simulation runs `ceil(N / w)` requests (N / w requests make the
  wave 1/(1/w) = w of them), at least 2N (one steady round after the wave), at most
  `max(2N, max_requests)`. The mean TTFT/TPOT are then weighted so the wave weighs exactly `w`:
  mean = w x mean(wave) + (1 - w) x mean(the rest), which equals the plain mean over requests
  when the count was not capped;
- **decode layout**: a disaggregated decode pool whose KV TP replicates (MLA, or TP above the
  KV heads) runs its attention-data-parallel reading where that decodes faster at its batch
  (`closedloop.attention_dp_variant`: the data does not record attention DP; as the analytic
  path);
- **TTFT overhead**: the calibrated fixed request overhead before the first token
  (`Efficiency.request_overhead_s` of the row's calibration, plus the stored
  `benchmark.disagg_ttft_overhead_s` for disaggregated rows, fitted with the analytic model) is
  added to the mean TTFT;
- **limits the benchmark configs set themselves** (as the analytic path assumes; the engine
  catalog defaults otherwise): `max_num_seqs` is raised to the clients per instance; the token
  budget per step is raised to 2 x the clients per rank with chunked prefill (decodes never
  take the whole budget) and to clients per rank + ISL without it (TensorRT-LLM: one whole
  prompt fits beside every decode; with the default 8192 an 8192-token prompt would never be
  admitted while anything decodes, and the measured runs show it was);
- **attention data parallelism** (`attention_dp` ranks in one engine instance): one simulated
  replica whose token budget, `max_num_seqs` and KV pool are the per-rank ones times the ranks
  (the step model already splits tokens and sequences over the ranks); the ranks' pools are
  pooled, so no rank is imbalanced.

A row the simulator cannot run (the model does not fit the replica's memory, a request larger
than the KV pool, a layout `resolve` refuses, ...) gets `ttft_s = tpot_s = None` and a `reason`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from fleetplan.calibrate.closedloop import (
    agg_deployment,
    attention_dp_variant,
    batch_wait,
    dp_if_unsplit,
    held_context,
    kv_held,
    recv_interval,
)
from fleetplan.calibrate.features import Resolved, resolve
from fleetplan.calibrate.points import ServingPoint
from fleetplan.calibrate.runner import BenchmarkParams, stored_benchmark_params
from fleetplan.errors import FleetplanError
from fleetplan.perf import Deployment, Efficiency, RooflineStepModel, StepBatch, StepTimeModel
from fleetplan.perf.calibration import efficiency_for, model_class_of
from fleetplan.sim import ClosedLoop, DisaggFleetConfig, FleetConfig, ReplicaConfig, simulate

__all__ = [
    "DEFAULT_WAVE_WEIGHT",
    "MAX_REQUESTS",
    "SimPrediction",
    "benchmark_requests",
    "predict_point",
    "predict_points",
    "prefill_capacity_tokens_s",
    "sim_fleet",
    "sized_prefill_workers",
    "wave_weight_for",
]

#: Start-up wave weight when the stored calibration has none (the analytic fit's start value).
DEFAULT_WAVE_WEIGHT = 0.15
#: Default cap on simulated requests per row (the wave weighting keeps `w` exact when capped).
MAX_REQUESTS = 4000
#: Time-series spacing: the predictions use none of the series, so sample almost never.
_SAMPLE_S = 1e9

#: Most clients one row is simulated with (the bundled rows run up to 16,130): the simulator
#: holds every in-flight request, so a typo such as 1e9 clients would exhaust memory.
MAX_SIM_CLIENTS = 100_000


@dataclass(frozen=True, slots=True)
class SimPrediction:
    """Mean TTFT/TPOT in seconds of one simulated row (None with a `reason` when it cannot be
    simulated), the requests simulated, and the simulator's wall time."""

    ttft_s: float | None
    tpot_s: float | None
    wall_s: float
    requests: int = 0
    reason: str | None = None


class _Scaled:
    """A step-time model whose times are divided by `speedup` (disaggregated decode workers:
    the stored speed-up stands for the speculative decoding the data does not record)."""

    def __init__(self, model: StepTimeModel, speedup: float) -> None:
        self.model = model
        self.inv = 1.0 / speedup

    def step_time_s(self, batch: StepBatch) -> float:
        return self.model.step_time_s(batch) * self.inv

    def decode_run_time_s(self, decode_seqs: int, decode_ctx_tokens: int, n_steps: int) -> float:
        return self.model.decode_run_time_s(decode_seqs, decode_ctx_tokens, n_steps) * self.inv


def wave_weight_for(engine: str, bench: BenchmarkParams) -> float:
    """The stored start-up wave weight of `engine` (mean over engines, else the default)."""
    if engine in bench.waves:
        return bench.waves[engine]
    if bench.waves:
        return float(np.mean(list(bench.waves.values())))
    return DEFAULT_WAVE_WEIGHT


def benchmark_requests(concurrency: int, wave_weight: float,
                       max_requests: int = MAX_REQUESTS) -> int:
    """Requests to simulate: ceil(N / w), at least 2N, at most max(2N, `max_requests`)."""
    w = min(max(wave_weight, 1e-3), 1.0)
    want = math.ceil(concurrency / w)
    return max(2 * concurrency, min(want, max_requests))


def row_efficiency(p: ServingPoint, r: Resolved) -> Efficiency:
    """The calibrated efficiency a row is simulated with: its group's, with its model's and its
    engine version's factors, in its serving mode (`efficiency_for`)."""
    return efficiency_for(*r.key, model_class_of(r.model), r.model,
                          engine_version=p.backend_version, disagg=p.mode == "disagg")


def _replica(dep: Deployment, clients: int, isl: int,
             speedup: float = 1.0, max_num_tokens: int = 0) -> ReplicaConfig:
    """One replica of `dep` for `clients` clients (module docstring: the limits the benchmark
    configs set, attention-DP ranks each with their own budget and KV pool); `max_num_tokens`
    the row's recorded token budget (0: the engine's default)."""
    dp = dep.attention_dp
    per_rank = math.ceil(clients / dp)
    base = ReplicaConfig.from_deployment(dep, max_num_batched_tokens=max_num_tokens or None)
    # Chunked prefill: decodes never take the whole budget; without it: one whole prompt
    # fits beside every decode.
    extra = per_rank if base.chunked_prefill else isl
    budget = max(base.max_num_batched_tokens, per_rank + extra)
    return replace(
        base,
        step_model=base.step_model if speedup == 1.0 else _Scaled(base.step_model, speedup),
        kv_blocks=base.kv_blocks * dp,
        max_num_seqs=max(base.max_num_seqs * dp, clients),
        max_num_batched_tokens=budget * dp,
    )


def sim_fleet(p: ServingPoint, r: Resolved,
              bench: BenchmarkParams | None = None) -> FleetConfig | DisaggFleetConfig:
    """The simulated fleet of a resolved row (module docstring); raises `FleetplanError` when
    the simulator cannot build it."""
    bench = bench or stored_benchmark_params(model_class_of(r.model))
    eff = row_efficiency(p, r)
    if p.mode == "agg":
        assert r.agg is not None
        n_rep = p.agg.workers if p.agg is not None else 1  # identical instances (points.py)
        per = math.ceil(p.concurrency / n_rep)
        dep = agg_deployment(r.agg).with_efficiency(eff)
        rep = _replica(dep, per, p.isl, max_num_tokens=p.max_num_tokens)
        iters, tokens = batch_wait(p, r, dep)
        if iters:  # TensorRT-LLM batch waiting, as the analytic path (`closedloop.batch_wait`)
            rep = replace(rep, batch_wait_iters=int(iters),
                          batch_wait_tokens=int(tokens) if math.isfinite(tokens) else 0)
        recv = recv_interval(p, dep)
        if recv:  # SGLang's receive interval, as the analytic path (`closedloop.recv_interval`)
            rep = replace(rep, recv_interval=recv)
        return FleetConfig.homogeneous(rep, n_rep)
    assert r.prefill is not None and r.decode is not None
    assert p.prefill is not None and p.decode is not None
    eng = r.engine.name
    ctx = p.mean_isl + p.mean_osl // 2
    per_decode = math.ceil(p.concurrency / p.decode.workers)

    def held(dep: Deployment) -> int:
        """Clients per decode worker: where the row does not record its decode workers, at
        most what one worker's KV pools hold (`closedloop`), else the recorded split."""
        return per_decode if p.decode_workers_recorded else kv_held(
            dep, per_decode, held_context(dep, p.mean_isl, p.mean_osl))

    def t_step(dep: Deployment) -> float:
        b = held(dep)
        return RooflineStepModel(dep).step_time_s(StepBatch(decode_seqs=b,
                                                            decode_ctx_tokens=b * ctx))

    ddep = dp_if_unsplit(r.decode).with_efficiency(eff)
    alt = attention_dp_variant(ddep)
    t_dec = t_step(ddep)
    if alt is not None:  # the faster reading of the decode layout, as the analytic path
        t_alt = t_step(alt)
        if t_alt < t_dec:
            ddep, t_dec = alt, t_alt
    n_dec = p.decode.workers if p.decode_workers_recorded else math.ceil(
        p.concurrency / held(ddep))
    per_decode = math.ceil(p.concurrency / n_dec)
    speedup = bench.speedups.get(eng, 1.0)
    pdep = dp_if_unsplit(r.prefill).with_efficiency(eff)
    n_pre = p.prefill.workers
    if not p.prefill_workers_recorded and bench.pool_load > 0:
        n_pre = sized_prefill_workers(p, RooflineStepModel(pdep).prefill_time_s(p.mean_isl),
                                      t_dec / speedup, bench.pool_load)
    pre = _replica(pdep, math.ceil(p.concurrency / n_pre), p.isl)
    dec = _replica(ddep, per_decode, p.isl, speedup)
    return DisaggFleetConfig((pre,) * n_pre, (dec,) * n_dec)


def sized_prefill_workers(p: ServingPoint, t_prefill_s: float, tpot_s: float,
                          load: float) -> int:
    """Prefill workers of a disaggregated row that does not record them, read as sized to its
    load as the analytic model reads them (`closedloop` module docstring): the closed loop of
    N clients, each cycling through one prefill (`t_prefill_s`, which gives the first token) and
    OSL - 1 decode steps (`tpot_s`), keeps N t_p / (t_p + (OSL - 1) t_d) workers busy; at
    utilisation `load` that is this many workers (at least 1, at most one per client)."""
    busy = p.concurrency * t_prefill_s / (t_prefill_s + max(p.mean_osl - 1.0, 1.0) * tpot_s)
    return max(1, min(p.concurrency, math.ceil(busy / load)))


def prefill_capacity_tokens_s(p: ServingPoint, r: Resolved,
                              bench: BenchmarkParams | None = None) -> float | None:
    """Prompt tokens per second the row's prefill (the aggregated replica, or the prefill pool)
    computes at most under the calibrated step model: full-budget prefill steps back to back.
    None when the fleet cannot be built. A measured throughput above it means the recorded
    layout cannot have served the run as recorded (the simulator then queues the prompts)."""
    try:
        fleet = sim_fleet(p, r, bench)
    except FleetplanError:
        return None
    reps = fleet.replicas if isinstance(fleet, FleetConfig) else fleet.prefill
    rep = reps[0]
    k = max(1, rep.max_num_batched_tokens // p.mean_isl)
    batch = StepBatch.prefill_chunk(p.mean_isl, 0)
    for _ in range(k - 1):
        batch = batch + StepBatch.prefill_chunk(p.mean_isl, 0)
    return len(reps) * k * p.mean_isl / rep.step_model.step_time_s(batch)


def _weighted(x: np.ndarray, wave: np.ndarray, w: float) -> float:
    ok = np.isfinite(x)
    a, b = x[ok & wave], x[ok & ~wave]
    if a.size == 0 or b.size == 0:
        return float(np.mean(x[ok])) if ok.any() else math.nan
    return float(w * a.mean() + (1.0 - w) * b.mean())


def predict_point(p: ServingPoint, *, bench: BenchmarkParams | None = None,
                  max_requests: int = MAX_REQUESTS,
                  resolved: Resolved | None = None, think_s: float = 0.0) -> SimPrediction:
    """Mean TTFT/TPOT of a row simulated as its benchmark ran (module docstring)."""
    t0 = time.perf_counter()
    if p.concurrency > MAX_SIM_CLIENTS:  # each client is a simulated request at a time
        return SimPrediction(None, None, 0.0, 0, (
            f"{p.concurrency:,} clients: the simulator runs at most {MAX_SIM_CLIENTS:,} per row "
            "(memory); the analytic predictor covers it"))
    try:
        r = resolved or resolve(p)
        bench = bench or stored_benchmark_params(model_class_of(r.model))
        fleet = sim_fleet(p, r, bench)
        w = wave_weight_for(r.engine.name, bench)
        n = benchmark_requests(p.concurrency, w, max_requests)
        res = simulate(fleet, ClosedLoop(p.concurrency, p.isl, p.osl, requests=n,
                                         think_s=think_s, range_ratio=p.range_ratio),
                       sample_interval_s=_SAMPLE_S)
    except FleetplanError as e:
        return SimPrediction(None, None, time.perf_counter() - t0, 0, str(e))
    df = res.requests
    wave = df["arrival_s"].to_numpy() <= 0.0
    ttft = (_weighted(df["ttft_s"].to_numpy(), wave, w)
            + row_efficiency(p, r).request_overhead_s
            + bench.disagg_overhead(r.engine.name, p.mode == "disagg"))
    tpot = _weighted(df["tpot_s"].to_numpy(), wave, w)
    if not (math.isfinite(ttft) and math.isfinite(tpot)):
        return SimPrediction(None, None, time.perf_counter() - t0, n,
                             "the simulation finished no request")
    return SimPrediction(ttft, tpot, time.perf_counter() - t0, n)


def predict_points(points: Sequence[ServingPoint], *, max_requests: int = MAX_REQUESTS,
                   progress: Callable[[int, SimPrediction], None] | None = None,
                   ) -> list[SimPrediction]:
    """`predict_point` of every row, in order; `progress(i, prediction)` after each."""
    out: list[SimPrediction] = []
    for i, p in enumerate(points):
        pred = predict_point(p, max_requests=max_requests)
        out.append(pred)
        if progress is not None:
            progress(i, pred)
    return out
