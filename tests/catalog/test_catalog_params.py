"""Parameter counts from architecture: hand calculations and published totals."""

from __future__ import annotations

import pytest

from fleetplan.catalog import get_model, load_catalog
from fleetplan.perf.params import (
    active_param_count,
    attention_params_per_layer,
    layer_param_breakdown,
    linear_attention_params_per_layer,
    linear_attention_state_bytes_per_layer,
    mtp_param_count,
    param_count,
)

MODELS = sorted(load_catalog().models)


@pytest.mark.parametrize("name", MODELS)
def test_total_within_2pct_of_published(name: str) -> None:
    m = load_catalog().models[name]
    assert m.published_params is not None, f"{name}: no published_params"
    assert param_count(m) == pytest.approx(m.published_params.value, rel=0.02)


@pytest.mark.parametrize("name", MODELS)
def test_active_never_exceeds_total(name: str) -> None:
    m = load_catalog().models[name]
    active, total = active_param_count(m), param_count(m)
    assert 0 < active <= total
    if m.moe is None:
        assert active == total


def test_llama_3_1_70b_by_hand() -> None:
    h, f, V, L = 8192, 28672, 128256, 80
    attention = h * (64 * 128) + 2 * h * (8 * 128) + (64 * 128) * h  # q, k+v, o
    per_layer = attention + 3 * h * f + 2 * h  # SwiGLU FFN, two RMSNorms
    total = 2 * V * h + L * per_layer + h  # embedding + untied head, final norm
    m = get_model("llama-3.1-70b")
    assert attention_params_per_layer(m) == attention == 150_994_944
    assert param_count(m) == total == 70_553_706_496  # ≈ 70.55e9


def test_llama_3_1_8b_by_hand() -> None:
    h, f, V, L = 4096, 14336, 128256, 32
    per_layer = h * 4096 + 2 * h * 1024 + 4096 * h + 3 * h * f + 2 * h
    assert param_count(get_model("llama-3.1-8b")) == 2 * V * h + L * per_layer + h
    assert param_count(get_model("llama-3.1-8b")) == pytest.approx(8.03e9, rel=1e-3)


def test_deepseek_v3_mla_and_moe_by_hand() -> None:
    m = get_model("deepseek-v3")
    h, H = 7168, 128
    q = h * 1536 + 1536 + 1536 * H * (128 + 64)  # q_a, q_a_norm, q_b
    kv = h * (512 + 64) + 512 + 512 * H * (128 + 128)  # kv_a (latent + rope key), norm, kv_b
    o = H * 128 * h
    assert attention_params_per_layer(m) == q + kv + o
    b = layer_param_breakdown(m)
    assert b.expert_ffn_per_expert == 3 * h * 2048
    assert b.shared_ffn_per_layer == 3 * h * 2048
    assert b.router_per_layer == h * 256
    assert (b.dense_layers, b.moe_layers) == (3, 58)
    assert param_count(m) == pytest.approx(671e9, rel=0.002)
    assert active_param_count(m) == pytest.approx(37e9, rel=0.02)
    # The MTP layer is not in the total; DeepSeek publishes 685B with it (and its own
    # embedding/head copies, ~1.9B, which mtp_param_count does not count twice).
    assert mtp_param_count(m) == pytest.approx(685e9 - 671e9 - 2 * 129280 * h, rel=0.05)


def test_dense_model_has_no_mtp() -> None:
    assert mtp_param_count(get_model("llama-3.1-8b")) == 0


def test_gpt_oss_active_excluding_embedding_matches_model_card() -> None:
    m = get_model("gpt-oss-120b")
    b = layer_param_breakdown(m)
    assert m.attention.sliding_layers == 18 and m.attention.sliding_window == 128
    # OpenAI counts active parameters without the embedding table (5.13B).
    assert active_param_count(m) - b.embedding == pytest.approx(5.13e9, rel=0.01)


def test_qwen3_5_gated_deltanet_by_hand() -> None:
    m = get_model("qwen3.5-397b-a17b")
    a = m.attention
    assert (a.full_layers, a.linear_layers) == (15, 45)
    h, n_k, n_v, d_k, d_v, c = 4096, 16, 64, 128, 128, 4
    key_dim, value_dim = n_k * d_k, n_v * d_v
    params = (
        h * (2 * key_dim + 2 * value_dim)  # in_proj_qkvz
        + h * 2 * n_v  # in_proj_ba
        + (2 * key_dim + value_dim) * c  # depthwise conv
        + 2 * n_v  # dt_bias, A_log
        + d_v  # gated RMSNorm
        + value_dim * h  # out_proj
    )
    state = (c - 1) * (2 * key_dim + value_dim) * 2 + n_v * d_k * d_v * 4  # bf16 conv, fp32 ssm
    assert linear_attention_params_per_layer(a, h) == params == a.linear_params_per_layer
    assert linear_attention_state_bytes_per_layer(a) == state == a.linear_state_bytes_per_layer
    assert state == 4_268_032
    # Full-attention layers have a gated query: q_proj is twice the query width.
    assert attention_params_per_layer(m) == 2 * h * 32 * 256 + 2 * h * 2 * 256 + 32 * 256 * h


