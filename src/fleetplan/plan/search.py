"""Configuration search: every GPU x TP x precision, sized by the capacity worksheet and priced.

For each candidate the worksheet method runs on its operating point:
  theoretical GPUs = rate / (requests/s per replica) x GPUs per replica
  x (1 + efficiency tax) x burst factor x (1 + headroom), rounded up to whole replicas.
Cost: GPUs x the catalog's on-demand price. $ per 1M input / output tokens split the fleet's cost
by the share of step time spent on prefill vs decode at the operating point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from fleetplan.catalog import GPU, Engine, ModelSpec, Quant, load_catalog
from fleetplan.errors import InfeasibleError, UsageError
from fleetplan.perf import Deployment
from fleetplan.perf.calibration import efficiency_for, model_class_of
from fleetplan.plan.demand import Demand, scaled_trace
from fleetplan.plan.operating import OperatingPoint, latency_at_rate, operating_point
from fleetplan.plan.slo import SLOTargets
from fleetplan.sim.config import chunks_prompts_by_default

__all__ = ["Candidate", "PlanFactors", "pareto", "search"]

HOURS_PER_MONTH = 730.0  # 8,760 h / 12


@dataclass(frozen=True, slots=True)
class PlanFactors:
    """The worksheet's multipliers (defaults: 20% tax, 3x burst, 40% headroom)."""

    efficiency_tax: float = 0.20
    burst: float = 3.0
    headroom: float = 0.40
    burst_source: str = "assumed (default 3x; typical 2.5-4x)"

    def check(self) -> None:
        if not 0 <= self.efficiency_tax < 1:
            raise UsageError(
                f"must be in [0, 1), got {self.efficiency_tax:g}", where="--efficiency-tax"
            )
        if not (math.isfinite(self.burst) and self.burst >= 1):
            raise UsageError(f"must be a finite number >= 1 (peak over mean), got "
                             f"{self.burst:g}", where="--burst")
        if not 0 <= self.headroom < 5:
            raise UsageError(
                f"must be a fraction such as 0.4, got {self.headroom:g}", where="--headroom"
            )


