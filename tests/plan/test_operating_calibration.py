"""The planner's operating point uses the step model the calibration fitted its efficiencies
under: the same mean-step form (TPOT = t_d + (B / osl) x, x what one whole prompt adds to the
decode step it joins) and the same KV held per running sequence."""

from __future__ import annotations

import numpy as np
import pytest

from fleetplan.calibrate import bundled_points_path, prepare, read_points
from fleetplan.calibrate.closedloop import agg_deployment, held_context, kv_capacity
from fleetplan.calibrate.fit import mape
from fleetplan.calibrate.runner import predict_stored
from fleetplan.perf import Deployment, RooflineStepModel
from fleetplan.perf.calibration import efficiency_for
from fleetplan.perf.memory import kv_bytes_for_sequence_per_gpu, memory_budget
from fleetplan.plan import operating_point, parse_slo, resolve_demand
from fleetplan.plan.operating import _tpot


def test_planner_tpot_reproduces_the_calibrated_tpot_on_the_measured_rows() -> None:
    """Every aggregated measured row, with its stored efficiency and the running batch the
    calibration reads: the planner's mean step is within a few percent of the calibration's TPOT
    (the calibration counts the (B - 1) / (osl - 1) prompts of a closed loop, the planner the
    B / osl of an open one), and as close to the measurements. Spreading each prompt over
    every step as B x isl / osl tokens (the planner until 2026-11-29) was off by a median 3%
    and a 90th percentile 37% (mixture-of-experts steps at small batch charged the experts of
    those tokens at every step), with TPOT MAPE 23.6% against the calibration's 13.9%."""
    prep = prepare(read_points(bundled_points_path())[2])
    _, fit, _ = predict_stored(prep)
    m, _, measured = prep.measured()
    cls = prep.model_class()
    idx, plan = [], []
    for i, (p, r) in enumerate(zip(prep.sup, prep.resolved, strict=True)):
        if p.mode != "agg" or not m[i]:
            continue
        assert r.agg is not None
        eff = efficiency_for(*r.key, cls[i], r.model, engine_version=p.backend_version)
        model = RooflineStepModel(agg_deployment(r.agg).with_efficiency(eff))
        b = round(float(min(prep.inputs.running[i], prep.inputs.slot_limit[i])))
        plan.append(_tpot(model, b, p.mean_isl, p.mean_osl))
        idx.append(i)
    ii, pl = np.array(idx), np.array(plan)
    assert len(ii) > 2000
    ratio = pl / fit[ii]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.02)
    assert np.percentile(ratio, 10) > 0.95 and np.percentile(ratio, 90) < 1.08
    assert mape(pl, measured[ii]) < mape(fit[ii], measured[ii]) + 1.0


@pytest.mark.parametrize("engine", ["trtllm", "vllm"])
def test_kv_capacity_holds_what_the_engine_holds_per_running_sequence(engine: str) -> None:
    """TensorRT-LLM reserves a request's blocks to completion (ISL + OSL), vLLM allocates as
    tokens are made (mean ISL + OSL / 2): the planner's KV bound is the calibration's, which
    the simulator's schedulers also keep (Llama-3.1-70B FP8 on two H100s, 1,024 / 8,192
    tokens: TensorRT-LLM 53 sequences, not the 96 of the mean context)."""
    dep = Deployment.build("llama-3.1-70b", "h100-sxm", "fp8", engine, tp=2)
    isl, osl = 1024, 8192
    pt = operating_point(dep, resolve_demand(None, 1.0, isl, osl), parse_slo("tpot_p50=1s"))
    ctx = isl + osl if engine == "trtllm" else isl + osl / 2
    by_hand = int(memory_budget(dep).kv_pool_bytes // kv_bytes_for_sequence_per_gpu(dep, int(ctx)))
    assert pt.kv_capacity_seqs == by_hand
    assert pt.kv_capacity_seqs == kv_capacity(dep, held_context(dep, isl, osl))
    if engine == "trtllm":
        assert by_hand == 53


def test_short_outputs_share_their_prompts_steps(cli: object) -> None:
    """Where more than one prompt joins every step (B / osl > 1), the step that carries a
    prompt carries the others' too: TTFT is at least the mean step. With one output token a
    plan reported a batch of 1,024 and a TTFT of 0.3 s (the simulator's p95 at the same load:
    0.6 s), and a TPOT target is refused: TPOT needs two output tokens."""
    from fleetplan.plan.demand import demand_from_flags
    from fleetplan.plan.operating import _prompt_steps, _ttft

    dep = Deployment.build("llama-3.1-70b", "h200-sxm", "fp8", "vllm", tp=2)
    op = operating_point(dep, demand_from_flags(10.0, 1000, 1), parse_slo("ttft_p95=1s"))
    assert op.feasible and op.batch < 64 and op.ttft_s <= 1.0
    model = RooflineStepModel(dep)
    t_d, mixed = _prompt_steps(model, op.batch, 1000, 1)
    mean_step = t_d + op.batch * sum(t - t_d for t in mixed)
    assert _ttft(model, op.batch, 1000, 1) >= mean_step
    assert op.requests_per_s == pytest.approx(op.batch / mean_step, rel=1e-9)
    # long outputs are unchanged: one prompt's chunks beside the decodes
    t_d, mixed = _prompt_steps(model, 8, 1000, 200)
    assert _ttft(model, 8, 1000, 200) == pytest.approx(
        dep.efficiency.request_overhead_s + 0.5 * t_d + sum(mixed), rel=1e-12)
    r = cli("plan", "--model", "llama-3.1-70b", "--gpus", "h200-sxm", "--tp", "2",  # type: ignore[operator]
            "--precision", "fp8", "--rate", "10", "--isl", "1000", "--osl", "1", "--no-check")
    assert r.code == 2 and "has no TPOT" in " ".join(r.err.split())


def test_ttft_is_continuous_where_a_second_prompt_starts_joining_each_step() -> None:
    """At B = osl one prompt joins each step; the short-output form (B / osl > 1) meets the
    long-output one there (it jumped by half a prompt: 685 -> 945 ms for 20,000-token prompts
    between B = 64 and 65 at osl 64)."""
    from fleetplan.plan.operating import _ttft

    model = RooflineStepModel(Deployment.build("llama-3.1-8b", "h100-sxm", "fp8", "vllm"))
    for isl in (8000, 20000):
        at = _ttft(model, 64, isl, 64)
        above = _ttft(model, 65, isl, 64)
        assert at < above < at * 1.05, (isl, at, above)
