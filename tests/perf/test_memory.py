"""Memory and KV formulas against hand calculations."""

from __future__ import annotations

import pytest

from fleetplan.catalog import get_model
from fleetplan.perf import (
    Deployment,
    kv_bytes_for_sequence_per_gpu,
    kv_bytes_per_token,
    kv_bytes_per_token_per_gpu,
    max_concurrent_sequences,
    memory_budget,
    weights_bytes,
)
from fleetplan.perf.memory import RUNTIME_OVERHEAD_BYTES, activation_bytes_per_gpu
from fleetplan.perf.params import param_count


def test_llama70b_kv_per_token_bf16() -> None:
    # 80 layers x 8 KV heads x 128 head dim x 2 (K and V) x 2 bytes
    assert kv_bytes_per_token(get_model("llama-3.1-70b"), 2.0) == 80 * 8 * 128 * 2 * 2 == 327_680


def test_llama70b_kv_fp8_halves() -> None:
    assert kv_bytes_per_token(get_model("llama-3.1-70b"), 1.0) == 163_840


def test_deepseek_mla_kv_per_token() -> None:
    # MLA caches the 512-wide latent and the 64-wide RoPE key per layer, 61 layers
    assert kv_bytes_per_token(get_model("deepseek-v3"), 2.0) == (512 + 64) * 61 * 2


def test_llama70b_weights_bf16_about_141_gb() -> None:
    w = weights_bytes(get_model("llama-3.1-70b"), 2.0)
    assert w == pytest.approx(141.1e9, rel=0.005)


def test_weights_fp8_keep_embeddings_16bit() -> None:
    m = get_model("llama-3.1-70b")
    emb = 128_256 * 8192 * 2  # input embedding + untied LM head
    assert weights_bytes(m, 1.0) == pytest.approx((param_count(m) - emb) * 1 + emb * 2)


def test_kv_sharded_by_tp_and_replicated_past_kv_heads() -> None:
    tp4 = Deployment.build("llama-3.1-70b", "h100-sxm", "bf16", tp=4)
    assert kv_bytes_per_token_per_gpu(tp4) == 327_680 / 4
    tp16 = Deployment(tp4.model, tp4.gpu, tp4.quant, tp4.engine, tp=16)
    # 8 KV heads over 16 GPUs: each GPU still holds one head
    assert kv_bytes_per_token_per_gpu(tp16) == 80 * 1 * 128 * 2 * 2


def test_mla_latent_replicated_across_tp() -> None:
    dep = Deployment.build("deepseek-v3", "h200-sxm", "fp8", tp=8)
    assert kv_bytes_per_token_per_gpu(dep) == (512 + 64) * 61 * 1


def test_memory_budget_hand_calculation() -> None:
    dep = Deployment.build("llama-3.1-70b", "h100-sxm", "bf16", tp=4)
    b = memory_budget(dep)
    total = 81_559 * 2**20  # what an H100 80GB HBM3 reports (nvidia-smi MiB), not 80e9
    assert b.usable_bytes == pytest.approx(total * 0.9)
    assert b.weights_bytes == pytest.approx(weights_bytes(dep.model, 2.0) / 4)
    act = activation_bytes_per_gpu(dep, 8192)
    assert b.kv_pool_bytes == pytest.approx(total * 0.9 - b.weights_bytes - act
                                            - RUNTIME_OVERHEAD_BYTES)
    assert b.kv_capacity_tokens == int(b.kv_pool_bytes // 81_920)
    n = max_concurrent_sequences(dep, 4096)
    assert n == int(b.kv_pool_bytes // (81_920 * 4096))


def test_tensorrt_llm_fraction_is_of_the_memory_weights_leave_free() -> None:
    """TensorRT-LLM's `free_gpu_memory_fraction` (catalog `memory_fraction_of: free`) takes
    0.9 of what weights, activations and overhead leave, where vLLM takes 0.9 of the device
    and gives the pool what is left of that: by hand on Llama-3.1-70B BF16, TP 4, H100. A
    layout whose weights leave nothing free does not fit either way."""
    trt = Deployment.build("llama-3.1-70b", "h100-sxm", "bf16", "trtllm", tp=4)
    assert trt.engine.memory_fraction_of == "free"
    b = memory_budget(trt)
    total = 81_559 * 2**20
    act = activation_bytes_per_gpu(trt, 8192)
    free = total - weights_bytes(trt.model, 2.0) / 4 - act - RUNTIME_OVERHEAD_BYTES
    assert b.usable_bytes == pytest.approx(total)
    assert b.kv_pool_bytes == pytest.approx(0.9 * free)
    vllm = memory_budget(Deployment.build("llama-3.1-70b", "h100-sxm", "bf16", "vllm", tp=4))
    assert vllm.kv_pool_bytes == pytest.approx(total * 0.9 - (total - free))
    assert b.kv_pool_bytes > vllm.kv_pool_bytes
    assert not memory_budget(Deployment.build("llama-3.1-405b", "h100-sxm", "bf16",
                                              "trtllm", tp=1)).fits


def test_sliding_window_caps_sequence_kv() -> None:
    dep = Deployment.build("gpt-oss-120b", "h100-sxm", "bf16", tp=1)
    a = dep.model.attention
    assert a.sliding_layers and a.sliding_window
    per_layer_token = a.num_kv_heads * a.head_dim * 2 * 2
    ctx = 10 * a.sliding_window
    want = (a.full_layers * ctx + a.sliding_layers * a.sliding_window) * per_layer_token
    assert kv_bytes_for_sequence_per_gpu(dep, ctx) == pytest.approx(want)


def test_model_that_does_not_fit() -> None:
    dep = Deployment.build("llama-3.1-405b", "h100-sxm", "bf16", tp=1)
    assert not memory_budget(dep).fits
    assert max_concurrent_sequences(dep, 1000) == 0


def test_hybrid_mamba_model_sequence_memory_by_hand() -> None:
    """Nemotron 3 Nano: only its 6 attention layers grow with the context (2 KV heads x 128,
    K and V); its 23 Mamba-2 layers hold a fixed state per sequence (conv state in BF16, SSM
    state in FP32: 2,134,016 bytes each), sharded over TP like the heads."""
    m = get_model("nemotron-3-nano-30b-a3b")
    assert kv_bytes_per_token(m, 2.0) == 6 * 2 * 128 * 2 * 2.0
    dep = Deployment.build(m.name, "h100-sxm", "bf16", "vllm", tp=2)
    per_token_gpu = 6 * 1 * 128 * 2 * dep.kv_bytes_per_element  # one KV head per GPU at TP2
    state_gpu = 23 * 2_134_016 / 2
    for ctx in (1, 4096, 100_000):
        want = ctx * per_token_gpu + state_gpu
        assert kv_bytes_for_sequence_per_gpu(dep, ctx) == pytest.approx(want, rel=1e-12)
