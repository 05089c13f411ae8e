"""The operating point of one replica: the largest decode batch that keeps the SLO.

Steady state under continuous batching (vLLM V1, SGLang, TensorRT-LLM in-flight batching): a
replica holding B sequences in decode finishes B / osl requests per step (Little's law), so B /
osl prompts, on average, join the steps. A prompt joins the decode step that is running when it
is admitted, whole where it fits the step's token budget beside the B decodes, else in chunks of
that budget over consecutive steps; what it adds to those steps is

  x(B) = sum over its chunks of [t(B decodes + chunk) - t(B decodes)]

(the weights are read once for both, so a prompt beside a memory-bound decode costs less than
alone). The mean step, the time between a request's output tokens, is then

  TPOT(B) = t_d(B) + (B / osl) x(B),    t_d(B) = t(B decodes at the mean context isl + osl/2),

the form the calibration fits its efficiencies under (`fleetplan.calibrate.closedloop`: t_d +
(B - c) x / (osl - 1) for a closed loop whose cohort of c prompts is counted in its TTFT; an open
loop's arrivals are independent, B / osl per step). Spreading each prompt over every step as
B x isl / osl tokens instead would charge a mixture-of-experts step the expert weights of those
tokens at every step, which engines do not do. TPOT(B), TTFT(B) and E2E(B) grow with B; the
operating point is the largest B that keeps every target of the SLO (each target on its own,
several per metric too):

  TPOT_p(B) <= target   the mean step at the lengths of percentile p, and at those of every
                        tabulated percentile below p (50, 90, 95, 99, max): a p99 TPOT is never
                        below the p50 one, so a stricter percentile never allows a larger batch;
  TTFT_p(B) <= target   the request overhead, half a decode step (the step running when the
                        prompt arrives), and the percentile-p prompt's chunks beside B decodes;
  E2E_p(B)  <= target   TTFT_q(B) + (osl_q - 1) TPOT_q(B), the largest over q <= p;
  B x KV(held context) <= KV pool,   B <= the engine's max_num_seqs,

with the held context isl + osl/2 for engines that allocate KV as tokens are made (vLLM,
SGLang) and isl + osl for those that reserve a request's blocks to completion when they admit it
(`sim.scheduler.RESERVING`: TensorRT-LLM's default capacity scheduler, TGI, llama.cpp), as the
calibration and the simulator hold it.

Throughput then is B / (osl x TPOT_mean(B)) requests per second. The bottleneck is whichever limit
binds, and for latency limits, the resource the mean step spends most of its time on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from fleetplan.perf import Deployment, MemoryBudget, RooflineStepModel, StepBatch, memory_budget
from fleetplan.perf.memory import kv_bytes_for_sequence_per_gpu
from fleetplan.plan.demand import Demand, TokenStats
from fleetplan.plan.slo import SLOTargets
from fleetplan.sim.scheduler import RESERVING

__all__ = ["OperatingPoint", "operating_point", "percentile_tokens"]


def percentile_tokens(stats: TokenStats, pct: float | None) -> float:
    if pct is None:
        return stats.mean
    table = {50.0: stats.p50, 90.0: stats.p90, 95.0: stats.p95, 99.0: stats.p99}
    return table.get(pct, stats.max if pct > 99 else stats.mean)


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    feasible: bool
    reason: str
    batch: int = 0
    tpot_s: float = math.inf  # at the SLO percentile's context
    tpot_mean_s: float = math.inf
    ttft_s: float = math.inf  # overhead + half a step + the SLO percentile's prompt (no queue)
    requests_per_s: float = 0.0
    input_share: float = 0.0  # fraction of step time spent on prefill
    limit: str = ""
    bottleneck: str = ""
    why: str = ""
    kv_capacity_seqs: int = 0
    tpot_floor_s: float = math.inf
    ttft_floor_s: float = math.inf


def held_context(dep: Deployment, isl: float, osl: float) -> float:
    """KV tokens one running sequence holds on average (module docstring): ISL + OSL for
    engines that reserve to completion, else the mean context ISL + OSL / 2."""
    return isl + osl if dep.engine.name in RESERVING else isl + osl / 2


def _decodes(b: int, isl: float, osl: float) -> StepBatch:
    """`b` decodes at the mean context isl + osl / 2."""
    return StepBatch(decode_seqs=b, decode_ctx_tokens=round(b * (isl + osl / 2)))


def _chunks(model: RooflineStepModel, b: int, isl: float) -> list[StepBatch]:
    """The prefill chunks of one `isl`-token prompt beside `b` decodes: the step's token budget
    left after the decodes, whole where the prompt fits; [] where no budget is left."""
    budget = int(model.dep.engine.max_num_batched_tokens.value - b)
    if budget <= 0:
        return []
    out, done, n = [], 0, math.ceil(isl)
    while done < n:
        c = min(budget, n - done)
        out.append(StepBatch.prefill_chunk(c, done))
        done += c
    return out


def _prompt_steps(model: RooflineStepModel, b: int, isl: float, osl: float
                  ) -> tuple[float, list[float]] | None:
    """(t_d, the times of the steps that carry one prompt's chunks beside `b` decodes at the
    mean context); None where no budget is left for a prompt."""
    chunks = _chunks(model, b, isl)
    if not chunks:
        return None
    dec = _decodes(b, isl, osl)
    return model.step_time_s(dec), [model.step_time_s(c + dec) for c in chunks]


def _tpot(model: RooflineStepModel, b: int, isl: float, osl: float) -> float:
    """The mean step at decode batch `b`: t_d(B) + (B / osl) x(B), x what one prompt adds to
    the decode steps it joins (module docstring)."""
    steps = _prompt_steps(model, b, isl, osl)
    if steps is None:
        return math.inf
    t_d, mixed = steps
    return t_d + b / max(osl, 1.0) * sum(max(t - t_d, 0.0) for t in mixed)


def _ttft(model: RooflineStepModel, b: int, isl: float, osl: float) -> float:
    """The request's fixed overhead before its first token (`Efficiency.request_overhead_s`),
    the rest of the step running when it arrives (half a decode step), and its prompt's
    chunks beside `b` decodes."""
    steps = _prompt_steps(model, b, isl, osl)
    if steps is None:
        return math.inf
    t_d, mixed = steps
    own = sum(mixed)
    joins = b / max(osl, 1.0)  # prompts joining each step at the operating point
    if joins <= 1.0:
        return model.dep.efficiency.request_overhead_s + 0.5 * t_d + own
    # Short outputs: more than one prompt joins every step, so the running step and the step
    # that carries this prompt also carry the others' prompts, joins - 1 of them (the same
    # formula as above at one join).
    x = sum(max(t - t_d, 0.0) for t in mixed)
    others = (joins - 1.0) * x
    return model.dep.efficiency.request_overhead_s + 0.5 * (t_d + others) + own + others


def _parts(model: RooflineStepModel, batch: StepBatch) -> dict[str, float]:
    """Seconds of one step by the resource that bounds each part."""
    brk = model.breakdown(batch)
    return {
        "compute": (brk.linear_s if brk.linear_bound == "compute" else 0.0)
        + (brk.attention_s if brk.attention_bound == "compute" else 0.0),
        "memory bandwidth": (brk.linear_s if brk.linear_bound == "bandwidth" else 0.0)
        + (brk.attention_s if brk.attention_bound == "bandwidth" else 0.0) + brk.state_s,
        "interconnect": brk.comm_s,
        "step overhead": brk.overhead_s,
    }


def _bottleneck(model: RooflineStepModel, b: int, isl: float, osl: float) -> tuple[str, str]:
    """The resource the mean step at decode batch `b` spends most of its time on: the decode
    step's parts plus B / osl times what a prompt's chunks add to each."""
    dec = _decodes(b, isl, osl)
    base = _parts(model, dec)
    parts = dict(base)
    w = b / max(osl, 1.0)
    for c in _chunks(model, b, isl):
        mixed = _parts(model, c + dec)
        for k in parts:
            parts[k] += w * (mixed[k] - base[k])
    total = sum(parts.values())
    res = max(parts, key=lambda k: parts[k])
    share = parts[res] / total if total > 0 else 0.0
    return res, f"{res} takes {share:.0%} of the {total * 1e3:.1f} ms mean step"


#: Percentiles `TokenStats` tabulates (99.9: its maximum).
_PCTS = (50.0, 90.0, 95.0, 99.0, 99.9)


@dataclass(frozen=True, slots=True)
class _Lengths:
    """Token lengths the limits are evaluated at: means for throughput and KV, and for each SLO
    target the (isl, osl) of its percentile and of every tabulated percentile below it."""

    isl_mean: float
    osl_mean: float
    shapes: dict[str, tuple[tuple[float, float], ...]]  # target key -> (isl, osl) shapes

    @classmethod
    def of(cls, demand: Demand, slo: SLOTargets) -> _Lengths:
        i, o = demand.input_tokens, demand.output_tokens

        def upto(p: float) -> tuple[tuple[float, float], ...]:
            qs = [q for q in _PCTS if q <= p] or [p]
            return tuple(dict.fromkeys((percentile_tokens(i, q), percentile_tokens(o, q))
                                       for q in qs))

        return cls(i.mean, o.mean, {t.key: upto(t.percentile) for t in slo.targets})


def _tpot_at(model: RooflineStepModel, b: int, shapes: tuple[tuple[float, float], ...]) -> float:
    return max(_tpot(model, b, i, o) for i, o in shapes)


def _latency(model: RooflineStepModel, metric: str, b: int,
             shapes: tuple[tuple[float, float], ...]) -> float:
    """The latency of `metric` at decode batch `b` for a target with these length shapes."""
    if metric == "tpot":
        return _tpot_at(model, b, shapes)
    if metric == "ttft":
        return max(_ttft(model, b, i, o) for i, o in shapes)
    return max(_ttft(model, b, i, o) + max(o - 1.0, 0.0) * _tpot(model, b, i, o)
               for i, o in shapes)


def _largest(ok: Callable[[int], bool], max_b: int) -> int:
    """The largest b in [1, max_b] with ok(b), given ok(1) and ok monotone (bisection)."""
    if ok(max_b):
        return max_b
    lo, hi = 1, max_b
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def _doesnt_fit(budget: MemoryBudget) -> OperatingPoint:
    extra = budget.activation_bytes + budget.overhead_bytes
    return OperatingPoint(
        False,
        f"does not fit: weights {budget.weights_bytes / 1e9:.1f} GB + activations and "
        f"overhead {extra / 1e9:.1f} GB per GPU > usable {budget.usable_bytes / 1e9:.1f} GB",
    )


def _floor_reason(model: RooflineStepModel, lens: _Lengths, slo: SLOTargets) -> str:
    """Why no batch keeps the SLO: a target below the latency of a batch of one."""
    for t in slo.targets:
        floor = _latency(model, t.metric, 1, lens.shapes[t.key])
        if floor > t.seconds:
            return (f"{t.metric.upper()} floor {floor * 1e3:.1f} ms above target {t}"
                    if t.metric == "tpot" else
                    f"{t.metric.upper()} floor {floor:.3f} s above target {t}")
    return ""


def _explain(
    model: RooflineStepModel,
    budget: MemoryBudget,
    b: int,
    max_b: int,
    kv_seqs: int,
    lens: _Lengths,
    slo: SLOTargets,
) -> tuple[str, str, str]:
    """(limit, bottleneck resource, why) at the operating batch `b`."""
    ctx = held_context(model.dep, lens.isl_mean, lens.osl_mean)
    if b == max_b and b == kv_seqs:
        why = (
            f"the KV pool ({budget.kv_pool_bytes / 1e9:.1f} GB/GPU) holds {kv_seqs} sequences "
            f"of ~{ctx:.0f} tokens before the latency targets bind"
        )
        return "kv_memory", "KV memory", why
    if b == max_b:
        why = f"the engine's max_num_seqs ({max_b}) binds before latency or KV memory"
        return "max_num_seqs", "engine batch limit", why
    binds = next((t for t in slo.targets
                  if _latency(model, t.metric, b + 1, lens.shapes[t.key]) > t.seconds), None)
    limit = binds.metric if binds else "ttft"
    res, detail = _bottleneck(model, b, lens.isl_mean, lens.osl_mean)
    what = f"{binds} target" if binds else f"{limit.upper()} target"
    return limit, res, (f"{what} binds: batch {b} is the largest within it ({b + 1} would miss "
                        f"it); at the mean lengths {detail}")


def _reported_shapes(slo: SLOTargets, metric: str,
                     lens: _Lengths) -> tuple[tuple[float, float], ...]:
    """The shapes the reported TPOT / TTFT (and their floors) are taken at: those of the
    metric's highest-percentile target, else the mean lengths."""
    own = [t for t in slo.targets if t.metric == metric]
    if not own:
        return ((lens.isl_mean, lens.osl_mean),)
    return lens.shapes[max(own, key=lambda t: t.percentile).key]


