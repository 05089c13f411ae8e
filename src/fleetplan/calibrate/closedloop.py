"""A fast analytic model of a closed-loop benchmark, vectorised over many points.

Benchmark modelled (see docs/FIDELITY.md): N clients, each sending a fixed-ISL/OSL request the
moment its last one finishes; the first wave starts together; TTFT and TPOT are means over all
requests, the start-up wave included; TPOT = (E2E - TTFT) / (OSL - 1).

Per point, from three step shapes of its deployment(s): a decode step of the instance's batch at
the mean context (`t_d`), one prompt prefilled alone (`t_p1`), and a full prefill batch of `k`
prompts (`t_pw`, the engine's token budget):

aggregated
  m          = t_pw / k                           (prefill time per request when batched)
  TPOT       = t_d + (N - 1) m / (OSL - 1)        (decode stalls for the other clients' prefills)
  TTFT_ss    = t_p1 + t_d / 2 + q rho/(1-rho) m   (steady state: wait for the running step, own
                                                  prefill, queueing; rho = N m / cycle)
  TTFT_wave  = t_pw (ceil(N/k) + 1) / 2           (all N prompts queue at t = 0)
  TTFT       = w TTFT_wave + (1 - w) TTFT_ss
disaggregated (P prefill workers, D decode workers)
  TPOT = t_d (batch ceil(N/D));  TTFT as above with the prefill pool (P instances, no decode
  interference), rho = N t_p1 / (P cycle).

`w` (weight of the start-up wave, per engine), `q` (queueing factor, global) and the
disaggregated decode speed-up `s` (per engine: TPOT = t_d / s; public disaggregated DeepSeek
recipes run MTP speculative decoding, which the data does not record) are benchmark parameters
fitted across all points; they are not per-row knobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fleetplan.calibrate.features import FEATURES, Resolved, StepFeatures, step_features
from fleetplan.calibrate.points import ServingPoint
from fleetplan.perf import Deployment, StepBatch

__all__ = ["FIT_FIELDS", "LoopInputs", "build_inputs", "predict", "step_time"]

#: Efficiency fields the calibration fits (in this order in every parameter array).
FIT_FIELDS = (
    "compute_max",
    "compute_half_tokens",
    "bandwidth",
    "attention",
    "comm",
    "collective_latency_s",
    "step_overhead_s",
    "seq_overhead_s",
    "moe_compute",
)
_CAPS = {"compute_max": 1.0, "bandwidth": 1.0, "attention": 1.0, "comm": 1.0,
         "moe_compute": 1.5}


@dataclass
class LoopInputs:
    """Arrays (one entry per point) the analytic closed-loop model needs."""

    dec: np.ndarray  # (n, len(FEATURES)) decode step
    p1: np.ndarray  # one prompt alone
    pw: np.ndarray  # a full prefill batch
    k: np.ndarray  # prompts in the full prefill batch
    n: np.ndarray  # concurrency
    osl: np.ndarray
    disagg: np.ndarray  # bool
    pool: np.ndarray  # prefill instances (1 for aggregated)


def _decode_batch(dep: Deployment, seqs: int, isl: int, osl: int) -> StepBatch:
    ctx = isl + osl // 2
    return StepBatch(decode_seqs=seqs, decode_ctx_tokens=seqs * ctx)


def _shapes(p: ServingPoint, r: Resolved) -> tuple[StepFeatures, StepFeatures, StepFeatures,
                                                   int, int]:
    budget = int(r.engine.max_num_batched_tokens.value)
    if p.mode == "agg":
        assert r.agg is not None and p.agg is not None
        pdep = ddep = r.agg
        seqs, pool, per_rank = p.concurrency, 1, max(1, budget // p.isl)
    else:
        assert r.prefill is not None and r.decode is not None
        assert p.prefill is not None and p.decode is not None
        pdep, ddep = r.prefill, r.decode
        seqs = math.ceil(p.concurrency / p.decode.workers)
        pool, per_rank = p.prefill.workers, 1
    k = per_rank * pdep.attention_dp
    one = StepBatch.prefill_chunk(p.isl, 0)
    wave = one
    for _ in range(k - 1):
        wave = wave + one
    return (
        step_features(ddep, _decode_batch(ddep, seqs, p.isl, p.osl)),
        step_features(pdep, one),
        step_features(pdep, wave),
        k,
        pool,
    )


def build_inputs(points: list[ServingPoint], resolved: list[Resolved]) -> LoopInputs:
    dec, p1, pw, ks, pools = [], [], [], [], []
    for p, r in zip(points, resolved, strict=True):
        d, a, b, k, pool = _shapes(p, r)
        dec.append(d.as_tuple())
        p1.append(a.as_tuple())
        pw.append(b.as_tuple())
        ks.append(k)
        pools.append(pool)
    return LoopInputs(
        dec=np.array(dec, dtype=float).reshape(-1, len(FEATURES)),
        p1=np.array(p1, dtype=float).reshape(-1, len(FEATURES)),
        pw=np.array(pw, dtype=float).reshape(-1, len(FEATURES)),
        k=np.array(ks, dtype=float),
        n=np.array([p.concurrency for p in points], dtype=float),
        osl=np.array([p.osl for p in points], dtype=float),
        disagg=np.array([p.mode == "disagg" for p in points], dtype=bool),
        pool=np.array(pools, dtype=float),
    )


def step_time(f: np.ndarray, eff: dict[str, np.ndarray]) -> np.ndarray:
    """Vectorised `RooflineStepModel.step_time_s` from features `f` (n, 9) and per-row
    efficiency arrays (the fields of `FIT_FIELDS`)."""
    Lc, Le, Lm, Ac, Am, Cb, Cn, tok, seqs = (f[:, i] for i in range(f.shape[1]))
    cm = np.minimum(eff["compute_max"], _CAPS["compute_max"])
    tok1 = np.maximum(tok, 1.0)
    c_at = cm * tok1 / (tok1 + eff["compute_half_tokens"])
    bw = np.minimum(eff["bandwidth"], _CAPS["bandwidth"])
    moe = np.minimum(eff["moe_compute"], _CAPS["moe_compute"])
    lin = np.maximum((Lc + Le * (1.0 / moe - 1.0)) / c_at, Lm / bw)
    att = np.maximum(Ac / np.minimum(eff["attention"], _CAPS["attention"]), Am / bw)
    comm = Cb / np.minimum(eff["comm"], _CAPS["comm"]) + Cn * eff["collective_latency_s"]
    over = eff["step_overhead_s"] + eff["seq_overhead_s"] * seqs
    out: np.ndarray = lin + att + comm + np.where(tok > 0, over, 0.0)
    return out


def predict(
    x: LoopInputs, eff: dict[str, np.ndarray], wave_weight: np.ndarray | float,
    queue_factor: float, disagg_speedup: np.ndarray | float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean (TTFT, TPOT) in seconds of every point. `disagg_speedup` divides the decode step
    of disaggregated points (their recipes use speculative decoding the data does not record)."""
    t_d = step_time(x.dec, eff) / np.where(x.disagg, disagg_speedup, 1.0)
    t_p1 = step_time(x.p1, eff)
    t_pw = step_time(x.pw, eff)
    m = t_pw / x.k
    osl1 = np.maximum(x.osl - 1.0, 1.0)
    agg = ~x.disagg
    tpot = np.where(agg, t_d + (x.n - 1.0) * m / osl1, t_d)
    ttft0 = t_p1 + np.where(agg, 0.5 * t_d, 0.0)
    cycle = ttft0 + x.osl * tpot
    served = np.where(agg, m, t_p1)
    rho = np.clip(x.n * served / (x.pool * cycle), 0.0, 0.95)
    ttft_ss = ttft0 + queue_factor * rho / (1.0 - rho) * served
    waves = np.ceil(x.n / (x.k * x.pool))
    ttft_wave = t_pw * (waves + 1.0) / 2.0
    ttft = wave_weight * ttft_wave + (1.0 - wave_weight) * ttft_ss
    return ttft, tpot
