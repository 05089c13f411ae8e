"""A fast analytic model of a closed-loop benchmark, vectorised over many points.

Benchmark modelled (see docs/FIDELITY.md): N clients, each sending a fixed-ISL/OSL request the
moment its last one finishes; the first wave starts together; TTFT and TPOT are means over all
requests, the start-up wave included; TPOT = (E2E - TTFT) / (OSL - 1).

Per point, from four step shapes of its deployment(s): a decode step of the running batch `B`
at the mean context (`t_d`), the same step with one prompt added (`t_mix`, the mixed step of
chunked prefill: the weights are read once for both), one prompt prefilled alone (`t_p1`), and a
full prefill batch of `k` prompts (`t_pw`, the engine's token budget):

running batch (KV capacity)
  B          = min(C, sequences the KV pool holds at the context each running request holds:
               ISL + OSL where the engine reserves to completion, else ISL + OSL/2,
               `held_context`; a TP layout that replicates the KV holds it on every rank)
               (`C` clients per decode instance; aggregated points only, `kv_capacity`)
  the C - B others wait for a slot: slot_wait = (C/B - 1) (TTFT_ss + (OSL - 1) TPOT)
  (Little's law; TTFT + (OSL - 1) TPOT is the E2E of a request by the TPOT definition, and the
  cycle of a client wherever a cycle is used: rho, batch waiting)
aggregated
  x          = t_mix - t_d                        (what one prompt adds to the step it joins)
  TPOT       = t_d + (B - c) x / (OSL - 1)        (a request's decode meets the prefills of
                                                  the B - c running requests outside its
                                                  cohort; the c - 1 others of its cohort were
                                                  prefilled in the step that gave its first
                                                  token, so they are in its TTFT, not its TPOT)
  TTFT_ss    = t_d / 2 + t_d + c x + q rho/(1-rho) x
                                                  (wait for the running step, then a mixed step
                                                  with the cohort of prompts that arrive together:
                                                  requests prefilled in one step finish in one step
                                                  and come back together, c = 1 + f (min(B, k) - 1),
                                                  f in [0, 1] the share of that lockstep that
                                                  survives the clients' drift; rho = B x / cycle)
  SGLang with a scheduler receive interval R > 1 (`recv_interval`: new requests are seen
  every R decode steps and after every prefill): the wait for the running step becomes
  R t_d / 2, and c is at least the prompts arriving in one window, 1 + lam R (lam = B t_d /
  cycle, arrivals per decode step), at most min(B, k)
  TTFT_wave  = t_pw (ceil(B/k) + 1) / 2           (all prompts queue at t = 0; B <= k: one
                                                  step of B prompts, t_p1 + (B-1)/(k-1) (t_pw -
                                                  t_p1))
  TTFT       = w TTFT_wave + (1 - w) TTFT_ss + slot_wait
disaggregated (P prefill workers, D decode workers)
  TPOT = t_d (batch ceil(N/D));  TTFT = t_p1 + queueing + start-up wave on the prefill pool
  (P instances, no decode interference), rho = N t_p1 / (P cycle); no KV limit (the recipes
  size their decode batches themselves). Where the row does not record P (`prefill_num_workers`
  empty: 901 of the bundled disaggregated rows), the pool is read as sized to its load, as the
  recipes size it: P = max(1, N t_p1 / (cycle u)) workers at utilisation u (`pool_load`, a
  fitted benchmark parameter per class), instead of the single worker the empty field reads as.
  Where D is not recorded either, each decode worker runs at most the sequences its KV pools
  hold at the mean context (`kv_capacity`; the clients beyond took more workers), in each
  reading of the layout, instead of all N in one worker.

`w` (weight of the start-up wave, per engine), `f` (cohort fraction, per engine), `q`
(queueing factor, per class) and the disaggregated decode speed-up `s` (per engine: TPOT = t_d /
s; public disaggregated DeepSeek recipes run MTP speculative decoding, which the data does not
record) are benchmark parameters fitted across all points; they are not per-row knobs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace

import numpy as np

from fleetplan.calibrate.features import (
    FEATURES,
    Resolved,
    StepFeatures,
    serving_problems,
    step_features,
)
from fleetplan.calibrate.points import ServingPoint
from fleetplan.perf import Deployment, StepBatch
from fleetplan.perf.efficiency import FRACTION_CAPS
from fleetplan.perf.memory import kv_bytes_for_sequence_per_gpu, memory_budget
from fleetplan.sim.scheduler import RESERVING

__all__ = ["FIT_FIELDS", "LoopInputs", "batch_wait", "batch_wait_iterations", "build_inputs",
           "dp_if_unsplit", "heads_unsplit", "held_context", "kv_capacity", "kv_held",
           "mixed_step_time", "predict", "recv_interval", "step_time"]

#: Efficiency fields the calibration fits (in this order in every parameter array).
FIT_FIELDS = (
    "compute_max",
    "compute_half_tokens",
    "bandwidth",
    "attention",
    "comm",
    "collective_latency_s",
    "step_overhead_s",
    "layer_overhead_s",
    "seq_overhead_s",
    "moe_compute",
    "request_overhead_s",
)
_CAPS = FRACTION_CAPS


@dataclass
class LoopInputs:
    """Arrays (one entry per point) the analytic closed-loop model needs."""

    dec: np.ndarray  # (n, len(FEATURES)) decode step
    p1: np.ndarray  # one prompt alone
    pw: np.ndarray  # a full prefill batch
    mix: np.ndarray  # the decode step plus one prompt (the mixed step of chunked prefill)
    k: np.ndarray  # prompts in the full prefill batch
    n: np.ndarray  # concurrency
    osl: np.ndarray
    disagg: np.ndarray  # bool
    pool: np.ndarray  # prefill instances (1 for aggregated)
    clients: np.ndarray  # clients per decode instance (N for aggregated, ceil(N/D) disagg.)
    running: np.ndarray  # running batch per decode instance: min(clients, KV slots, max seqs)
    slot_limit: np.ndarray  # batch limit where a padding slot may be held (`batch_limit`), else inf
    slot_ranks: np.ndarray  # ranks holding one padding slot each (attention DP), else 0
    dec_alt: np.ndarray  # decode step of the attention-DP reading of the layout (else = dec)
    #: disaggregated points whose prefill worker count was not recorded (`pool` reads 1)
    pool_unknown: np.ndarray
    isl: np.ndarray
    #: TensorRT-LLM batch waiting (`batch_wait`): iterations a prompt may wait (0: off) and the
    #: scheduled tokens that end the wait early (inf: none)
    wait_iters: np.ndarray
    wait_tokens: np.ndarray
    #: SGLang's scheduler receive interval (`recv_interval`): decode steps between polls for
    #: new requests (0: every step)
    recv_iters: np.ndarray

    def take(self, mask: np.ndarray) -> LoopInputs:
        """The points selected by `mask`."""
        return LoopInputs(*(getattr(self, f.name)[mask] for f in fields(self)))


def _decode_batch(dep: Deployment, seqs: int, isl: int, osl: int) -> StepBatch:
    ctx = isl + osl // 2
    return StepBatch(decode_seqs=seqs, decode_ctx_tokens=seqs * ctx)


def held_context(dep: Deployment, isl: int, osl: int) -> int:
    """Tokens of KV one running sequence of `dep` holds on average: engines that reserve a
    request's blocks to completion when they admit it (`sim.scheduler.RESERVING`: TensorRT-LLM's
    default GUARANTEED_NO_EVICT capacity scheduler, TGI, llama.cpp; ENGINES.md) hold ISL + OSL
    from admission on; the others (vLLM, SGLang) allocate as tokens are made, so the running
    batch holds the mean context ISL + OSL/2."""
    return isl + osl if dep.engine.name in RESERVING else isl + osl // 2


def kv_capacity(dep: Deployment, context_tokens: int) -> int | None:
    """Sequences of mean context `context_tokens` one instance's KV pools hold at once (each
    attention-DP rank has its own pool; a TP layout that replicates the KV holds it on every
    rank), at least 1; None where the memory model leaves no pool."""
    pool = memory_budget(dep).kv_pool_bytes  # the engine's fraction as the catalog reads it
    per_seq = kv_bytes_for_sequence_per_gpu(dep, context_tokens)
    if pool <= 0 or per_seq <= 0:
        return None
    return max(1, int(pool // per_seq) * dep.attention_dp)


_VERSION = re.compile(r"^(\d+)\.(\d+)")


def padding_slot_held(p: ServingPoint) -> bool:
    """Whether the point's engine keeps one batch slot per rank for its CUDA-graph padding
    request: TensorRT-LLM before 1.1 padded a short decode batch with a dummy request that held
    a slot of `max_batch_size` (fixed by reserving an extra slot, NVIDIA/TensorRT-LLM#7998,
    2025-09-25). With the batch limit set to the concurrency, one client then always waits for
    a slot (the measured TTFTs of the 1.0.0rc3 rows are one E2E / (N - 1) plus the prefill)."""
    m = _VERSION.match(p.backend_version)
    return p.backend == "trtllm" and m is not None and (int(m[1]), int(m[2])) < (1, 1)


def batch_limit(p: ServingPoint, dep: Deployment) -> int | None:
    """The batch limit of an aggregated instance of `p` whose engine held a padding slot
    (`padding_slot_held`): the recorded `batch_size` per rank times the ranks; `predict` takes
    the held share of one slot per rank from it. None elsewhere (the benchmark configs set the
    limit to the concurrency, so it does not bind)."""
    if p.mode != "agg" or p.max_batch < 2 or not padding_slot_held(p):
        return None
    return p.max_batch * dep.attention_dp


def attention_dp_variant(dep: Deployment) -> Deployment | None:
    """The attention-data-parallel reading of a TP layout whose KV is replicated on every rank
    (MLA, or TP above the KV heads): the same GPUs as tp x attention-DP ranks of one GPU each,
    experts sharded as recorded. The data does not record whether a disaggregated decode pool
    ran attention DP (TRT-LLM `enable_attention_dp`, SGLang `--enable-dp-attention`; wide-EP
    recipes do at high concurrency, where the replicated KV would not fit); None where the
    reading does not apply or cannot run."""
    a = dep.model.attention
    if dep.tp <= 1 or dep.attention_dp > 1 or not (a.kind == "mla" or a.num_kv_heads < dep.tp):
        return None
    alt = replace(dep, tp=1, attention_dp=dep.tp * dep.attention_dp)
    if serving_problems(alt):
        return None
    return alt


def heads_unsplit(dep: Deployment) -> bool:
    """Whether `dep`'s tensor parallelism cannot split its attention heads evenly (e.g.
    DeepSeek-R1's 128 heads over TP 36): engines shard attention by whole heads, so such a
    recorded `tp_size` is the world size of an attention-data-parallel engine (TensorRT-LLM
    `enable_attention_dp`, SGLang `--enable-dp-attention`), not tensor-parallel attention."""
    return not dep.splits_heads


def dp_if_unsplit(dep: Deployment) -> Deployment:
    """`dep`, or its attention-DP reading where TP cannot split the heads (`heads_unsplit`)."""
    alt = attention_dp_variant(dep) if heads_unsplit(dep) else None
    return alt if alt is not None else dep


def agg_deployment(dep: Deployment) -> Deployment:
    """The reading of an aggregated row's layout that serves it: its attention-DP reading
    (`attention_dp_variant`) where the recorded TP cannot split the attention heads
    (`heads_unsplit`, e.g. DeepSeek-R1 on GB200 recorded as "TP 36" or "TP 72"); else the
    recorded layout. A recorded TP layout whose replicated KV cannot hold every client runs as
    recorded: its KV pools bound the running batch (`kv_capacity`) and the clients beyond wait
    for a slot (`predict`'s slot wait), as the measured TTFTs of DeepSeek-R1 FP8 on B200 SGLang
    TP 8 at 512 clients show (119 s at 8,192 / 1,024, 159 s at 1,024 / 8,192); aggregated rows
    record attention DP where they used it. (Until the session of 2026-11-29 such rows, 11 of
    the bundled ones, were read as attention DP wherever that held more clients, and a recorded
    TP layout that replicates the KV had no capacity bound at all; docs/FIDELITY.md.)"""
    alt = attention_dp_variant(dep)
    if alt is not None and heads_unsplit(dep):
        return alt
    return dep


def _shapes(p: ServingPoint, r: Resolved,
            adep: Deployment | None) -> tuple[StepFeatures, StepFeatures, StepFeatures,
                                              StepFeatures, int, int, int, int, StepFeatures]:
    """Step shapes of `p`; `adep` is its aggregated deployment (`agg_deployment`), None for
    disaggregated points."""
    budget = token_budget(p, r)
    if p.mode == "agg":
        assert adep is not None and p.agg is not None
        pdep = ddep = adep
        # clients per instance (instances = `workers`, identical, each its own share)
        seqs, pool, per_rank = _clients(p), 1, max(1, budget // p.mean_isl)
    else:
        assert r.prefill is not None and r.decode is not None
        assert p.prefill is not None and p.decode is not None
        pdep, ddep = dp_if_unsplit(r.prefill), dp_if_unsplit(r.decode)
        seqs = math.ceil(p.concurrency / p.decode.workers)
        pool, per_rank = p.prefill.workers, 1
    k = per_rank * pdep.attention_dp
    clients = seqs
    held = held_context(ddep, p.mean_isl, p.mean_osl)  # KV tokens per running sequence
    # aggregated rows run the layout they record (`agg_deployment`): its KV pools bound the
    # running batch, the clients beyond wait for a slot
    cap = kv_capacity(ddep, held) if p.mode == "agg" else None
    seqs = min(seqs, cap) if cap is not None else seqs
    one = StepBatch.prefill_chunk(p.mean_isl, 0)
    wave = one
    for _ in range(k - 1):
        wave = wave + one
    alt = attention_dp_variant(ddep) if p.mode == "disagg" else None
    seqs_d, seqs_alt = seqs, seqs
    if p.mode == "disagg" and not p.decode_workers_recorded:
        # How many decode workers shared the clients is not recorded: each runs at most the
        # sequences its KV pools hold (more clients than that took more workers), in each
        # reading of the layout (the attention-DP one shards the KV, so it holds more).
        seqs_d = kv_held(ddep, seqs, held)
        seqs_alt = (kv_held(alt, seqs, held_context(alt, p.mean_isl, p.mean_osl))
                    if alt is not None else seqs_d)
    dec = _decode_batch(ddep, seqs_d, p.mean_isl, p.mean_osl)
    d0 = step_features(ddep, dec)
    return (
        d0,
        step_features(pdep, one),
        step_features(pdep, wave),
        step_features(ddep, dec + one),
        k,
        pool,
        clients,
        seqs,
        step_features(alt, _decode_batch(alt, seqs_alt, p.mean_isl, p.mean_osl))
        if alt is not None else d0,
    )


def kv_held(dep: Deployment, clients: int, context_tokens: int) -> int:
    """`clients`, or fewer: the sequences `dep`'s KV pools hold at `context_tokens` each."""
    cap = kv_capacity(dep, context_tokens)
    return clients if cap is None else min(clients, cap)


def _clients(p: ServingPoint) -> int:
    """Clients the model serves as one system: per instance for aggregated rows served by
    several identical instances (`Layout.workers`), all of them for disaggregated rows."""
    if p.mode == "agg" and p.agg is not None and p.agg.workers > 1:
        return math.ceil(p.concurrency / p.agg.workers)
    return p.concurrency


def build_inputs(points: list[ServingPoint], resolved: list[Resolved]) -> LoopInputs:
    dec, p1, pw, mix, ks, pools, cl, run, alt = [], [], [], [], [], [], [], [], []
    lim: list[float] = []
    ranks: list[float] = []
    waits: list[tuple[float, float]] = []
    recv: list[float] = []
    for p, r in zip(points, resolved, strict=True):
        adep = agg_deployment(r.agg) if r.agg is not None else None
        waits.append(batch_wait(p, r, adep))
        recv.append(float(recv_interval(p, adep)))
        d, a, b, mx, k, pool, c, bs, da = _shapes(p, r, adep)
        limit = batch_limit(p, adep) if adep is not None else None
        lim.append(float(limit) if limit is not None else math.inf)
        ranks.append(float(adep.attention_dp) if limit is not None and adep else 0.0)
        alt.append(da.as_tuple())
        mix.append(mx.as_tuple())
        cl.append(c)
        run.append(bs)
        dec.append(d.as_tuple())
        p1.append(a.as_tuple())
        pw.append(b.as_tuple())
        ks.append(k)
        pools.append(pool)
    return LoopInputs(
        dec=np.array(dec, dtype=float).reshape(-1, len(FEATURES)),
        p1=np.array(p1, dtype=float).reshape(-1, len(FEATURES)),
        pw=np.array(pw, dtype=float).reshape(-1, len(FEATURES)),
        mix=np.array(mix, dtype=float).reshape(-1, len(FEATURES)),
        k=np.array(ks, dtype=float),
        n=np.array([_clients(p) for p in points], dtype=float),
        osl=np.array([p.mean_osl for p in points], dtype=float),
        disagg=np.array([p.mode == "disagg" for p in points], dtype=bool),
        pool=np.array(pools, dtype=float),
        clients=np.array(cl, dtype=float),
        running=np.array(run, dtype=float),
        slot_limit=np.array(lim, dtype=float),
        slot_ranks=np.array(ranks, dtype=float),
        dec_alt=np.array(alt, dtype=float).reshape(-1, len(FEATURES)),
        pool_unknown=np.array([p.mode == "disagg" and not p.prefill_workers_recorded
                               for p in points], dtype=bool),
        isl=np.array([p.mean_isl for p in points], dtype=float),
        wait_iters=np.array([w[0] for w in waits], dtype=float),
        wait_tokens=np.array([w[1] for w in waits], dtype=float),
        recv_iters=np.array(recv, dtype=float),
    )


def recv_interval(p: ServingPoint, adep: Deployment | None) -> int:
    """SGLang's scheduler receive interval of an aggregated point that ran one
    (`ServingPoint.recv_interval` > 1; 0 elsewhere): the scheduler polls for new requests once
    every so many decode steps and after every prefill (`SchedulerRecvSkipper`). Not with
    attention DP, which the SGLang versions that have it refuse to combine with it."""
    if (p.mode != "agg" or p.backend != "sglang" or p.recv_interval <= 1 or adep is None
            or adep.attention_dp > 1):
        return 0
    return p.recv_interval


def token_budget(p: ServingPoint, r: Resolved) -> int:
    """The engine's token budget per step for `p`: the row's `max_num_tokens` where it gives
    one, else the engine's default."""
    return p.max_num_tokens or int(r.engine.max_num_batched_tokens.value)


def batch_wait(p: ServingPoint, r: Resolved, adep: Deployment | None) -> tuple[float, float]:
    """(iterations, tokens) of TensorRT-LLM batch waiting for an aggregated point that ran it
    (`ServingPoint.batch_wait_iters`; (0, inf) elsewhere). The PyTorch executor holds the
    scheduled context requests back while generation requests run, until it has waited
    `batch_wait_timeout_iters` iterations or the step's tokens (context + generation) reach
    `batch_wait_max_tokens_ratio` x `max_num_tokens` (`PyExecutor._waiting_requests`; not
    with attention DP, which balances its ranks instead)."""
    if p.mode != "agg" or p.batch_wait_iters < 1 or adep is None or adep.attention_dp > 1:
        return 0.0, math.inf
    budget = token_budget(p, r)
    return float(p.batch_wait_iters), (p.batch_wait_ratio * budget if p.batch_wait_ratio > 0
                                       else math.inf)


def batch_wait_iterations(iters: np.ndarray, tokens: np.ndarray, isl: np.ndarray,
                          running: np.ndarray, cohort: np.ndarray,
                          arrivals: np.ndarray) -> np.ndarray:
    """Mean iterations a prompt waits under batch waiting (`batch_wait`). The wait opens when a
    cohort of `cohort` prompts arrives while `running` requests decode, and closes after `iters`
    iterations or once the prompts that arrived (at `arrivals` per iteration, steadily) bring
    the step to `tokens`; prompts that arrive in an open wait wait what is left of it. A
    cohort that reaches the tokens alone, or a loop with nothing else running, does not wait."""
    need = np.maximum(np.ceil((tokens - running) / np.maximum(isl, 1.0)), 0.0)  # inf stays inf
    more = need - cohort  # prompts still to arrive
    lam = np.maximum(arrivals, 1e-12)
    span = np.where((iters > 0) & (more > 0) & (running >= 1.0),
                    np.minimum(iters, np.where(np.isfinite(more), more, np.inf) / lam), 0.0)
    # the opening cohort waits the whole span; later arrivals uniformly what is left of it
    out: np.ndarray = (cohort * span + lam * span * span / 2.0) / (cohort + lam * span)
    return out


def _attention(f: np.ndarray, eff: dict[str, np.ndarray]) -> np.ndarray:
    """The attention part of `step_time`: the larger of its compute and memory times."""
    bw = np.minimum(eff["bandwidth"], _CAPS["bandwidth"])
    out: np.ndarray = np.maximum(f[:, 3] / np.minimum(eff["attention"], _CAPS["attention"]),
                                 f[:, 4] / bw)
    return out


def step_time(f: np.ndarray, eff: dict[str, np.ndarray]) -> np.ndarray:
    """Vectorised `RooflineStepModel.step_time_s` from features `f` (n, 11) and per-row
    efficiency arrays (the fields of `FIT_FIELDS`), exact for a step of prefills only or of
    decodes only (`mixed_step_time` for one of both)."""
    Lc, Le, Lm, _, _, Sm, Cb, Cn, tok, seqs, layers = (f[:, i] for i in range(f.shape[1]))
    cm = np.minimum(eff["compute_max"], _CAPS["compute_max"])
    tok1 = np.maximum(tok, 1.0)
    c_at = cm * tok1 / (tok1 + eff["compute_half_tokens"])
    bw = np.minimum(eff["bandwidth"], _CAPS["bandwidth"])
    moe = np.minimum(eff["moe_compute"], _CAPS["moe_compute"])
    lin = np.maximum((Lc + Le * (1.0 / moe - 1.0)) / c_at, Lm / bw)
    att = _attention(f, eff) + Sm / bw  # Ac, Am: columns 3 and 4
    comm = Cb / np.minimum(eff["comm"], _CAPS["comm"]) + Cn * eff["collective_latency_s"]
    over = (eff["step_overhead_s"] + eff["layer_overhead_s"] * layers
            + eff["seq_overhead_s"] * seqs)
    out: np.ndarray = lin + att + comm + np.where(tok > 0, over, 0.0)
    return out


def mixed_step_time(mix: np.ndarray, prefill: np.ndarray, dec: np.ndarray,
                    eff: dict[str, np.ndarray]) -> np.ndarray:
    """`RooflineStepModel.step_time_s` of a step of decodes and prefills together, from the
    features of the whole step (`mix`) and of its prefill and decode parts alone: the linear
    layers, communication and overheads run once over all its tokens, the prompts' attention
    and the decodes' attention each at its own bound (compute-bound prefill, memory-bound
    decode: the sum of the two, as the roofline charges them, not the bound of their sum)."""
    out: np.ndarray = (step_time(mix, eff) - _attention(mix, eff)
                       + _attention(prefill, eff) + _attention(dec, eff))
    return out


def predict(
    x: LoopInputs, eff: dict[str, np.ndarray], wave_weight: np.ndarray | float,
    queue_factor: np.ndarray | float, disagg_speedup: np.ndarray | float = 1.0,
    ttft_overhead_s: np.ndarray | float = 0.0, cohort_frac: np.ndarray | float = 1.0,
    held_slot: np.ndarray | float = 0.0, pool_load: np.ndarray | float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean (TTFT, TPOT) in seconds of every point. `disagg_speedup` divides the decode step
    of disaggregated points (their recipes use speculative decoding the data does not record);
    `eff["request_overhead_s"]` is the fixed request overhead before the first token (HTTP,
    tokenisation, admission, detokenising and streaming the first token) and `ttft_overhead_s`
    an extra one (disaggregated serving: the hand-off from the prefill to the decode pool);
    `cohort_frac` the share of a token budget's prompts that arrive together in steady state
    (1: clients stay in step, 0: each prompt arrives alone); `held_slot` the share of one batch
    slot per rank that an engine's CUDA-graph padding request holds (`padding_slot_held`; the
    decode step keeps the shape of the running batch without it); `pool_load` the utilisation
    at which a disaggregated prefill pool of unrecorded size is read (module docstring; 0: the
    single recorded worker)."""
    # Disaggregated decode pools whose attention-DP use is unrecorded: the faster reading
    # (the recipes choose their layout for the concurrency they serve).
    t_dec = np.where(x.disagg, np.minimum(step_time(x.dec, eff), step_time(x.dec_alt, eff)),
                     step_time(x.dec, eff))
    t_d = t_dec / np.where(x.disagg, disagg_speedup, 1.0)
    t_p1 = step_time(x.p1, eff)
    t_pw = step_time(x.pw, eff)
    # What one prompt adds to the decode step it joins (weights are read once for both).
    extra = np.maximum(mixed_step_time(x.mix, x.p1, x.dec, eff) - t_dec, 0.0)
    osl1 = np.maximum(x.osl - 1.0, 1.0)
    agg = ~x.disagg
    b = np.minimum(x.running, x.slot_limit - held_slot * x.slot_ranks)
    admitted = b / x.clients  # fraction of the clients that hold a KV slot
    # prompts that arrive together (completions stay in step; `cohort_frac` < 1: clients
    # drift apart)
    cohort = 1.0 + cohort_frac * (np.minimum(b, x.k) - 1.0)
    # A request's decode meets the prefills of the running requests outside its cohort: its
    # cohort's were in the mixed step that gave it its first token (counted in its TTFT).
    tpot = np.where(agg, t_d + np.maximum(b - cohort, 0.0) * extra / osl1, t_d)
    ttft0 = np.where(agg, 0.5 * t_d + t_d + cohort * extra, t_p1)
    decode = osl1 * tpot  # E2E - TTFT by the benchmark's TPOT definition
    # TensorRT-LLM batch waiting: prompts that arrive while others decode wait up to its
    # timeout for more prompts (steady state only: the start-up wave has nothing decoding)
    waited = batch_wait_iterations(x.wait_iters, x.wait_tokens, x.isl, b - 1.0, cohort,
                                   b * t_d / (ttft0 + decode)) * t_d
    ttft0 = ttft0 + np.where(agg, waited, 0.0)
    # SGLang's receive interval R: a prompt that arrives while the batch decodes is seen at
    # the next poll, every R decode steps: it waits R t_d / 2 on average (instead of the
    # running step's t_d / 2) and is prefilled with the prompts that arrived in the same
    # window (lam R of them, lam the arrivals per decode step), so its cohort is at least
    # that; the cohort's prefills are in its TTFT, not in its TPOT (as for any cohort).
    recv = agg & (x.recv_iters > 1)
    if np.any(recv):
        lam = b * t_d / (ttft0 + decode)
        window = np.minimum(1.0 + lam * x.recv_iters, np.maximum(np.minimum(b, x.k), 1.0))
        grown = np.where(recv, np.maximum(cohort, window), cohort)
        ttft0 = ttft0 + np.where(recv, 0.5 * (x.recv_iters - 1.0) * t_d
                                 + (grown - cohort) * extra, 0.0)
        tpot = np.where(recv, t_d + np.maximum(b - grown, 0.0) * extra / osl1, tpot)
        decode = osl1 * tpot
    served = np.where(agg, extra, t_p1)
    # A prefill pool whose worker count was not recorded is read as sized to its load, as the
    # recipes size it: enough workers (at least the recorded one) to run at utilisation
    # `pool_load` (0: the recorded 1 stands).
    demand = x.n * t_p1 / (ttft0 + decode)  # busy prefill workers the loop needs (rho's terms)
    sized = np.maximum(x.pool, demand / np.maximum(pool_load, 1e-9))
    pool = np.where(x.pool_unknown & (np.asarray(pool_load) > 0), sized, x.pool)
    rho = np.clip(x.n * admitted * served / (pool * (ttft0 + decode)), 0.0, 0.95)
    ttft_ss = ttft0 + queue_factor * rho / (1.0 - rho) * served
    # Start-up wave: m prompts per instance at t = 0, k per budget-sized step; fewer than k
    # fill one step of m prompts (linear in the prompts between one and k).
    m = x.n * admitted / pool
    waves = np.ceil(m / x.k)
    frac = np.where(x.k > 1, (np.clip(m, 1.0, x.k) - 1.0) / np.maximum(x.k - 1.0, 1.0), 1.0)
    ttft_wave = np.where(m <= x.k, t_p1 + frac * (t_pw - t_p1), t_pw * (waves + 1.0) / 2.0)
    slot_wait = (1.0 / admitted - 1.0) * (ttft_ss + decode)
    ttft = (ttft_overhead_s + eff["request_overhead_s"] + wave_weight * ttft_wave
            + (1.0 - wave_weight) * ttft_ss + slot_wait)
    return ttft, tpot