def operating_point(dep: Deployment, demand: Demand, slo: SLOTargets) -> OperatingPoint:
    """The replica's largest SLO-keeping decode batch and what it yields (module docstring)."""
    model = RooflineStepModel(dep)
    budget = memory_budget(dep)
    if not budget.fits:
        return _doesnt_fit(budget)
    lens = _Lengths.of(demand, slo)
    tpot_shapes = _reported_shapes(slo, "tpot", lens)
    ttft_shapes = _reported_shapes(slo, "ttft", lens)
    per_seq = kv_bytes_for_sequence_per_gpu(dep, int(held_context(dep, lens.isl_mean,
                                                                   lens.osl_mean)))
    kv_seqs = int(budget.kv_pool_bytes // per_seq) if per_seq > 0 else 10**9
    max_b = min(kv_seqs, int(dep.engine.max_num_seqs.value))
    base = OperatingPoint(
        False,
        "",
        kv_capacity_seqs=kv_seqs,
        tpot_floor_s=_tpot_at(model, 1, tpot_shapes),
        ttft_floor_s=_latency(model, "ttft", 1, ttft_shapes),
    )
    if max_b < 1:
        ctx = held_context(dep, lens.isl_mean, lens.osl_mean)
        return replace(base, reason=f"KV pool holds no sequence of {ctx:.0f} tokens")
    reason = _floor_reason(model, lens, slo)
    if reason:
        return replace(base, reason=reason)

    def ok(b: int) -> bool:
        return all(_latency(model, t.metric, b, lens.shapes[t.key]) <= t.seconds
                   for t in slo.targets)

    b = _largest(ok, max_b)
    tpot_mean = _tpot(model, b, lens.isl_mean, lens.osl_mean)
    decode_only = model.step_time_s(_decodes(b, lens.isl_mean, lens.osl_mean))
    limit, res, why = _explain(model, budget, b, max_b, kv_seqs, lens, slo)
    return replace(
        base,
        feasible=True,
        batch=b,
        tpot_s=_tpot_at(model, b, tpot_shapes),
        tpot_mean_s=tpot_mean,
        ttft_s=_latency(model, "ttft", b, ttft_shapes),
        requests_per_s=b / (lens.osl_mean * tpot_mean),
        input_share=max(0.0, (tpot_mean - decode_only) / tpot_mean),
        limit=limit,
        bottleneck=res,
        why=why,
    )


def latency_at_rate(
    dep: Deployment, demand: Demand, rate_per_replica: float
) -> tuple[float, float]:
    """(mean TPOT, mean decode batch) of one replica serving `rate_per_replica` requests/s.

    Little's law: the decode batch is B = rate x osl x TPOT(B); TPOT grows with B, so the fixed
    point is found by iteration (it exists while the rate is below the replica's capacity).
    """
    model = RooflineStepModel(dep)
    isl, osl = demand.input_tokens.mean, demand.output_tokens.mean
    b = 1.0
    tpot = _tpot(model, 1, isl, osl)
    for _ in range(60):
        nb = max(1.0, rate_per_replica * osl * tpot)
        tpot = _tpot(model, max(1, round(nb)), isl, osl)
        if abs(nb - b) < 0.5:
            break
        b = nb
    return tpot, b