@dataclass(frozen=True, slots=True)
class Candidate:
    gpu: str
    tp: int
    precision: str
    engine: str
    feasible: bool
    reason: str
    gpus_per_replica: int
    point: OperatingPoint | None = None
    theoretical_gpus: float = math.inf
    replicas: int = 0
    gpus_total: int = 0
    usd_per_hour: float = math.inf
    usd_per_month: float = math.inf
    usd_per_million_input_tokens: float = math.inf
    usd_per_million_output_tokens: float = math.inf
    sizing: dict[str, float] = field(default_factory=dict)
    efficiency_source: str = ""
    quality_cost: float = 0.0  # the precision's typical accuracy drop (catalog, sourced)
    kv_cache: str = ""  # the KV-cache dtype the prediction assumes (`kv_cache_label`)

    @property
    def tpot_at_mean_load_s(self) -> float:
        return self.sizing.get("tpot_at_mean_load_s", math.inf)

    @property
    def bottleneck(self) -> str:
        return self.point.bottleneck if self.point and self.feasible else ""

    @property
    def efficiency_kind(self) -> str:
        """Where the candidate's efficiencies come from, in one word: `fitted` (its own group
        of the calibration), `composed` (the fit's factors of its GPU, engine and precision,
        as a held-out group is predicted) or `defaults` (nothing measured: uncalibrated, and
        not comparable with the others; docs/FIDELITY.md gives the defaults' error)."""
        src = self.efficiency_source
        if src.startswith("defaults"):
            return "defaults"
        return "composed" if "composed from" in src else "fitted"

    @property
    def planned_replicas(self) -> int:
        """Replicas the worksheet's steps 3-5 give (before any simulation check)."""
        return int(self.sizing.get("planned_replicas", self.replicas))

    def resized(self, replicas: int, dep: Deployment, demand: Demand) -> Candidate:
        """This candidate at `replicas` replicas (the simulation check's size): GPUs, prices
        and the TPOT at mean load follow; `sizing` keeps the worksheet's figures and adds
        `planned_replicas` (the size before the check) and `checked_replicas`."""
        if replicas == self.replicas or not self.feasible or self.point is None:
            return self
        scale = replicas / self.replicas
        tpot_load, _ = latency_at_rate(dep, demand, demand.rate_per_s / replicas)
        sizing = {**self.sizing, "planned_replicas": float(self.planned_replicas),
                  "checked_replicas": float(replicas), "replicas": float(replicas),
                  "gpus_total": float(replicas * self.gpus_per_replica),
                  "tpot_at_mean_load_s": tpot_load}
        return replace(
            self, replicas=replicas, gpus_total=replicas * self.gpus_per_replica,
            usd_per_hour=self.usd_per_hour * scale, usd_per_month=self.usd_per_month * scale,
            usd_per_million_input_tokens=self.usd_per_million_input_tokens * scale,
            usd_per_million_output_tokens=self.usd_per_million_output_tokens * scale,
            sizing=sizing)

    def to_dict(self) -> dict[str, object]:
        p = self.point
        return {
            "gpu": self.gpu,
            "tp": self.tp,
            "precision": self.precision,
            "engine": self.engine,
            "feasible": self.feasible,
            "reason": self.reason,
            "gpus_per_replica": self.gpus_per_replica,
            "replicas": self.replicas,
            "planned_replicas": self.planned_replicas,
            "gpus_total": self.gpus_total,
            "theoretical_gpus": fin(self.theoretical_gpus),
            "usd_per_hour": fin(self.usd_per_hour),
            "usd_per_month": fin(self.usd_per_month),
            "usd_per_million_input_tokens": fin(self.usd_per_million_input_tokens),
            "usd_per_million_output_tokens": fin(self.usd_per_million_output_tokens),
            "bottleneck": self.bottleneck,
            "bottleneck_why": p.why if p else "",
            "batch_per_replica": p.batch if p else 0,
            "requests_per_s_per_replica": p.requests_per_s if p else 0.0,
            "pred_tpot_s": fin(p.tpot_s) if p else None,
            "pred_ttft_s": fin(p.ttft_s) if p else None,
            "pred_tpot_at_mean_load_s": fin(self.tpot_at_mean_load_s),
            "tpot_floor_s": fin(p.tpot_floor_s) if p else None,
            "ttft_floor_s": fin(p.ttft_floor_s) if p else None,
            "sizing": self.sizing,
            "efficiency_source": self.efficiency_source,
            "efficiency_kind": self.efficiency_kind,
            "quality_cost": self.quality_cost,
            "kv_cache": self.kv_cache,
        }


def fin(x: float) -> float | None:
    """JSON-safe float: infinities and NaN become null."""
    return x if math.isfinite(x) else None


def _size(dep: Deployment, pt: OperatingPoint, demand: Demand, f: PlanFactors) -> dict[str, float]:
    per_replica = pt.requests_per_s
    theoretical = demand.rate_per_s / per_replica * dep.gpus
    taxed = theoretical * (1 + f.efficiency_tax)
    burst = taxed * f.burst
    head = burst * (1 + f.headroom)
    replicas = max(1, math.ceil(head / dep.gpus - 1e-9))
    return {
        "replica_requests_per_s": per_replica,
        "theoretical_gpus": theoretical,
        "after_tax_gpus": taxed,
        "after_burst_gpus": burst,
        "after_headroom_gpus": head,
        "replicas": float(replicas),
        "gpus_total": float(replicas * dep.gpus),
    }


def evaluate(dep: Deployment, demand: Demand, slo: SLOTargets, factors: PlanFactors) -> Candidate:
    probs = dep.problems()
    if probs:
        return _cand(dep, feasible=False, reason="; ".join(probs))
    budget = int(dep.engine.max_num_batched_tokens.value)
    if not chunks_prompts_by_default(dep.engine.name) and demand.input_tokens.max > budget:
        return _cand(dep, feasible=False, reason=(
            f"a prompt of {demand.input_tokens.max:,.0f} tokens exceeds {dep.engine.name}'s "
            f"max_num_tokens {budget:,} with chunked prefill off (its server's default): "
            "enable chunked prefill or raise max_num_tokens"))
    pt = operating_point(dep, demand, slo)
    if not pt.feasible:
        return _cand(dep, feasible=False, reason=pt.reason, point=pt)
    s = _size(dep, pt, demand, factors)
    gpus_total = int(s["gpus_total"])
    tpot_load, _ = latency_at_rate(dep, demand, demand.rate_per_s / int(s["replicas"]))
    s["tpot_at_mean_load_s"] = tpot_load
    usd_h = gpus_total * dep.gpu.price_usd_per_hour.value
    in_tok_h = demand.rate_per_s * demand.input_tokens.mean * 3600
    out_tok_h = demand.rate_per_s * demand.output_tokens.mean * 3600
    return _cand(
        dep,
        feasible=True,
        reason="",
        point=pt,
        theoretical_gpus=s["theoretical_gpus"],
        replicas=int(s["replicas"]),
        gpus_total=gpus_total,
        usd_per_hour=usd_h,
        usd_per_month=usd_h * HOURS_PER_MONTH,
        usd_per_million_input_tokens=usd_h * pt.input_share / in_tok_h * 1e6,
        usd_per_million_output_tokens=usd_h * (1 - pt.input_share) / out_tok_h * 1e6,
        sizing=s,
    )


