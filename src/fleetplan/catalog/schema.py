"""Typed records of the catalog: GPUs, models, engines, quantization formats.

The catalog is data (YAML under `catalog/data/`); this module only says its shape and checks it.
Every figure carries a `source` and an `as_of` date, either on the figure itself (`Fig`) or, for
records read from one published document (a model's `config.json`), on the record.
All quantities are SI: bytes, bytes/s, FLOP/s, watts, seconds; prices in USD.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "GPU",
    "AttentionSpec",
    "Catalog",
    "Engine",
    "EngineFeature",
    "Fig",
    "Interconnect",
    "MoESpec",
    "ModelSpec",
    "Quant",
]

Dtype = Literal["bf16", "fp16", "fp8", "int8", "int4", "fp4"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Fig(_Frozen):
    """One sourced figure: its value (SI units), where it was read, and when."""

    value: float
    source: str = Field(min_length=3)
    as_of: dt.date
    note: str | None = None


class Interconnect(_Frozen):
    """Scale-up fabric of a GPU: kind (NVLink 4, PCIe Gen5, xGMI ...) and per-GPU bandwidth.

    `bytes_per_s` is the unidirectional per-GPU bandwidth used by collective formulas.
    `domain_gpus` is how many GPUs share that fabric (8 for HGX, 72 for GB200 NVL72).
    `scale_out_bytes_per_s` is the unidirectional per-GPU bandwidth of the scale-out network
    between such domains (one NIC per GPU in DGX/HGX reference systems); without it, layouts
    whose tensor parallelism spans domains are refused. `scale_out_latency_s` is the time of a
    small-message collective between domains (added to every collective that crosses them).
    """

    kind: str
    bytes_per_s: Fig
    domain_gpus: int = Field(ge=1)
    scale_out_bytes_per_s: Fig | None = None
    scale_out_latency_s: Fig | None = None


class GPU(_Frozen):
    name: str
    display_name: str
    vendor: Literal["nvidia", "amd", "intel"]
    aliases: list[str] = Field(default_factory=list)
    memory_bytes: Fig
    hbm_bytes_per_s: Fig
    # Dense (non-sparse) peak FLOP/s per compute dtype; a dtype absent here is not native.
    flops_per_s: dict[Dtype, Fig]
    interconnect: Interconnect
    tdp_w: Fig
    price_usd_per_hour: Fig

    def native(self, dtype: str) -> bool:
        return dtype in self.flops_per_s


class AttentionSpec(_Frozen):
    """Attention layout. `kind` mha/gqa use `num_kv_heads` x `head_dim`; mla caches the
    compressed latent (`kv_lora_rank` + `qk_rope_head_dim` per token per layer).

    Layers are split by type: `full_layers` keep KV for the whole context, `sliding_layers` keep
    at most `sliding_window` tokens, `linear_layers` (Gated DeltaNet, Mamba-style) keep a fixed
    state of `linear_state_bytes_per_layer` per sequence, `mixerless_layers` have no token
    mixer at all (the FFN-only blocks of hybrid models such as Nemotron-H). They sum to the
    model's layer count.
    """

    kind: Literal["mha", "gqa", "mla"]
    num_heads: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    v_head_dim: int | None = None
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    qk_nope_head_dim: int | None = None
    full_layers: int = Field(ge=0)
    sliding_layers: int = Field(default=0, ge=0)
    sliding_window: int | None = None
    linear_layers: int = Field(default=0, ge=0)
    mixerless_layers: int = Field(default=0, ge=0)
    linear_state_bytes_per_layer: int | None = None
    linear_params_per_layer: int | None = None
    # Optional detail (added with the full catalog; all default to "absent"):
    # q_proj also emits a per-head sigmoid gate on the attention output (Qwen3-Next, Qwen3.5).
    output_gate: bool = False
    # q/k/v/o projections carry biases (gpt-oss).
    bias: bool = False
    # DeepSeek Sparse Attention lightning indexer (DeepSeek-V3.2, GLM-5): heads, head dim, and
    # how many past tokens each query attends to.
    index_n_heads: int | None = None
    index_head_dim: int | None = None
    index_topk: int | None = None
    # Linear-attention (Gated DeltaNet) layer shape, from which the two figures above derive.
    linear_num_key_heads: int | None = None
    linear_num_value_heads: int | None = None
    linear_key_head_dim: int | None = None
    linear_value_head_dim: int | None = None
    linear_conv_kernel: int | None = None

    @model_validator(mode="after")
    def _check(self) -> AttentionSpec:
        if self.kind == "mla" and (self.kv_lora_rank is None or self.qk_rope_head_dim is None):
            raise ValueError("mla attention needs kv_lora_rank and qk_rope_head_dim")
        if self.sliding_layers and not self.sliding_window:
            raise ValueError("sliding_layers > 0 needs sliding_window")
        if self.linear_layers and self.linear_state_bytes_per_layer is None:
            raise ValueError("linear_layers > 0 needs linear_state_bytes_per_layer")
        return self


class MoESpec(_Frozen):
    """Mixture of experts: routed experts (total / active per token), shared experts, the
    expert FFN width, and which layers are MoE (`dense_layers` leading layers stay dense)."""

    num_experts: int = Field(ge=1)
    experts_per_token: int = Field(ge=1)
    num_shared_experts: int = Field(default=0, ge=0)
    expert_intermediate_size: int = Field(ge=1)
    # Width of each shared expert (default: the routed expert width).
    shared_intermediate_size: int | None = None
    dense_layers: int = Field(default=0, ge=0)
    bias: bool = False  # expert projections and router carry biases (gpt-oss)
    # LatentMoE (Nemotron 3 Super/Ultra): routed experts work in a smaller latent width; each
    # MoE layer projects hidden -> latent before them and back after. None: hidden width.
    latent_size: int | None = Field(default=None, ge=1)


class ModelSpec(_Frozen):
    """A model's architecture, read from its published `config.json` (`source`, `as_of`)."""

    name: str
    hf_id: str
    aliases: list[str] = Field(default_factory=list)
    family: str
    num_layers: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    intermediate_size: int = Field(ge=1)  # dense FFN width (dense layers of MoE models too)
    vocab_size: int = Field(ge=1)
    tie_word_embeddings: bool = False
    max_context_tokens: int = Field(ge=1)
    native_dtype: Dtype = "bf16"
    ffn_kind: Literal["gated", "plain"] = "gated"  # gated = SwiGLU (3 matrices), plain = 2
    attention: AttentionSpec
    moe: MoESpec | None = None
    mtp_layers: int = 0  # multi-token-prediction heads (not counted in the main params)
    # Layers that carry an FFN (dense or MoE); None: every layer. Hybrid models whose blocks
    # hold either a mixer or an FFN (Nemotron-H: Mamba-2, attention, MoE blocks) set it.
    ffn_layers: int | None = Field(default=None, ge=0)
    published_params: Fig | None = None
    published_active_params: Fig | None = None  # MoE: parameters used per token, as published
    source: str = Field(min_length=3)
    as_of: dt.date
    note: str | None = None

    @model_validator(mode="after")
    def _layers_add_up(self) -> ModelSpec:
        a = self.attention
        total = a.full_layers + a.sliding_layers + a.linear_layers + a.mixerless_layers
        if total != self.num_layers:
            raise ValueError(
                f"attention layers ({a.full_layers} full + {a.sliding_layers} sliding + "
                f"{a.linear_layers} linear + {a.mixerless_layers} without a mixer = {total}) "
                f"!= num_layers {self.num_layers}"
            )
        ffn = self.num_layers if self.ffn_layers is None else self.ffn_layers
        if ffn > self.num_layers:
            raise ValueError(f"ffn_layers {ffn} > num_layers {self.num_layers}")
        if self.moe is not None and self.moe.dense_layers > ffn:
            raise ValueError(f"moe.dense_layers {self.moe.dense_layers} > layers with an FFN {ffn}")
        return self

    @property
    def ffn_layer_count(self) -> int:
        """Layers with an FFN (dense or MoE)."""
        return self.num_layers if self.ffn_layers is None else self.ffn_layers

    @property
    def moe_layer_count(self) -> int:
        """Layers whose FFN is a mixture of experts (0 for dense models)."""
        return 0 if self.moe is None else self.ffn_layer_count - self.moe.dense_layers

    @property
    def mixer_layer_count(self) -> int:
        """Layers with a token mixer (softmax or linear attention)."""
        return self.num_layers - self.attention.mixerless_layers


