"""The fast vectorised step time equals `RooflineStepModel.step_time_s` for pure steps."""

from __future__ import annotations

import numpy as np
import pytest

from fleetplan.calibrate.closedloop import FIT_FIELDS, step_time
from fleetplan.calibrate.features import step_features
from fleetplan.perf import Deployment, Efficiency, RooflineStepModel, StepBatch

CASES = [
    ("llama-3.1-70b", "h100-sxm", "fp8", "vllm", 4, 1, 1),
    ("deepseek-v3", "h200-sxm", "fp8", "vllm", 8, 1, 8),
    ("deepseek-v3", "h200-sxm", "fp8", "vllm", 1, 8, 8),
    ("gpt-oss-120b", "h100-sxm", "bf16", "vllm", 2, 1, 1),
    # 45 Gated DeltaNet layers: the recurrent state each sequence reads and writes back
    ("qwen3.5-397b-a17b", "h200-sxm", "fp8", "sglang", 4, 2, 8),
]


@pytest.mark.parametrize(("model", "gpu", "prec", "eng", "tp", "dp", "ep"), CASES)
def test_fast_step_time_matches_roofline(model: str, gpu: str, prec: str, eng: str, tp: int,
                                         dp: int, ep: int) -> None:
    rng = np.random.default_rng(0)
    dep = Deployment.build(model, gpu, prec, eng, tp=tp, ep=ep, attention_dp=dp,
                           efficiency=Efficiency())
    batches = [StepBatch(decode_seqs=64, decode_ctx_tokens=64 * 3000),
               StepBatch.prefill_chunk(2048, 0),
               StepBatch.prefill_chunk(512, 0) + StepBatch.prefill_chunk(512, 0)]
    for _ in range(5):
        eff = Efficiency(
            compute_max=float(rng.uniform(0.3, 0.9)),
            compute_half_tokens=float(rng.uniform(5, 200)),
            bandwidth=float(rng.uniform(0.5, 0.95)),
            attention=float(rng.uniform(0.2, 0.8)),
            comm=float(rng.uniform(0.3, 0.9)),
            collective_latency_s=float(rng.uniform(1e-6, 3e-5)),
            step_overhead_s=float(rng.uniform(1e-4, 5e-3)),
            layer_overhead_s=float(rng.uniform(0.0, 5e-5)),
            seq_overhead_s=float(rng.uniform(1e-7, 2e-5)),
            moe_compute=float(rng.uniform(0.3, 1.2)),
        )
        ref = RooflineStepModel(dep.with_efficiency(eff))
        arrays = {f: np.array([float(getattr(eff, f))]) for f in FIT_FIELDS}
        for b in batches:
            f = np.array([step_features(dep, b).as_tuple()])
            assert step_time(f, arrays)[0] == pytest.approx(ref.step_time_s(b), rel=1e-6)


@pytest.mark.parametrize(("model", "gpu", "prec", "eng", "tp", "dp", "ep"), CASES)
def test_mixed_step_time_matches_roofline(model: str, gpu: str, prec: str, eng: str, tp: int,
                                          dp: int, ep: int) -> None:
    """A step of decodes and one prompt together (what a prompt adds to the decode step it
    joins, the calibration's x): the fit's step time is the roofline's, which charges the
    prompt's compute-bound attention and the decodes' memory-bound attention each at its own
    bound (the bound of their sum was up to 18% lower, so the planner and the simulator paid up
    to 46% more per joined prompt than the fit had charged)."""
    from fleetplan.calibrate.closedloop import mixed_step_time

    dep = Deployment.build(model, gpu, prec, eng, tp=tp, ep=ep, attention_dp=dp,
                           efficiency=Efficiency())
    eff = Efficiency(compute_max=0.6, compute_half_tokens=40.0, bandwidth=0.8, attention=0.4,
                     comm=0.7, collective_latency_s=1e-5, step_overhead_s=1e-3,
                     layer_overhead_s=1e-5, seq_overhead_s=1e-6, moe_compute=0.8)
    ref = RooflineStepModel(dep.with_efficiency(eff))
    arrays = {f: np.array([float(getattr(eff, f))]) for f in FIT_FIELDS}
    for seqs, ctx, isl in ((64, 3000, 2048), (256, 8000, 7372), (4, 1000, 8192)):
        dec = StepBatch(decode_seqs=seqs, decode_ctx_tokens=seqs * ctx)
        one = StepBatch.prefill_chunk(isl, 0)
        feats = [np.array([step_features(dep, b).as_tuple()]) for b in (dec + one, one, dec)]
        got = mixed_step_time(*feats, arrays)[0]
        assert got == pytest.approx(ref.step_time_s(dec + one), rel=1e-6)
