"""Resolve measured points to deployments, and turn the roofline into per-step work features.

A point names its model, system, engine and precision as the benchmark wrote them; `resolve`
maps them to catalog entries and builds the `Deployment`(s) of its layout (one for aggregated
serving, a prefill and a decode one for disaggregated), or says why it cannot.

Fitting evaluates the step model millions of times, so it does not call `RooflineStepModel`
inside the loop. For each step shape it needs, `step_features` probes the roofline once per part
with unit/infinite efficiencies and keeps the work in seconds-at-peak:

  t(eff) = max((Lc + Le (1/moe_compute - 1)) / compute_at(tokens / dp), Lm / bandwidth)
         + max(Ac / attention, Am / bandwidth) + Sm / bandwidth
         + Cb / comm + Cn x collective_latency
         + step_overhead + layer_overhead x layers + seq_overhead x seqs / dp

which is exactly `RooflineStepModel.step_time_s` for a pure prefill or pure decode step
(tested in tests/calibrate/test_features.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fleetplan.calibrate.points import Layout, ServingPoint
from fleetplan.catalog import (
    GPU,
    Engine,
    Fig,
    ModelSpec,
    Quant,
    get_engine,
    get_gpu,
    get_model,
    get_quant,
)
from fleetplan.errors import FleetplanError
from fleetplan.perf import Deployment, Efficiency, RooflineStepModel, StepBatch
from fleetplan.perf.memory import memory_budget

__all__ = [
    "FEATURES",
    "Resolved",
    "StepFeatures",
    "model_is_moe",
    "resolve",
    "serving_problems",
    "step_features",
]

BIG = 1e12
FEATURES = ("Lc", "Le", "Lm", "Ac", "Am", "Sm", "Cb", "Cn", "tokens_r", "seqs_r", "layers")

# Precision names of the benchmark -> catalog quantization names to try, in order.
_PRECISION = {
    "fp4": ["fp4", "nvfp4", "mxfp4"],
    "int4": ["int4", "w4a16", "int4-awq"],
    "fp8": ["fp8"],
    "bf16": ["bf16"],
}
# Weight-only fallbacks on GPUs without FP4 tensor cores (gpt-oss MXFP4 on Hopper).
_WEIGHT_ONLY_FP4 = ["mxfp4", "w4a16", "int4", "fp4-weight-only", "w4a8"]


@dataclass(frozen=True, slots=True)
class StepFeatures:
    """Work of one step shape in seconds at peak (see the module docstring)."""

    Lc: float
    Le: float
    Lm: float
    Ac: float
    Am: float
    Sm: float  # recurrent state of linear-attention / Mamba-2 layers read and written back
    Cb: float
    Cn: float
    tokens_r: float
    seqs_r: float
    layers: float  # layers the step runs (0 for an empty step)

    def as_tuple(self) -> tuple[float, ...]:
        return (self.Lc, self.Le, self.Lm, self.Ac, self.Am, self.Sm, self.Cb, self.Cn,
                self.tokens_r, self.seqs_r, self.layers)


@dataclass(frozen=True)
class Resolved:
    """A point's catalog entries and deployments (`agg`, or `prefill` + `decode`)."""

    model: ModelSpec
    gpu: GPU
    quant: Quant
    engine: Engine
    agg: Deployment | None
    prefill: Deployment | None
    decode: Deployment | None

    @property
    def key(self) -> tuple[str, str, str]:
        """The calibration group (gpu, engine, precision) in catalog names."""
        return (self.gpu.name, self.engine.name, self.quant.name)


def model_is_moe(model: ModelSpec) -> bool:
    return model.moe is not None


def _lookup_quant(precision: str, gpu: GPU, engine: Engine) -> Quant:
    cands = _PRECISION.get(precision, [precision])
    tried: list[str] = []
    first_err: FleetplanError | None = None
    for name in cands + (_WEIGHT_ONLY_FP4 if precision == "fp4" else []):
        try:
            q = get_quant(name, where="precision")
        except FleetplanError as e:
            first_err = first_err or e
            continue
        tried.append(q.name)
        if gpu.native(q.compute_dtype) and q.name in engine.quantizations:
            return q
    if tried:
        raise FleetplanError(
            f"precision '{precision}' ({', '.join(tried)}) is not computed by {gpu.name} "
            f"or not supported by {engine.name}"
        )
    assert first_err is not None
    raise first_err


