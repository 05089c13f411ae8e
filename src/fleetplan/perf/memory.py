"""Memory: weight bytes, KV-cache bytes per token, the KV pool left on each GPU, and how many
sequences fit at a context length.

Formulas (bytes; `b` = bytes per element of the KV dtype):
- GQA/MHA KV per token per layer = 2 (K and V) x kv_heads x head_dim x b.
  Llama-3.1-70B at BF16: 80 layers x 8 x 128 x 2 x 2 B = 327,680 B per token.
- MLA KV per token per layer = (kv_lora_rank + qk_rope_head_dim) x b (the compressed latent and
  the decoupled RoPE key; DeepSeek-V3: (512 + 64) x 61 layers x b).
- Sliding-window layers hold at most `sliding_window` tokens per sequence; linear-attention
  layers a fixed state per sequence.
- Per GPU under tensor parallelism: GQA/MHA shard KV heads (a GPU holds at least one head, so
  heads are replicated when TP > kv_heads); MLA's latent is replicated on every TP rank.
  Pipeline parallelism splits the layers.
- Weights: every parameter at the format's bytes per weight, except the embedding and LM head,
  which quantized checkpoints keep at 16 bits.
- KV pool per GPU = memory x gpu_memory_utilization - weights/GPU - activations - runtime
  overhead (CUDA graphs, NCCL buffers, allocator slack).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fleetplan.catalog import ModelSpec
from fleetplan.perf.deployment import Deployment
from fleetplan.perf.params import param_count

__all__ = [
    "RUNTIME_OVERHEAD_BYTES",
    "MemoryBudget",
    "activation_bytes_per_gpu",
    "embedding_params",
    "kv_bytes_for_sequence_per_gpu",
    "kv_bytes_per_token",
    "kv_bytes_per_token_per_gpu",
    "max_concurrent_sequences",
    "memory_budget",
    "weights_bytes",
]

#: Non-torch memory and CUDA graphs per GPU. vLLM start-up logs on H100 report ~1-3 GiB for CUDA
#: graph capture plus ~0.5-1 GiB non-torch (NCCL, cuBLAS workspaces). Source: vLLM
#: `worker/gpu_worker.py` memory profiling log lines, 2025.
RUNTIME_OVERHEAD_BYTES = 3.0e9


def embedding_params(model: ModelSpec) -> int:
    """Input embedding plus LM head (one matrix when tied)."""
    return model.vocab_size * model.hidden_size * (1 if model.tie_word_embeddings else 2)


def _kv_per_layer_token(model: ModelSpec, kv_bytes: float, tp: int) -> float:
    a = model.attention
    if a.kind == "mla":
        assert a.kv_lora_rank is not None and a.qk_rope_head_dim is not None
        return (a.kv_lora_rank + a.qk_rope_head_dim) * kv_bytes  # replicated across TP
    heads = max(1, math.ceil(a.num_kv_heads / tp))
    v_dim = a.v_head_dim or a.head_dim
    return heads * (a.head_dim + v_dim) * kv_bytes  # K and V


def kv_bytes_per_token(model: ModelSpec, kv_bytes: float) -> float:
    """KV bytes one token adds across the whole model (full + sliding layers), unsharded."""
    a = model.attention
    return (a.full_layers + a.sliding_layers) * _kv_per_layer_token(model, kv_bytes, 1)


def kv_bytes_per_token_per_gpu(dep: Deployment) -> float:
    """KV bytes one token of context costs on each GPU of the replica (growing layers only)."""
    a = dep.model.attention
    per_layer = _kv_per_layer_token(dep.model, dep.kv_bytes_per_element, dep.tp)
    return (a.full_layers + a.sliding_layers) * per_layer / dep.pp


def kv_bytes_for_sequence_per_gpu(dep: Deployment, context_tokens: int) -> float:
    """KV bytes a sequence of `context_tokens` holds on each GPU, sliding windows and linear
    state included."""
    a = dep.model.attention
    per_layer = _kv_per_layer_token(dep.model, dep.kv_bytes_per_element, dep.tp)
    window = min(context_tokens, a.sliding_window or 0)
    linear = a.linear_layers * (a.linear_state_bytes_per_layer or 0) / dep.tp
    return (
        a.full_layers * context_tokens * per_layer + a.sliding_layers * window * per_layer + linear
    ) / dep.pp


def weights_bytes(model: ModelSpec, weight_bytes: float) -> float:
    """Bytes of all weights at `weight_bytes` per parameter (embeddings kept at 2 bytes)."""
    emb = embedding_params(model)
    return (param_count(model) - emb) * weight_bytes + emb * 2.0


def activation_bytes_per_gpu(dep: Deployment, batched_tokens: int) -> float:
    """Peak activation memory of the largest step (`max_num_batched_tokens` tokens), per GPU:
    the residual stream and attention projections (~4 x hidden) and the FFN intermediate
    (2 x ffn / TP for gated FFNs), at 2 bytes, plus fp32 logits for one token per sequence."""
    m = dep.model
    ffn = m.moe.expert_intermediate_size * m.moe.experts_per_token if m.moe else m.intermediate_size
    per_token = (4 * m.hidden_size + 2 * ffn / dep.tp) * 2.0
    logits = 256 * m.vocab_size * 4.0 / dep.tp
    return batched_tokens * per_token + logits


@dataclass(frozen=True, slots=True)
class MemoryBudget:
    """Where one GPU's memory goes, in bytes."""

    usable_bytes: float
    weights_bytes: float
    activation_bytes: float
    overhead_bytes: float
    kv_pool_bytes: float
    kv_bytes_per_token: float

    @property
    def fits(self) -> bool:
        return self.kv_pool_bytes > 0

    @property
    def kv_capacity_tokens(self) -> int:
        """Context tokens the KV pool holds across all sequences (full-attention accounting)."""
        if self.kv_pool_bytes <= 0 or self.kv_bytes_per_token <= 0:
            return 0
        return int(self.kv_pool_bytes // self.kv_bytes_per_token)


def memory_budget(dep: Deployment, batched_tokens: int | None = None) -> MemoryBudget:
    """Split one GPU's memory into weights, activations, overhead and the KV pool. The engine's
    memory fraction is of the device's total (vLLM, SGLang: the usable memory, of which the
    pool is what weights, activations and overhead leave) or, where the catalog says so
    (`Engine.memory_fraction_of` "free": TensorRT-LLM's `free_gpu_memory_fraction`), of what
    they leave free (the whole device is usable; the pool is that fraction of the rest)."""
    eng = dep.engine
    total = dep.gpu.memory_bytes.value
    frac = eng.gpu_memory_utilization.value
    w = weights_bytes(dep.model, dep.quant.weight_bytes) / dep.gpus
    tokens = int(batched_tokens or eng.max_num_batched_tokens.value)
    act = activation_bytes_per_gpu(dep, tokens)
    if eng.memory_fraction_of == "free":  # negative where the weights alone do not fit
        usable = total
        pool = frac * (total - w - act - RUNTIME_OVERHEAD_BYTES)
    else:
        usable = total * frac
        pool = usable - w - act - RUNTIME_OVERHEAD_BYTES
    return MemoryBudget(
        usable, w, act, RUNTIME_OVERHEAD_BYTES, pool, kv_bytes_per_token_per_gpu(dep)
    )


def max_concurrent_sequences(dep: Deployment, context_tokens: int) -> int:
    """Sequences of `context_tokens` whose KV fits in the pool at once."""
    budget = memory_budget(dep)
    if budget.kv_pool_bytes <= 0:
        return 0
    return int(budget.kv_pool_bytes // kv_bytes_for_sequence_per_gpu(dep, context_tokens))