def _cand(dep: Deployment, **kw: Any) -> Candidate:
    return Candidate(
        gpu=dep.gpu.name,
        tp=dep.tp,
        precision=dep.quant.name,
        engine=dep.engine.name,
        gpus_per_replica=dep.gpus,
        efficiency_source=dep.efficiency.provenance,
        quality_cost=dep.quant.quality_cost.value,
        kv_cache=kv_cache_label(dep),
        **kw,
    )


#: KV-cache dtypes a plan can assume (`--kv-precision`).
KV_PRECISIONS = ("bf16", "fp8")
#: How each engine picks its KV-cache dtype by default, and the flag that sets FP8.
_KV_DEFAULTS = {
    "vllm": "default: the model dtype (BF16); FP8 needs --kv-cache-dtype fp8",
    "sglang": "default: the model dtype (BF16); FP8 needs --kv-cache-dtype fp8_e4m3",
    "trtllm": "default: the checkpoint's kv_cache_quant_algo (FP8 in NVIDIA's FP8/FP4 "
              "checkpoints); KvCacheConfig(dtype='fp8') forces it",
}


def kv_cache_label(dep: Deployment) -> str:
    """The KV-cache dtype `dep`'s prediction assumes, and how its engine gets there: vLLM and
    SGLang keep the model dtype unless told otherwise (vLLM engine arguments
    `--kv-cache-dtype auto`; SGLang quantized-KV-cache docs), TensorRT-LLM follows the
    checkpoint's quantization metadata (NVIDIA/TensorRT-LLM#16240)."""
    dtype = dep.kv_quant.name if dep.kv_quant else ("fp8" if dep.quant.kv_bytes < 2 else "bf16")
    how = "set by --kv-precision" if dep.kv_quant else f"with the {dep.quant.name} weights"
    note = _KV_DEFAULTS.get(dep.engine.name, "")
    return f"{dtype} ({how}; {dep.engine.name} {note})" if note else f"{dtype} ({how})"


def _precisions(
    engine: Engine, gpu: GPU, wanted: list[Quant] | None, max_quality_cost: float | None
) -> list[Quant]:
    """The precisions to try: those asked for, else every one the engine supports and the GPU
    computes natively, within the accepted quality cost."""
    cat = load_catalog()
    if wanted is not None:
        return wanted
    pool = [cat.quants[q] for q in engine.quantizations if q in cat.quants]
    return [
        q
        for q in pool
        if gpu.native(q.compute_dtype)
        and (max_quality_cost is None or q.quality_cost.value <= max_quality_cost)
    ]


def search(
    model: ModelSpec,
    gpus: Iterable[GPU],
    engine: Engine,
    demand: Demand,
    slo: SLOTargets,
    factors: PlanFactors,
    *,
    tps: Iterable[int] = (1, 2, 4, 8),
    precisions: list[Quant] | None = None,
    max_quality_cost: float | None = None,
    kv_precision: Quant | None = None,
) -> list[Candidate]:
    """Evaluate every candidate; feasible ones first, cheapest first. `kv_precision`: the
    KV-cache dtype of every candidate (default: each weight precision's own, e.g. FP8 KV with
    FP8 weights; `Candidate.kv_cache` says which and what the engine needs for it)."""
    factors.check()
    if kv_precision is not None and kv_precision.name not in KV_PRECISIONS:
        raise UsageError(f"must be one of {', '.join(KV_PRECISIONS)}, got {kv_precision.name!r}",
                         where="--kv-precision")
    _check_context(model, demand)
    tpot_t = slo.get("tpot")
    if tpot_t is not None and demand.output_tokens.max < 2:
        raise UsageError(
            f"{tpot_t}: every request generates one token, so it has no TPOT ((E2E - TTFT) / "
            "(output tokens - 1)); give TTFT (and E2E) targets only, e.g. --slo ttft_p95=2s "
            "(the default also sets tpot_p95=50ms)", where="--slo")
    out: list[Candidate] = []
    for gpu in gpus:
        for q in _precisions(engine, gpu, precisions, max_quality_cost):
            for tp in tps:
                eff = efficiency_for(gpu.name, engine.name, q.name, model_class_of(model),
                                     model)
                dep = Deployment(model, gpu, q, engine, tp=tp, kv_quant=kv_precision,
                                 efficiency=eff)
                out.append(evaluate(dep, demand, slo, factors))
    if not any(c.feasible for c in out):
        _raise_floor(out, slo)
    # cheapest first; at one price the faster at the planned load (the TPOT at the SLO target
    # is close to the target for every candidate, so it does not tell them apart)
    out.sort(key=lambda c: (not c.feasible, c.usd_per_hour, c.tpot_at_mean_load_s))
    return out