#: The layout fields by the points file's columns (how a row's reasons name them).
POINT_FIELDS = {"tp": "tp_size", "pp": "pp_size", "ep": "moe_ep_size",
                "attention_dp": "attention_dp_size"}


def serving_problems(dep: Deployment) -> list[str]:
    """Why a measured layout cannot have run: `Deployment.problems` less head divisibility (a
    recorded `tp_size` that does not divide the heads is the world size of an attention-DP
    engine, read so by `closedloop.heads_unsplit`; the other problems are real)."""
    return [p for p in dep.problems(POINT_FIELDS) if "attention heads" not in p]


def scale_up_reading(lay: Layout, domain_gpus: int) -> Layout:
    """The layout of a row whose `tp_size` is the product `moe_tp_size` x `moe_ep_size` of two
    equal factors and exceeds the GPU's scale-up domain (e.g. DeepSeek-R1 on 8-GPU HGX B200 and
    H200 systems recorded as TP 64 = 8 x 8, or TP 16 = 4 x 4; the aggregated rows of the bundled
    data): read as TP = EP = that factor within one domain, the layout those runs' latencies
    fit (TP 64 across 8 nodes at 4 clients would not decode DeepSeek-R1 in 10-13 ms per token)
    and the one their recipes use (`--tp 8 --ep 8`). Other layouts are returned as recorded; one
    that still exceeds the domain stays unsupported."""
    if (lay.tp > domain_gpus and lay.moe_tp > 1 and lay.moe_tp == lay.ep
            and lay.tp == lay.moe_tp * lay.ep and lay.moe_tp <= domain_gpus):
        return replace(lay, tp=lay.moe_tp, moe_tp=1)
    return lay


def _dep(r: Resolved, lay: Layout) -> Deployment:
    lay = scale_up_reading(lay, r.gpu.interconnect.domain_gpus)
    dep = Deployment(r.model, r.gpu, r.quant, r.engine, tp=lay.tp, pp=lay.pp, ep=lay.ep,
                     attention_dp=lay.attention_dp)
    probs = serving_problems(dep)
    if probs:
        raise FleetplanError("; ".join(probs))
    from fleetplan.calibrate.closedloop import attention_dp_variant  # (it imports this module)

    if not dep.splits_heads and (r.model.moe is None or attention_dp_variant(dep) is None):
        # a TP that cannot split the heads is read as an attention-DP world size only for MoE
        # models whose KV every rank replicates (`closedloop.attention_dp_variant`)
        raise FleetplanError(
            f"{POINT_FIELDS['tp']} {dep.tp} does not divide {r.model.name}'s "
            f"{r.model.attention.num_heads} attention heads (engines shard attention by whole "
            "heads), and no attention-data-parallel reading applies ("
            + ("a dense model" if r.model.moe is None else
               "its KV heads split over the TP ranks") + ")")
    # A layout whose weights exceed the GPU's whole memory cannot have run as recorded (the
    # source writes 0 or nothing for layout fields it did not record, read as 1).
    w = memory_budget(dep).weights_bytes
    if w > dep.gpu.memory_bytes.value:
        raise FleetplanError(
            f"the recorded layout (TP {dep.tp}, PP {dep.pp}, EP {dep.ep}, attention DP "
            f"{dep.attention_dp}) puts {w / 2**30:.0f} GiB of {r.model.name} weights on each "
            f"{r.gpu.name} of {dep.gpu.memory_bytes.value / 2**30:.1f} GiB: it cannot have run as "
            "recorded (layout or precision fields missing?)"
        )
    return dep


