"""Roofline step times against hand calculations, and the closed-form decode run."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetplan.catalog import load_catalog
from fleetplan.perf import (
    Deployment,
    Efficiency,
    RooflineStepModel,
    StepBatch,
    summed_decode_run_time_s,
)
from fleetplan.perf.params import param_count

EFF = Efficiency()  # defaults, fixed here so the hand calculation does not drift with calibration


def _llama8b() -> RooflineStepModel:
    return RooflineStepModel(
        Deployment.build("llama-3.1-8b", "h100-sxm", "bf16", tp=1, efficiency=EFF)
    )


def test_decode_step_hand_calculation() -> None:
    m = _llama8b()
    p = param_count(m.dep.model)
    emb = 128_256 * 4096 * 2
    # GEMMs: one token; compute at 0.7 x 1/(1+48) of 989.5 TFLOP/s vs bytes at 0.8 x 3.35 TB/s
    flops = 2 * (p - emb) + 2 * 4096 * 128_256
    t_c = flops / (989.5e12 * 0.7 * 1 / 49)
    t_m = ((p - emb) * 2 + 128_256 * 4096 * 2) / (3.35e12 * 0.8)
    linear = max(t_c, t_m)
    # attention over 1,000 context tokens: 32 layers x 8 KV heads x (128 K + 128 V) x 2 B
    kv_s = 1000 * 32 * 8 * 256 * 2 / (3.35e12 * 0.8)
    attn_flop_s = 1000 * 2 * 32 * 256 * 32 / (989.5e12 * 0.45)
    # overheads: step 2.5 ms + 32 layers x 20 us + one sequence x 5 us
    want = linear + max(kv_s, attn_flop_s) + 2.5e-3 + 32 * 20e-6 + 5e-6
    got = m.step_time_s(StepBatch(decode_seqs=1, decode_ctx_tokens=1000))
    assert got == pytest.approx(want, rel=1e-9)
    assert m.breakdown(StepBatch(decode_seqs=1, decode_ctx_tokens=1000)).linear_bound == "bandwidth"


def test_prefill_is_compute_bound_and_quadratic_term_counts() -> None:
    m = _llama8b()
    short = m.step_time_s(StepBatch.prefill_chunk(4096, 0))
    brk = m.breakdown(StepBatch.prefill_chunk(4096, 0))
    assert brk.linear_bound == "compute"
    # the same chunk after 60k cached tokens costs more (attention over the longer context)
    assert m.step_time_s(StepBatch.prefill_chunk(4096, 60_000)) > short * 1.3


def test_tensor_parallel_adds_allreduce_and_cuts_gemm_time() -> None:
    one = RooflineStepModel(
        Deployment.build("llama-3.1-70b", "h100-sxm", "fp8", tp=2, efficiency=EFF)
    )
    four = RooflineStepModel(
        Deployment.build("llama-3.1-70b", "h100-sxm", "fp8", tp=4, efficiency=EFF)
    )
    b = StepBatch(decode_seqs=32, decode_ctx_tokens=32 * 2000)
    assert four.breakdown(b).comm_s > one.breakdown(b).comm_s > 0
    assert four.breakdown(b).linear_s == pytest.approx(one.breakdown(b).linear_s / 2)


def test_tensor_parallel_across_domains_is_a_hierarchical_allreduce() -> None:
    """TP 16 of a dense model on 8-GPU H100 domains: per all-reduce, a ring inside the domain
    over NVLink, 2(n-1)/n of the 1/8 shard over the NICs between the 2 domains plus the
    cross-node latency (hand calculation with the catalog's 450 GB/s NVLink, 50 GB/s per-GPU
    scale-out and 20 us per cross-node collective); TP 12 and
    GPUs without a scale-out network are refused with a reason."""
    dep = Deployment.build("llama-3.1-70b", "h100-sxm", "bf16", tp=16, efficiency=EFF)
    assert dep.problems() == []
    m = RooflineStepModel(dep)
    tokens = 4096
    msg = tokens * 8192 * 2.0
    link, nic = 450e9 * EFF.comm, 50e9 * EFF.comm
    lat_bytes = 20e-6 * 50e9  # the catalog's 20 us cross-node collective latency, as NIC bytes
    per_call = (2 * 7 / 8 * msg / link + EFF.collective_latency_s
                + (2 * 1 / 2 * msg / 8 + lat_bytes) / nic + EFF.collective_latency_s)
    want = 2 * 80 * per_call
    assert m.breakdown(StepBatch.prefill_chunk(tokens, 0)).comm_s == pytest.approx(want)
    eight = RooflineStepModel(
        Deployment.build("llama-3.1-70b", "h100-sxm", "bf16", tp=8, efficiency=EFF))
    assert eight.breakdown(StepBatch.prefill_chunk(tokens, 0)).comm_s < want
    with pytest.raises(Exception, match="unevenly"):
        Deployment.build("llama-3.1-70b", "h100-sxm", "bf16", tp=12)
    l40 = Deployment.build("llama-3.1-8b", "l40s", "bf16", tp=8)
    assert l40.problems() == []
    with pytest.raises(Exception, match="no scale-out network"):
        Deployment.build("llama-3.1-8b", "l40s", "bf16", tp=16)


def test_moe_reads_only_touched_experts() -> None:
    m = RooflineStepModel(Deployment.build("deepseek-v3", "h200-sxm", "fp8", tp=8, efficiency=EFF))
    t1 = m.breakdown(StepBatch(decode_seqs=1, decode_ctx_tokens=1000)).linear_s
    t64 = m.breakdown(StepBatch(decode_seqs=64, decode_ctx_tokens=64_000)).linear_s
    # 1 token touches 8 of 256 experts per layer; 64 tokens touch 256 x (1 - (1 - 8/256)^64) ~ 222
    assert 5 < t64 / t1 < 256 / 8


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(["llama-3.1-8b", "gpt-oss-120b", "deepseek-v3", "qwen3.5-397b-a17b"]),
    seqs=st.integers(1, 300),
    ctx_per_seq=st.integers(1, 20_000),
    n=st.integers(1, 400),
)
def test_decode_run_closed_form_equals_sum(model: str, seqs: int, ctx_per_seq: int, n: int) -> None:
    gpu = "h200-sxm"
    m = RooflineStepModel(Deployment.build(model, gpu, "fp8", tp=8, efficiency=EFF))
    ctx = seqs * ctx_per_seq
    assert m.decode_run_time_s(seqs, ctx, n) == pytest.approx(
        summed_decode_run_time_s(m, seqs, ctx, n), rel=1e-9
    )


EAGER = Efficiency(overhead_overlap=0.8, gqa_expansion=2.0, activation_passes=10.0,
                   kv_read=0.5, layer_overhead_s=8e-4)


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(["llama-3.1-8b", "gpt-oss-120b"]),
    seqs=st.integers(1, 300),
    ctx_per_seq=st.integers(1, 20_000),
    n=st.integers(1, 400),
)
def test_decode_run_closed_form_equals_sum_with_overlap(model: str, seqs: int, ctx_per_seq: int,
                                                        n: int) -> None:
    """With fixed costs partly hidden behind GPU work the step is not affine in the context;
    the closed form splits the run where the GPU work passes the fixed costs."""
    m = RooflineStepModel(Deployment.build(model, "h100-sxm", "bf16", tp=1, efficiency=EAGER))
    ctx = seqs * ctx_per_seq
    assert m.decode_run_time_s(seqs, ctx, n) == pytest.approx(
        summed_decode_run_time_s(m, seqs, ctx, n), rel=1e-9
    )


def test_eager_step_terms_hand_calculation() -> None:
    """overhead_overlap, gqa_expansion, kv_read and activation_passes against a hand sum."""
    base = RooflineStepModel(Deployment.build("llama-3.1-8b", "h100-sxm", "bf16", efficiency=EFF))
    m = RooflineStepModel(Deployment.build("llama-3.1-8b", "h100-sxm", "bf16", efficiency=EAGER))
    b = StepBatch(decode_seqs=64, decode_ctx_tokens=64 * 4096)
    brk0 = base.breakdown(b)
    bw = 3.35e12 * 0.8
    # KV: 32 layers x 8 heads x 256 x 2 B per token, moved 1 + 2 x (32 / 8) = 9 times at
    # half the bandwidth; the pair FLOPs at 45% of peak are far below
    kv = 64 * 4096 * 32 * 8 * 256 * 2 * 9 / (bw * 0.5)
    # elementwise: 10 passes x 32 layers x (4096 + 14336) x 2 B per token, 64 tokens
    elem = 10 * 32 * (4096 + 14336) * 2 * 64 / bw
    gpu = brk0.linear_s + elem + kv
    over = 2.5e-3 + 32 * 8e-4 + 64 * 5e-6
    assert m.step_time_s(b) == pytest.approx(gpu + over - 0.8 * min(gpu, over), rel=1e-9)
    assert m.breakdown(b).total_s == pytest.approx(m.step_time_s(b), rel=1e-12)


def test_recurrent_state_traffic_hand_calculation() -> None:
    """Qwen3.5-397B-A17B: 45 Gated DeltaNet layers, each holding per sequence a conv state of
    3 x (2 x 16 x 128 + 64 x 128) BF16 elements and a recurrent state of 64 x 128 x 128 FP32
    elements (4,268,032 B); every step reads and writes it back for each sequence it runs,
    sharded over TP 4, the sequences split over 2 attention-DP ranks, at 80% of the H200's
    4.8 TB/s (the default bandwidth efficiency)."""
    per_layer = 3 * (2 * 16 * 128 + 64 * 128) * 2 + 64 * 128 * 128 * 4
    assert per_layer == 4_268_032
    dep = Deployment.build("qwen3.5-397b-a17b", "h200-sxm", "fp8", "sglang", tp=4,
                           attention_dp=2, ep=8, efficiency=EFF)
    m = RooflineStepModel(dep)
    bw = 4.8e12 * EFF.bandwidth
    decode = StepBatch(decode_seqs=32, decode_ctx_tokens=32 * 4096)
    want = 32 / 2 * 2 * 45 * per_layer / 4 / bw  # ~0.8 ms
    assert m.breakdown(decode).state_s == pytest.approx(want, rel=1e-12)
    # a prefill chunk touches its sequence's state once, whatever its length
    chunk = StepBatch.prefill_chunk(4096, 0)
    assert m.breakdown(chunk).state_s == pytest.approx(1 / 2 * 2 * 45 * per_layer / 4 / bw)
    assert m.step_time_s(decode) == pytest.approx(m.breakdown(decode).total_s, rel=1e-12)
    # the step grows by exactly that over the same model without linear-mixer state
    no_state = dep.model.attention.model_copy(update={"linear_state_bytes_per_layer": 0})
    plain = RooflineStepModel(replace(dep, model=dep.model.model_copy(
        update={"attention": no_state})))
    assert m.step_time_s(decode) - plain.step_time_s(decode) == pytest.approx(want, rel=1e-9)
    # a model without linear mixers has none
    assert _llama8b().breakdown(decode).state_s == 0.0


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 500), ctx=st.integers(1, 30_000))
def test_step_time_monotone_in_batch_and_context(b: int, ctx: int) -> None:
    m = _llama8b()
    t = m.decode_step_time_s(b, ctx)
    assert m.decode_step_time_s(b + 1, ctx) >= t
    assert m.decode_step_time_s(b, ctx + 100) >= t


@settings(max_examples=80, deadline=None)
@given(
    model=st.sampled_from(["llama-3.1-8b", "gpt-oss-120b", "deepseek-v3", "qwen3.5-397b-a17b"]),
    tp=st.sampled_from([1, 2, 8]),
    pre=st.integers(0, 8192),
    cached=st.integers(0, 50_000),
    seqs=st.integers(0, 512),
    ctx=st.integers(1, 8000),
)
def test_fast_step_time_equals_breakdown(
    model: str, tp: int, pre: int, cached: int, seqs: int, ctx: int
) -> None:
    """The simulator's fast path gives the same time as the itemized breakdown."""
    m = RooflineStepModel(Deployment.build(model, "h200-sxm", "fp8", tp=tp, efficiency=EFF))
    b = StepBatch(decode_seqs=seqs, decode_ctx_tokens=seqs * ctx)
    if pre:
        b = b + StepBatch.prefill_chunk(pre, cached)
    assert m.step_time_s(b) == pytest.approx(m.breakdown(b).total_s, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name", sorted(load_catalog().models))
def test_every_catalog_model_has_sane_step_times(name: str) -> None:
    """Every architecture the catalog holds (GQA, MLA, sliding/chunked, linear and Mamba-2
    mixers, hybrid blocks, MoE and LatentMoE) gives finite, positive step times that grow with
    the work: more decode sequences, longer contexts, longer prompts."""
    dep = Deployment.build(name, "b200", "fp8", "trtllm", tp=8)
    m = RooflineStepModel(dep)
    d8 = m.step_time_s(StepBatch(decode_seqs=8, decode_ctx_tokens=8 * 2048))
    d64 = m.step_time_s(StepBatch(decode_seqs=64, decode_ctx_tokens=64 * 2048))
    d64_long = m.step_time_s(StepBatch(decode_seqs=64, decode_ctx_tokens=64 * 32768))
    p1k = m.step_time_s(StepBatch.prefill_chunk(1024, 0))
    p8k = m.step_time_s(StepBatch.prefill_chunk(8192, 0))
    for t in (d8, d64, d64_long, p1k, p8k):
        assert math.isfinite(t) and t > 0
    assert d8 <= d64 <= d64_long
    assert p1k < p8k