def _longest_request_tokens(demand: Demand) -> float:
    """Input + output tokens of the longest request: the trace's own rows (as --isl / --osl
    scaled them), a fixed length's sum, or a preset's longest prompt (its joint maximum is
    not recorded)."""
    if demand.trace is not None:
        t = scaled_trace(demand.trace.table, demand)
        return float((t["input_tokens"] + t["output_tokens"]).max() or 0.0)
    i, o = demand.input_tokens, demand.output_tokens
    if i.max == i.mean and o.max == o.mean:  # fixed lengths (flags)
        return i.mean + o.mean
    return i.max


def _check_context(model: ModelSpec, demand: Demand) -> None:
    """Requests must fit the model's context, input and output together (vLLM refuses a
    prompt whose tokens plus `max_tokens` exceed `max_model_len`)."""
    ctx = model.max_context_tokens
    fixed = demand.trace is None and demand.source.startswith("flags")
    where = "--isl/--osl" if fixed else f"--workload ({demand.source})"
    i, o = demand.input_tokens.mean, demand.output_tokens.mean
    if i + o > ctx:
        raise UsageError(
            f"a mean request of {i:,.0f} input + {o:,.0f} output tokens exceeds "
            f"{model.name}'s context of {ctx:,} tokens", where=where)
    longest = _longest_request_tokens(demand)
    if longest > ctx:
        raise UsageError(
            f"its longest request needs {longest:,.0f} tokens (input + output), beyond "
            f"{model.name}'s context of {ctx:,}: no replica can serve it; leave such requests "
            "out of the trace or plan a longer-context model", where=where)


def _raise_floor(cands: list[Candidate], slo: SLOTargets) -> None:
    """When nothing is feasible because of a latency target below physics, say so with the floor."""
    pts = [c.point for c in cands if c.point is not None and math.isfinite(c.point.tpot_floor_s)]
    tpot_t, ttft_t = slo.get("tpot"), slo.get("ttft")
    if pts and tpot_t:
        floor = min(p.tpot_floor_s for p in pts)
        if floor > tpot_t.seconds:
            raise InfeasibleError(
                f"--slo {tpot_t}: below the physical floor; the fastest candidate needs "
                f"{floor * 1e3:.1f} ms per output token (one read of its weights and KV)"
            )
    if pts and ttft_t:
        floor = min(p.ttft_floor_s for p in pts)
        if floor > ttft_t.seconds:
            raise InfeasibleError(
                f"--slo {ttft_t}: below the physical floor; the fastest candidate needs "
                f"{floor:.3f} s to prefill the prompt"
            )


def pareto(cands: list[Candidate]) -> list[Candidate]:
    """Feasible candidates not beaten on both $/hour and TPOT at mean load by another."""
    feas = sorted(
        (c for c in cands if c.feasible),
        key=lambda c: (c.usd_per_hour, c.tpot_at_mean_load_s),
    )
    front: list[Candidate] = []
    best = math.inf
    for c in feas:
        tie = bool(front) and (c.usd_per_hour, c.tpot_at_mean_load_s) == (
            front[-1].usd_per_hour, front[-1].tpot_at_mean_load_s)
        if c.tpot_at_mean_load_s < best or tie:  # an exact twin is not beaten either
            front.append(c)
            best = c.tpot_at_mean_load_s
    return front