class EngineFeature(_Frozen):
    supported: bool
    source: str = Field(min_length=3)
    as_of: dt.date
    note: str | None = None


EngineFeatureName = Literal[
    "paged_kv",
    "continuous_batching",
    "chunked_prefill",
    "prefix_caching",
    "speculative_decoding",
    "multi_lora",
    "tensor_parallel",
    "pipeline_parallel",
    "expert_parallel",
    "disaggregated_prefill_decode",
]


class Engine(_Frozen):
    """A serving engine: its features, quantizations, and scheduler defaults (from
    `ENGINES.md`-style sourced facts)."""

    name: str
    display_name: str
    aliases: list[str] = Field(default_factory=list)
    features: dict[EngineFeatureName, EngineFeature]
    quantizations: list[str]
    gpu_vendors: list[Literal["nvidia", "amd", "intel"]]
    kv_block_tokens: Fig
    max_num_seqs: Fig
    max_num_batched_tokens: Fig
    gpu_memory_utilization: Fig
    # what `gpu_memory_utilization` is a fraction of: the device's total memory (vLLM
    # `gpu_memory_utilization`, SGLang `mem_fraction_static`) or the memory weights and
    # activations leave free (TensorRT-LLM `free_gpu_memory_fraction`)
    memory_fraction_of: Literal["total", "free"] = "total"
    preemption: Literal["recompute", "none", "retract"]
    note: str | None = None  # how the defaults above are to be read (units, formulas, caveats)


class Quant(_Frozen):
    """A quantization format: bytes per weight / activation / KV element, the dtype it computes
    in (which decides native support on a GPU), and its publicly reported quality cost."""

    name: str
    display_name: str
    aliases: list[str] = Field(default_factory=list)
    weight_bytes: float = Field(gt=0)
    activation_bytes: float = Field(gt=0)
    kv_bytes: float = Field(gt=0)
    compute_dtype: Dtype
    weight_only: bool = False
    quality_cost: Fig  # typical accuracy drop, fraction (0.01 = 1 point); source says where
    source: str = Field(min_length=3)
    as_of: dt.date
    note: str | None = None  # what the byte counts include (scales, zero points), caveats


class Catalog(_Frozen):
    gpus: dict[str, GPU]
    models: dict[str, ModelSpec]
    engines: dict[str, Engine]
    quants: dict[str, Quant]
