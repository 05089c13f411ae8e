"""Parameter counts from a model's architecture (`ModelSpec`): total, active per token, per layer.

Pure functions of the catalog record; no I/O. Counts are of the language model as served:
embedding, decoder layers, final norm and LM head. Not counted: multi-token-prediction (MTP)
layers (see `mtp_param_count`), vision/audio encoders of multimodal checkpoints (a few hundred
million parameters, under 0.2% of the models in the catalog), rotary tables and other buffers,
and per-expert routing correction biases (DeepSeek's `e_score_correction_bias`, 256 per layer).

Notation: h = hidden size, V = vocabulary, H = attention heads, K = KV heads, d = head dim,
d_v = value head dim, E = routed experts, k = experts per token, f = FFN width.
Gated (SwiGLU) FFNs have three h x f matrices (gate, up, down); plain FFNs two.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetplan.catalog.schema import AttentionSpec, ModelSpec
from fleetplan.catalog.shapes import gated_deltanet_params, gated_deltanet_state_bytes

__all__ = [
    "LayerParams",
    "active_param_count",
    "attention_params_per_layer",
    "layer_param_breakdown",
    "linear_attention_params_per_layer",
    "linear_attention_state_bytes_per_layer",
    "mtp_param_count",
    "param_count",
]


@dataclass(frozen=True)
class LayerParams:
    """Parameter counts of a model's pieces.

    `embedding` is the input table (V*h); `lm_head` is 0 when tied to it.
    `attention_per_layer` is a softmax-attention layer (full or sliding window),
    `linear_attention_per_layer` a linear-attention (Gated DeltaNet) layer.
    `dense_ffn_per_layer` is the FFN of a dense layer, `expert_ffn_per_expert` one routed expert,
    `shared_ffn_per_layer` all shared experts of an MoE layer together, `router_per_layer` the
    gate. `norms_per_layer` is one RMSNorm weight vector; a layer has one before its mixer and
    one before its FFN (two in a standard decoder layer, one in a hybrid model's single-purpose
    block);
    `final_norm` the one before the LM head. Layer counts say how many of each there are.
    """

    embedding: int
    lm_head: int
    attention_per_layer: int
    linear_attention_per_layer: int
    dense_ffn_per_layer: int
    expert_ffn_per_expert: int
    shared_ffn_per_layer: int
    router_per_layer: int
    latent_proj_per_layer: int
    norms_per_layer: int
    final_norm: int
    softmax_attention_layers: int
    linear_attention_layers: int
    dense_layers: int
    moe_layers: int
    num_experts: int
    experts_per_token: int


def _mla_params(h: int, a: AttentionSpec) -> int:
    """Multi-head latent attention (DeepSeek-V2/V3), per layer:

    q:  with q_lora_rank r_q: q_a = h*r_q, q_a_norm = r_q, q_b = r_q*H*(d_nope+d_rope);
        without: q = h*H*(d_nope+d_rope)
    kv: kv_a = h*(r_kv + d_rope) (latent and the shared rope key), kv_a_norm = r_kv,
        kv_b = r_kv*H*(d_nope + d_v)
    o:  H*d_v*h
    DSA indexer (when `index_n_heads` is set; DeepSeek-V3.2, GLM-5): wq_b = r_q*n_i*d_i,
        wk = h*d_i, k_norm (LayerNorm weight+bias) = 2*d_i, weights_proj = h*n_i.
    """
    assert a.kv_lora_rank is not None and a.qk_rope_head_dim is not None  # schema checks
    H = a.num_heads
    d_rope = a.qk_rope_head_dim
    d_nope = a.qk_nope_head_dim if a.qk_nope_head_dim is not None else a.head_dim - d_rope
    d_v = a.v_head_dim if a.v_head_dim is not None else d_nope
    r_kv = a.kv_lora_rank
    d_qk = d_nope + d_rope
    if a.q_lora_rank:
        q = h * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * H * d_qk
    else:
        q = h * H * d_qk
    kv = h * (r_kv + d_rope) + r_kv + r_kv * H * (d_nope + d_v)
    o = H * d_v * h
    indexer = 0
    if a.index_n_heads and a.index_head_dim:
        n_i, d_i = a.index_n_heads, a.index_head_dim
        q_in = a.q_lora_rank or h
        indexer = q_in * n_i * d_i + h * d_i + 2 * d_i + h * n_i
    return q + kv + o + indexer


def attention_params_per_layer(model: ModelSpec) -> int:
    """Parameters of one softmax-attention layer (full or sliding window).

    MHA/GQA: q = h*(H*d) (doubled with an output gate: the gate has the query's shape),
    k = v = h*(K*d), o = (H*d_v)*h, so with d_v = d and no gate
    h*(H*d) + 2*h*(K*d) + (H*d)*h. Biases (`attention.bias`) add H*d + 2*K*d + h.
    MLA: see `_mla_params`.
    """
    a = model.attention
    h = model.hidden_size
    if a.kind == "mla":
        return _mla_params(h, a)
    q_width = a.num_heads * a.head_dim
    kv_width = a.num_kv_heads * a.head_dim
    o_width = a.num_heads * (a.v_head_dim or a.head_dim)
    gate = 2 if a.output_gate else 1
    params = h * q_width * gate + 2 * h * kv_width + o_width * h
    if a.bias:
        params += q_width * gate + 2 * kv_width + h
    return params


def _linear_shape(a: AttentionSpec) -> tuple[int, int, int, int, int] | None:
    """(key heads, value heads, key head dim, value head dim, conv kernel) of a Gated DeltaNet
    layer, or None when the catalog entry does not give the shape."""
    n_k, n_v = a.linear_num_key_heads, a.linear_num_value_heads
    d_k, d_v, c = a.linear_key_head_dim, a.linear_value_head_dim, a.linear_conv_kernel
    if n_k is None or n_v is None or d_k is None or d_v is None or c is None:
        return None
    return int(n_k), int(n_v), int(d_k), int(d_v), int(c)


def linear_attention_params_per_layer(a: AttentionSpec, hidden_size: int) -> int:
    """Parameters of one Gated DeltaNet layer (Qwen3-Next / Qwen3.5 `linear_attention`; the
    formula in `fleetplan.catalog.shapes`). Uses the catalog figure `linear_params_per_layer`
    when the shape fields are absent (e.g. Mamba-2 layers, whose figure the converter wrote)."""
    shape = _linear_shape(a)
    if shape is None:
        return a.linear_params_per_layer or 0
    return gated_deltanet_params(hidden_size, *shape)


def linear_attention_state_bytes_per_layer(
    a: AttentionSpec, conv_state_bytes: int = 2, ssm_state_bytes: int = 4
) -> int:
    """Per-sequence recurrent state of one Gated DeltaNet layer, bytes (independent of length;
    `fleetplan.catalog.shapes`): conv state in the model dtype (`conv_state_bytes`, bf16 = 2),
    recurrent state in the SSM state dtype (`ssm_state_bytes`; Qwen3.5 configs set
    `mamba_ssm_dtype: float32` = 4). The catalog figure where the shape fields are absent."""
    shape = _linear_shape(a)
    if shape is None:
        return a.linear_state_bytes_per_layer or 0
    return gated_deltanet_state_bytes(*shape, conv_state_bytes, ssm_state_bytes)


def _ffn(h: int, f: int, gated: bool, bias: bool) -> int:
    """FFN of width f: gated 3*h*f (+ biases 2*f + h), plain 2*h*f (+ f + h)."""
    if gated:
        return 3 * h * f + ((2 * f + h) if bias else 0)
    return 2 * h * f + ((f + h) if bias else 0)


def layer_param_breakdown(model: ModelSpec) -> LayerParams:
    """Split a model into its pieces; see `LayerParams`. Formulas:

    embedding = V*h, lm_head = V*h unless tied; norms = h per mixer and per FFN (2*h per
    standard decoder layer), final norm = h;
    dense FFN = 3*h*f (gated); routed expert = 3*h*f_e (3*l*f_e on a LatentMoE latent width l,
    plus 2*h*l projections per MoE layer); shared experts = n_s*3*h*f_s; router = h*E (+ E with
    biases). Plain (non-gated) FFNs have 2 matrices instead of 3.
    """
    h = model.hidden_size
    a = model.attention
    gated = model.ffn_kind == "gated"
    moe = model.moe
    embedding = model.vocab_size * h
    if moe is None:
        moe_layers, expert, shared, router, latent, E, k = 0, 0, 0, 0, 0, 0, 0
    else:
        moe_layers = model.moe_layer_count
        # LatentMoE: experts of width f_e on the latent width l, plus the h->l and l->h
        # projections of the layer (2*h*l)
        expert = _ffn(moe.latent_size or h, moe.expert_intermediate_size, gated, moe.bias)
        latent = 2 * h * moe.latent_size if moe.latent_size else 0
        shared_width = moe.shared_intermediate_size or moe.expert_intermediate_size
        shared = moe.num_shared_experts * _ffn(h, shared_width, gated, moe.bias)
        router = h * moe.num_experts + (moe.num_experts if moe.bias else 0)
        E, k = moe.num_experts, moe.experts_per_token
    return LayerParams(
        embedding=embedding,
        lm_head=0 if model.tie_word_embeddings else embedding,
        attention_per_layer=attention_params_per_layer(model),
        linear_attention_per_layer=linear_attention_params_per_layer(a, h),
        dense_ffn_per_layer=_ffn(h, model.intermediate_size, gated, False),
        expert_ffn_per_expert=expert,
        shared_ffn_per_layer=shared,
        router_per_layer=router,
        latent_proj_per_layer=latent,
        norms_per_layer=h,
        final_norm=h,
        softmax_attention_layers=a.full_layers + a.sliding_layers,
        linear_attention_layers=a.linear_layers,
        dense_layers=model.ffn_layer_count - moe_layers,
        moe_layers=moe_layers,
        num_experts=E,
        experts_per_token=k,
    )


def _count(b: LayerParams, experts: int) -> int:
    moe_layer = (experts * b.expert_ffn_per_expert + b.shared_ffn_per_layer + b.router_per_layer
                 + b.latent_proj_per_layer)
    return (
        b.embedding
        + b.lm_head
        + b.final_norm
        + b.softmax_attention_layers * b.attention_per_layer
        + b.linear_attention_layers * b.linear_attention_per_layer
        + (b.softmax_attention_layers + b.linear_attention_layers + b.dense_layers
           + b.moe_layers) * b.norms_per_layer
        + b.dense_layers * b.dense_ffn_per_layer
        + b.moe_layers * moe_layer
    )


def param_count(model: ModelSpec) -> int:
    """Total parameters of the language model, MTP layers excluded:

    embedding + lm_head + final norm + sum over layers of (attention + norms + FFN), where an
    MoE layer's FFN is E routed experts + shared experts + router.
    """
    b = layer_param_breakdown(model)
    return _count(b, b.num_experts)


def active_param_count(model: ModelSpec) -> int:
    """Parameters used per token: as `param_count` with k of the E routed experts per MoE layer
    (shared experts, router, attention, embedding and LM head all count). Dense models: total.

    Conventions differ: DeepSeek-V3 (37B) and Mixtral (12.9B) count the embedding table and the
    LM head, as this does; gpt-oss (5.1B) leaves the embedding table out.
    """
    b = layer_param_breakdown(model)
    return _count(b, b.experts_per_token)


def mtp_param_count(model: ModelSpec) -> int:
    """Parameters of the multi-token-prediction layers (`mtp_layers`), not in `param_count`.

    Per MTP layer (DeepSeek-V3 style): one decoder layer shaped like the model's last layer
    (MoE when the model is), eh_proj = 2h*h, and three norms (enorm, hnorm, final) = 3h.
    The embedding and LM head are shared with the main model and not counted again.
    """
    if model.mtp_layers == 0:
        return 0
    b = layer_param_breakdown(model)
    h = model.hidden_size
    if b.moe_layers:
        ffn = b.num_experts * b.expert_ffn_per_expert + b.shared_ffn_per_layer
        ffn += b.router_per_layer
    else:
        ffn = b.dense_ffn_per_layer
    layer = b.attention_per_layer + 2 * b.norms_per_layer + ffn
    return model.mtp_layers * (layer + 2 * h * h + 3 * h)