def resolve(p: ServingPoint) -> Resolved:
    """Catalog entries and deployments of a point; `FleetplanError` says why it is unsupported."""
    if p.precision_note:
        raise FleetplanError(p.precision_note)
    model = get_model(p.model, where="model_path")
    if p.isl + p.osl > model.max_context_tokens:
        raise FleetplanError(
            f"a request needs ISL + OSL = {p.isl + p.osl:,} tokens, beyond {model.name}'s "
            f"context of {model.max_context_tokens:,}")
    if p.osl < 2:
        raise FleetplanError("OSL 1: the benchmark's TPOT, (E2E - TTFT) / (OSL - 1), is "
                             "undefined with one output token")
    # the catalog's GPU aliases name the benchmark's systems (h100_sxm, gb200, ...); an unknown
    # system is an error naming the closest GPUs, never the part its prefix matches
    gpu = get_gpu(p.system, where="system")
    engine = get_engine(p.backend, where="backend")
    if p.kv_memory_fraction:  # the run's own setting (a row column or its recipe)
        engine = engine.model_copy(update={"gpu_memory_utilization": Fig(
            value=p.kv_memory_fraction, as_of=engine.gpu_memory_utilization.as_of,
            source=f"the row's kv_memory_fraction ({p.recipe or 'recorded'}); engine default "
                   f"{engine.gpu_memory_utilization.value:g}")})
    quant = _lookup_quant(p.precision, gpu, engine)
    r = Resolved(model, gpu, quant, engine, None, None, None)
    if p.mode == "agg":
        assert p.agg is not None
        return replace(r, agg=_dep(r, p.agg))
    assert p.prefill is not None and p.decode is not None
    return replace(r, prefill=_dep(r, p.prefill), decode=_dep(r, p.decode))


# ---- probes -------------------------------------------------------------------------------
_P_COMPUTE = Efficiency(compute_max=1.0, compute_half_tokens=0.0, bandwidth=BIG, attention=1.0,
                        comm=BIG, collective_latency_s=0.0, step_overhead_s=0.0,
                        layer_overhead_s=0.0, seq_overhead_s=0.0, moe_compute=1.0,
                        provenance="probe")
_P_EXPERT = replace(_P_COMPUTE, moe_compute=0.5)
_P_MEMORY = replace(_P_COMPUTE, compute_max=BIG, bandwidth=1.0, attention=BIG)
_P_COMM = replace(_P_COMPUTE, compute_max=BIG, attention=BIG, comm=1.0)
_P_LAT = replace(_P_COMPUTE, compute_max=BIG, attention=BIG, collective_latency_s=1.0)


_MODELS: dict[tuple[object, ...], tuple[RooflineStepModel, ...]] = {}


def _models(dep: Deployment) -> tuple[RooflineStepModel, ...]:
    key = (dep.model.name, dep.gpu.name, dep.quant.name, dep.engine.name, dep.tp, dep.pp,
           dep.ep, dep.attention_dp, dep.kv_quant.name if dep.kv_quant else None)
    if key not in _MODELS:
        _MODELS[key] = tuple(RooflineStepModel(dep.with_efficiency(e))
                             for e in (_P_COMPUTE, _P_EXPERT, _P_MEMORY, _P_COMM, _P_LAT))
    return _MODELS[key]


def step_features(dep: Deployment, batch: StepBatch) -> StepFeatures:
    """Work features of one pure-prefill or pure-decode step of `dep` (module docstring)."""
    mc, me, mm, mcb, mcl = _models(dep)
    bc, be, bm = mc.breakdown(batch), me.breakdown(batch), mm.breakdown(batch)
    dp = dep.attention_dp
    return StepFeatures(
        Lc=bc.linear_s,
        Le=be.linear_s - bc.linear_s,
        Lm=bm.linear_s,
        Ac=bc.attention_s,
        Am=bm.attention_s,
        Sm=bm.state_s,
        Cb=mcb.breakdown(batch).comm_s,
        Cn=mcl.breakdown(batch).comm_s,
        tokens_r=batch.tokens / dp,
        seqs_r=(batch.decode_seqs + batch.prefill_seqs) / dp,
        layers=float(dep.model.num_layers) if batch.tokens > 0 else 0.0,
    )