def test_glm5_indexer_counted() -> None:
    m = get_model("glm-5")
    assert m.attention.index_n_heads == 32
    assert m.attention.index_head_dim == 128
    with_indexer = attention_params_per_layer(m)
    bare = attention_params_per_layer(
        m.model_copy(update={"attention": m.attention.model_copy(update={"index_n_heads": None})})
    )
    h = 6144
    assert with_indexer - bare == 2048 * 32 * 128 + h * 128 + 2 * 128 + h * 32


def test_tied_embeddings_drop_the_head() -> None:
    m = get_model("llama-3.1-8b")
    tied = m.model_copy(update={"tie_word_embeddings": True})
    assert param_count(m) - param_count(tied) == 128256 * 4096


@pytest.mark.parametrize(
    "name", [n for n in MODELS if load_catalog().models[n].published_active_params is not None]
)
def test_active_matches_published_under_some_convention(name: str) -> None:
    """Publishers count active parameters with or without the embedding table and LM head
    (DeepSeek and Mixtral with both, gpt-oss without the table, MiniMax without either)."""
    m = load_catalog().models[name]
    assert m.published_active_params is not None
    b = layer_param_breakdown(m)
    active = active_param_count(m)
    conventions = [active, active - b.embedding, active - b.embedding - b.lm_head]
    published = m.published_active_params.value
    assert min(abs(c / published - 1) for c in conventions) < 0.05


def test_llama_4_maverick_interleaved_moe_by_hand() -> None:
    """Llama 4 Maverick: MoE on every 2nd layer (128 experts of width 8192 + one shared), dense
    FFN of width 16384 between (`intermediate_size_mlp`); 3 of 4 layers chunked attention."""
    m = get_model("llama-4-maverick")
    h, V, L = 5120, 202048, 48
    attention = h * (40 * 128) + 2 * h * (8 * 128) + (40 * 128) * h
    expert, dense = 3 * h * 8192, 3 * h * 16384
    moe_layer = 128 * expert + expert + h * 128  # routed + shared + router
    total = 2 * V * h + h + L * (attention + 2 * h) + 24 * dense + 24 * moe_layer
    assert m.moe is not None and m.moe.dense_layers == 24 and m.moe.num_shared_experts == 1
    assert (m.attention.sliding_layers, m.attention.sliding_window) == (36, 8192)
    assert param_count(m) == total
    active = total - 24 * 127 * expert
    assert active_param_count(m) == active == pytest.approx(17.2e9, rel=0.01)


def test_nemotron_3_nano_hybrid_blocks_by_hand() -> None:
    """Nemotron 3 Nano: 52 single-purpose blocks (23 Mamba-2, 23 MoE, 6 attention), one norm
    each; Mamba-2 mixer parameters and per-sequence state from the config by hand."""
    m = get_model("nemotron-3-nano-30b-a3b")
    h, V = 2688, 131072
    H, p, G, N, k = 64, 64, 8, 128, 4
    d_inner, conv_dim = H * p, H * p + 2 * G * N
    mamba = (h * (d_inner + conv_dim + H) + conv_dim * k + conv_dim  # in_proj, conv + bias
             + 3 * H + d_inner + d_inner * h)  # dt_bias, A_log, D; gated norm; out_proj
    state = (k - 1) * conv_dim * 2 + H * p * N * 4  # bf16 conv state, FP32 SSM state
    a = m.attention
    assert (a.full_layers, a.linear_layers, a.mixerless_layers, m.ffn_layers) == (6, 23, 23, 23)
    assert linear_attention_params_per_layer(a, h) == mamba
    assert linear_attention_state_bytes_per_layer(a) == state == 2_134_016
    attention = h * 32 * 128 + 2 * h * 2 * 128 + 32 * 128 * h
    expert = 2 * h * 1856  # squared ReLU: up and down, no gate
    moe_layer = 128 * expert + 2 * h * 3712 + h * 128  # routed, shared, router
    total = 2 * V * h + h + 23 * mamba + 6 * attention + 23 * moe_layer + 52 * h
    assert m.ffn_kind == "plain"
    assert param_count(m) == total
    assert active_param_count(m) == total - 23 * 122 * expert == pytest.approx(3.6e9, rel=0.02)


def test_latent_moe_by_hand() -> None:
    """Nemotron 3 Super's LatentMoE: 512 routed experts of width 2688 on a 1024 latent (the
    layer projects 4096 -> 1024 and back), one shared expert at the full width."""
    m = get_model("nemotron-3-super-120b-a12b")
    assert m.moe is not None and m.moe.latent_size == 1024
    b = layer_param_breakdown(m)
    h = 4096
    assert b.expert_ffn_per_expert == 2 * 1024 * 2688
    assert b.latent_proj_per_layer == 2 * h * 1024
    assert b.shared_ffn_per_layer == 2 * h * 5376
    assert (b.moe_layers, b.dense_layers, b.linear_attention_layers) == (40, 0, 40)
