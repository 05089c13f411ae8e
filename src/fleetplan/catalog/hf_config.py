"""A Hugging Face `config.json` as the architecture fields of a catalog `ModelSpec`.

The packaged models.yaml is generated from published configs with this converter
(`tools/hf_config_to_catalog.py`); `model_from_config` builds a model from any config on the fly,
so a private or fine-tuned model can be planned and predicted by pointing `--model` (or a
points file's `model_path`) at its `config.json` or the directory holding it.

What it reads: `text_config` of multimodal wrappers; GQA/MHA (`num_key_value_heads`, `head_dim`
defaulting to hidden/heads); MLA (`kv_lora_rank`, `q_lora_rank`, `qk_rope_head_dim`,
`qk_nope_head_dim`, `v_head_dim`) and the DSA indexer (`index_n_heads`, `index_head_dim`,
`index_topk`); MoE (`n_routed_experts` / `num_local_experts` / `num_experts`,
`num_experts_per_tok` / `experts_per_token`, `n_shared_experts`, `moe_intermediate_size`,
`shared_expert_intermediate_size`, `first_k_dense_replace` / `mlp_only_layers`); layer types
(`layer_types` full / sliding / linear attention with `sliding_window`, Gated DeltaNet `linear_*`
dims); hybrid block patterns (Nemotron-H `hybrid_override_pattern` / `layers_block_type`: Mamba-2,
attention, MoE and MLP blocks, each a mixer or an FFN; Mamba-2 parameters and state from
`mamba_num_heads`, `mamba_head_dim`, `n_groups`, `ssm_state_size`, `conv_kernel`), LatentMoE
(`moe_latent_size`); MTP layers (`num_nextn_predict_layers`, `mtp_num_hidden_layers`, MiniMax
`num_mtp_modules`);
the checkpoint's weight format (`quantization_config`, else `torch_dtype` / `dtype`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleetplan.catalog.schema import ModelSpec
from fleetplan.catalog.shapes import gated_deltanet_params, gated_deltanet_state_bytes
from fleetplan.errors import InputFileError

__all__ = ["MAX_PARAMS", "config_path", "convert", "model_from_config"]

# Sanity bound on a config's parameter count (estimated from its sizes, `_rough_params`) when a
# model is built from it: the largest published models hold 1-2 trillion parameters, so 100
# trillion (50x that) is no real checkpoint but a mistyped size (`num_hidden_layers: 1e12`).
MAX_PARAMS = 100 * 10**12

_SSM_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def _ssm_bytes(c: dict[str, Any], key: str) -> int:
    """Bytes per element of the recurrent state `c[key]` names (absent or null: bfloat16)."""
    v = c.get(key)
    if v is None:
        return 2
    if not isinstance(v, str) or v not in _SSM_BYTES:
        raise ConfigValueError(key, f"unknown state dtype {json.dumps(v)[:40]}; accepted: "
                               f"{', '.join(_SSM_BYTES)}")
    return _SSM_BYTES[v]
_LAYER_TYPES = frozenset({"full_attention", "sliding_attention", "linear_attention",
                          "chunked_attention"})


class ConfigValueError(ValueError):
    """A config key holds a value the converter cannot read (`key` names it)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _whole(key: str, v: object, minimum: int) -> int:
    """`v` (the value of `key`) as an integer >= `minimum`: a JSON integer or a whole float such
    as 4096.0; booleans, fractions, text, null and anything else are errors naming the key."""
    if isinstance(v, bool) or not isinstance(v, int | float) or (
            isinstance(v, float) and not v.is_integer()):
        raise ConfigValueError(key, f"must be a whole number, got {json.dumps(v)[:40]}")
    if int(v) < minimum:
        raise ConfigValueError(key, f"must be >= {minimum}, got {int(v)}")
    return int(v)


def _int(c: dict[str, Any], key: str, default: int | None = None, minimum: int = 1) -> int:
    """`c[key]` as an integer >= `minimum` (`_whole`: every integer field of a config is read
    through here or `_opt_int`); absent (or null, where there is a default): `default`, else a
    KeyError (reported as missing)."""
    if key not in c or (c[key] is None and default is not None):
        if default is None:
            raise KeyError(key)
        return default
    return _whole(key, c[key], minimum)


def _opt_int(c: dict[str, Any], key: str, minimum: int = 1) -> int | None:
    """`c[key]` as an integer >= `minimum` (`_whole`), None where absent or null."""
    v = c.get(key)
    return None if v is None else _whole(key, v, minimum)


def _text(cfg: dict[str, Any]) -> dict[str, Any]:
    """The language model's config: `text_config` of a multimodal wrapper, else the config.
    The wrapper's `tie_word_embeddings`, `quantization_config` and dtype (`torch_dtype` /
    `dtype`) apply where the text config has none (NVIDIA's checkpoints quantize at the top)."""
    inner = cfg.get("text_config")
    if inner is None:
        return cfg
    if not isinstance(inner, dict):
        raise ConfigValueError("text_config", "must be an object (the language model's "
                               f"config), got {json.dumps(inner)[:40]}")
    merged = dict(inner)
    for key in ("tie_word_embeddings", "quantization_config"):
        if key not in merged and key in cfg:
            merged[key] = cfg[key]
    if not {"torch_dtype", "dtype"} & merged.keys():
        merged |= {k: cfg[k] for k in ("torch_dtype", "dtype") if k in cfg}
    return merged


# A config's `torch_dtype` (transformers >= 4.56 writes `dtype`) as a catalog dtype. float32
# checkpoints are served in bf16 (the catalog has no fp32).
_DTYPES = {
    "bfloat16": "bf16", "bf16": "bf16",
    "float16": "fp16", "fp16": "fp16",
    "float32": "bf16", "fp32": "bf16",
    "float8_e4m3fn": "fp8", "float8_e4m3fnuz": "fp8", "float8_e5m2": "fp8", "fp8": "fp8",
}  # fmt: skip
# `quantization_config.quant_method` values read here (`_native_dtype`); ModelOpt (NVIDIA's
# NVFP4 / mixed-precision checkpoints) is read as the config's unquantized dtype, as the
# catalog's NVIDIA entries are (sources/models_meta.yaml)
_QUANT_METHODS = ("compressed-tensors", "fp8", "modelopt", "mxfp4")
# real methods (transformers' `QuantizationMethod`) whose weight formats are not modelled yet
_QUANT_UNSUPPORTED = ("aqlm", "auto-round", "awq", "bitnet", "bitsandbytes", "eetq",
                      "fbgemm_fp8", "fp_quant", "gptq", "higgs", "hqq", "quanto", "quark",
                      "spqr", "torchao", "vptq")
# compressed-tensors weights (type, num_bits) as a catalog dtype (type "int" where absent)
_CT_WEIGHTS = {("int", 4): "int4", ("int", 8): "int8", ("float", 4): "fp4", ("float", 8): "fp8"}


def _dtype(c: dict[str, Any]) -> str:
    """The unquantized weights' dtype: `torch_dtype`, else `dtype`, else bf16."""
    key = next((k for k in ("torch_dtype", "dtype") if c.get(k) is not None), None)
    if key is None:
        return "bf16"
    v = c[key]
    if not isinstance(v, str) or v.lower() not in _DTYPES:
        raise ConfigValueError(key, f"unknown dtype {json.dumps(v)[:40]}; known: "
                               f"{', '.join(_DTYPES)}")
    return _DTYPES[v.lower()]


def _compressed_tensors(q: dict[str, Any]) -> str | None:
    """The weights' dtype of a compressed-tensors checkpoint; None where no group quantizes
    weights."""
    groups = q.get("config_groups", {}) or {}
    if not isinstance(groups, dict) or not all(
            isinstance(g, dict) and isinstance(g.get("weights", {}) or {}, dict)
            for g in groups.values()):
        raise ConfigValueError("quantization_config",
                               "config_groups must map names to objects with 'weights'")
    weights = [g["weights"] for g in groups.values() if g.get("weights")]
    formats = {(str(w.get("type") or "int"), json.dumps(w.get("num_bits"))[:10])
               for w in weights}
    dtypes = {_CT_WEIGHTS.get((t, int(b) if b.isdigit() else 0)) for t, b in formats}
    if not dtypes:
        return None
    if len(dtypes) > 1 or None in dtypes:
        got = ", ".join(sorted(f"{t} {b}-bit" for t, b in formats))
        raise ConfigValueError("quantization_config", f"compressed-tensors weights of {got} "
                               "are not supported yet (read: one of int 4/8-bit, float "
                               "4/8-bit)")
    return dtypes.pop()


def _native_dtype(c: dict[str, Any]) -> str:
    """The checkpoint's weight format: its `quantization_config`, else its dtype (`_dtype`)."""
    dtype = _dtype(c)
    q = c.get("quantization_config")
    if q is None or q == {}:
        return dtype
    if not isinstance(q, dict):
        raise ConfigValueError("quantization_config", "must be an object")
    key = "quantization_config.quant_method"
    known = ", ".join(_QUANT_METHODS)
    if "quant_method" not in q:
        raise ConfigValueError(key, f"missing; known methods: {known}")
    method = q["quant_method"]
    if not isinstance(method, str):
        raise ConfigValueError(key, "must be a string naming the quantization method, got "
                               f"{json.dumps(method)[:40]}; known: {known}")
    method = method.lower()
    if method in _QUANT_UNSUPPORTED:
        raise ConfigValueError(key, f"{method!r} checkpoints are not supported yet (read: "
                               f"{known}); give the unquantized model's config.json")
    if method not in _QUANT_METHODS:
        raise ConfigValueError(key, f"unknown quantization method {json.dumps(method)[:40]}; "
                               f"known: {known}")
    if method == "fp8":
        return "fp8"
    if method == "mxfp4":
        return "fp4"
    if method == "compressed-tensors":
        return _compressed_tensors(q) or dtype
    return dtype  # modelopt


_BLOCK_CODES = {"M": "mamba", "E": "moe", "*": "attention", "-": "mlp"}
_BLOCK_HELP = "M (Mamba-2), E (MoE), * (attention), - (MLP)"


def _blocks(c: dict[str, Any]) -> list[str] | None:
    """Per-layer block types of a hybrid model whose layers hold either a mixer or an FFN
    (Nemotron-H: `hybrid_override_pattern` "MEM*E..." or `layers_block_type`), else None."""
    pattern = c.get("hybrid_override_pattern")
    if pattern is not None and not isinstance(pattern, str):
        raise ConfigValueError("hybrid_override_pattern", "must be a string of layer letters "
                               f"({_BLOCK_HELP}), got {json.dumps(pattern)[:40]}")
    if pattern:
        bad = next(((i, ch) for i, ch in enumerate(pattern) if ch not in _BLOCK_CODES), None)
        if bad is not None:
            raise ConfigValueError("hybrid_override_pattern", f"unknown layer letter "
                                   f"{bad[1]!r} (layer {bad[0]}); allowed: {_BLOCK_HELP}")
        return [_BLOCK_CODES[ch] for ch in pattern]
    types = c.get("layers_block_type")
    if types is not None and not isinstance(types, list):
        raise ConfigValueError("layers_block_type", "must list one block type per layer, got "
                               f"{json.dumps(types)[:40]}")
    if types:
        known = set(_BLOCK_CODES.values())
        bad = next(((i, t) for i, t in enumerate(types) if t not in known), None)
        if bad is not None:
            raise ConfigValueError("layers_block_type", f"unknown block type "
                                   f"{json.dumps(bad[1])[:40]} (layer {bad[0]}); allowed: "
                                   f"{', '.join(sorted(known))}")
        return [str(t) for t in types]
    return None


def _num_layers(c: dict[str, Any]) -> int:
    blocks = _blocks(c)
    if "num_hidden_layers" in c:
        n = _int(c, "num_hidden_layers")
        if blocks is not None and len(blocks) != n:
            key = ("hybrid_override_pattern" if c.get("hybrid_override_pattern")
                   else "layers_block_type")
            raise ConfigValueError(key, f"{len(blocks)} layers where num_hidden_layers is {n}")
        return n
    if blocks is None:
        raise KeyError("num_hidden_layers")
    return len(blocks)


def _mamba2(c: dict[str, Any], h: int, layers: int) -> dict[str, Any]:
    """Mamba-2 mixer layers as linear-attention layers: per-layer parameters and state.

    d_inner = H*p (H heads of p), conv_dim = d_inner + 2*G*N (G groups, state size N):
      in_proj  = h*(d_inner + conv_dim + H)  (z, x, B, C and dt; + the same in biases with
                                              `mamba_proj_bias`)
      conv1d   = conv_dim*k (+ conv_dim with `use_conv_bias`);  dt_bias, A_log, D = 3*H
      gated RMSNorm = d_inner;  out_proj = d_inner*h (+ h with `mamba_proj_bias`)
    state per sequence = (k-1)*conv_dim*2 B (bf16 conv state) + H*p*N*s B (SSM state; s = 4 for
    `mamba_ssm_cache_dtype: float32`, else 2), the shapes vLLM's MambaMixer2 allocates.
    """
    H, p = _int(c, "mamba_num_heads"), _int(c, "mamba_head_dim")
    G, N, k = _int(c, "n_groups"), _int(c, "ssm_state_size"), _int(c, "conv_kernel")
    d_inner = H * p
    conv_dim = d_inner + 2 * G * N
    bias = bool(c.get("mamba_proj_bias"))
    params = (h * (d_inner + conv_dim + H) + ((d_inner + conv_dim + H) if bias else 0)
              + conv_dim * k + (conv_dim if c.get("use_conv_bias") else 0) + 3 * H + d_inner
              + d_inner * h + (h if bias else 0))
    ssm = _ssm_bytes(c, "mamba_ssm_cache_dtype")
    state = (k - 1) * conv_dim * 2 + H * p * N * ssm
    return {"linear_layers": layers, "linear_state_bytes_per_layer": state,
            "linear_params_per_layer": params}


def _llama4_chunked(c: dict[str, Any], n: int) -> int:
    """Llama 4 layers with chunked local attention: those using RoPE, every layer but each
    `no_rope_layer_interval`-th (transformers `Llama4TextConfig`, default 4), or as listed in
    `no_rope_layers` (1 = RoPE, chunked)."""
    listed = c.get("no_rope_layers")
    if listed is not None:
        if not isinstance(listed, list) or len(listed) != n or not all(
                x in (0, 1) for x in listed):
            raise ConfigValueError("no_rope_layers", f"must list 0 or 1 for each of the {n} "
                                   f"layers, got {json.dumps(listed)[:40]}")
        return sum(1 for x in listed if x)
    step = _int(c, "no_rope_layer_interval", 4)
    return n - n // step  # every layer but the step-th, (2*step)-th, ...


def _layer_counts(c: dict[str, Any], n: int) -> tuple[int, int, int]:
    """(full, sliding, linear) attention layer counts. Llama 4's chunked local attention
    (`attention_chunk_size`) keeps at most one chunk of KV per sequence: counted as sliding."""
    if c.get("model_type") == "llama4_text" and c.get("attention_chunk_size"):
        chunked = _llama4_chunked(c, n)
        return n - chunked, chunked, 0
    types = c.get("layer_types")
    if types is not None:
        if not isinstance(types, list) or len(types) != n:
            got = len(types) if isinstance(types, list) else type(types).__name__
            raise ConfigValueError("layer_types", f"must list one type per layer ({n}), got "
                                   f"{got}")
        # other attention kinds (e.g. "deepseek_sparse_attention") hold full KV: read as full
        unknown = sorted({json.dumps(t) for t in types
                          if not (isinstance(t, str) and t.endswith("attention"))})
        if unknown:
            raise ConfigValueError("layer_types", f"unknown layer type(s) {', '.join(unknown)}; "
                                   f"known: {', '.join(sorted(_LAYER_TYPES))} or another "
                                   "'..._attention'")
    if isinstance(types, list) and len(types) == n:
        sliding = sum(t == "sliding_attention" for t in types)
        linear = sum(t == "linear_attention" for t in types)
        return n - sliding - linear, sliding, linear
    if c.get("use_sliding_window") and c.get("sliding_window"):
        return 0, n, 0
    return n, 0, 0


def _attention(c: dict[str, Any]) -> dict[str, Any]:
    h = _int(c, "hidden_size")
    heads = _int(c, "num_attention_heads")
    kv = _int(c, "num_key_value_heads", heads)
    if kv > heads or heads % kv:
        raise ConfigValueError("num_key_value_heads", f"{kv} KV heads must divide the {heads} "
                               "attention heads")
    n = _num_layers(c)
    blocks = _blocks(c)
    if blocks is not None:
        full, sliding, linear = blocks.count("attention"), 0, blocks.count("mamba")
    else:
        full, sliding, linear = _layer_counts(c, n)
    a: dict[str, Any] = {}
    if c.get("kv_lora_rank"):
        rope, nope = _int(c, "qk_rope_head_dim"), _int(c, "qk_nope_head_dim")
        a = {
            "kind": "mla",
            "num_heads": heads,
            "num_kv_heads": heads,  # MLA expands the latent to every head
            "head_dim": nope + rope,
            "v_head_dim": _int(c, "v_head_dim"),
            "q_lora_rank": _opt_int(c, "q_lora_rank"),  # null: queries not compressed
            "kv_lora_rank": _int(c, "kv_lora_rank"),
            "qk_rope_head_dim": rope,
            "qk_nope_head_dim": nope,
        }
        if c.get("index_n_heads"):
            a |= {
                "index_n_heads": _int(c, "index_n_heads"),
                "index_head_dim": _int(c, "index_head_dim"),
                "index_topk": _int(c, "index_topk"),
            }
    else:
        a = {
            "kind": "mha" if kv == heads else "gqa",
            "num_heads": heads,
            "num_kv_heads": kv,
            "head_dim": _int(c, "head_dim", 0) or _int(c, "attention_head_dim", 0)
            or h // heads,
        }
    a["full_layers"] = full
    if sliding:
        # Llama 4 names its window `attention_chunk_size`; otherwise a missing or null
        # `sliding_window` is the error
        key = ("attention_chunk_size" if c.get("sliding_window") is None
               and c.get("attention_chunk_size") is not None else "sliding_window")
        if c.get(key) is None:
            raise ConfigValueError(key, f"missing or null, but {sliding} layers have sliding "
                                   "window attention")
        a |= {"sliding_layers": sliding, "sliding_window": _int(c, key)}
    if linear and blocks is not None:
        a |= _mamba2(c, h, linear)
    elif linear:
        a |= _linear(c, h, linear)
    if blocks is not None and n - full - linear:
        a["mixerless_layers"] = n - full - linear
    if c.get("attn_output_gate"):
        a["output_gate"] = True
    if c.get("attention_bias"):
        a["bias"] = True
    return a


def _linear(c: dict[str, Any], h: int, linear: int) -> dict[str, Any]:
    """Gated DeltaNet shape, its per-sequence state bytes (bf16 conv state; SSM state 4 bytes
    for `mamba_ssm_dtype: float32`, else 2) and per-layer params (`catalog.shapes`)."""
    n_k, n_v = _int(c, "linear_num_key_heads"), _int(c, "linear_num_value_heads")
    d_k, d_v = _int(c, "linear_key_head_dim"), _int(c, "linear_value_head_dim")
    k = _int(c, "linear_conv_kernel_dim")
    ssm = _ssm_bytes(c, "mamba_ssm_dtype")
    state = gated_deltanet_state_bytes(n_k, n_v, d_k, d_v, k, 2, ssm)
    params = gated_deltanet_params(h, n_k, n_v, d_k, d_v, k)
    return {
        "linear_layers": linear,
        "linear_state_bytes_per_layer": state,
        "linear_params_per_layer": params,
        "linear_num_key_heads": n_k,
        "linear_num_value_heads": n_v,
        "linear_key_head_dim": d_k,
        "linear_value_head_dim": d_v,
        "linear_conv_kernel": k,
    }


def _moe(c: dict[str, Any]) -> dict[str, Any] | None:
    key = next((k for k in ("n_routed_experts", "num_local_experts", "num_experts")
                if c.get(k)), None)
    if key is None:
        return None
    experts = _int(c, key)
    width = _int(c, "moe_intermediate_size" if c.get("moe_intermediate_size") is not None
                 else "intermediate_size")
    # the shared expert's width under any of its names; 0 (or null) where there is none
    widths = [_opt_int(c, k, minimum=0) for k in ("shared_expert_intermediate_size",
                                                   "shared_intermediate_size",
                                                   "moe_shared_expert_intermediate_size")]
    shared_w = next((w for w in widths if w), None)
    shared = _int(c, "n_shared_experts", 1 if shared_w else 0, minimum=0) or (
        1 if shared_w else 0)
    llama4 = c.get("model_type") == "llama4_text"
    if llama4:  # every Llama 4 MoE layer has one shared expert as wide as a routed one
        shared = 1
    m: dict[str, Any] = {
        "num_experts": int(experts),
        "experts_per_token": _int(c, "num_experts_per_tok" if "num_experts_per_tok" in c
                                  else "experts_per_token"),
        "num_shared_experts": shared,
        "expert_intermediate_size": width,
    }
    if m["experts_per_token"] > m["num_experts"]:
        raise ConfigValueError("num_experts_per_tok", f"{m['experts_per_token']} experts per "
                               f"token of {m['num_experts']} experts")
    if shared and shared_w:
        m["shared_intermediate_size"] = int(shared_w)
    n_layers = _num_layers(c)
    dense = _opt_int(c, "first_k_dense_replace", minimum=0)
    if dense is None:
        only = c.get("mlp_only_layers")
        if only is not None and not (isinstance(only, list) and all(
                not isinstance(i, bool) and isinstance(i, int) and 0 <= i < n_layers
                for i in only)):
            raise ConfigValueError("mlp_only_layers", f"must list layer indices (0 to "
                                   f"{n_layers - 1}), got {json.dumps(only)[:40]}")
        dense = len(set(only or []))
    elif dense > n_layers:
        raise ConfigValueError("first_k_dense_replace", f"{dense} dense layers of "
                               f"{n_layers} layers")
    step = _int(c, "interleave_moe_layer_step", 1)
    if llama4 and step > 1:  # MoE on every step-th layer, dense FFN layers between
        dense = n_layers - n_layers // step
    blocks = _blocks(c)
    if blocks is not None:  # hybrid: the MLP blocks are the dense FFN layers
        dense = blocks.count("mlp")
    if dense:
        m["dense_layers"] = int(dense)
    if c.get("moe_latent_size"):
        m["latent_size"] = _int(c, "moe_latent_size")
    if c.get("model_type") == "gpt_oss":
        m["bias"] = True  # gpt-oss experts and router carry biases (modeling_gpt_oss.py)
    return m


def _mtp(c: dict[str, Any]) -> int:
    if c.get("num_nextn_predict_layers"):
        return _int(c, "num_nextn_predict_layers", minimum=0)
    if c.get("mtp_num_hidden_layers"):
        return _int(c, "mtp_num_hidden_layers", minimum=0)
    if c.get("use_mtp") and c.get("num_mtp_modules"):
        return _int(c, "num_mtp_modules", minimum=0)
    return 0


def convert(config: dict[str, Any]) -> dict[str, Any]:
    """Architecture fields of a catalog entry (no names, sources or published figures)."""
    c = _text(config)
    moe = _moe(c)
    # Dense FFN width (Llama 4 names it `intermediate_size_mlp`; its `intermediate_size` is the
    # expert width).
    inter = next((_int(c, k) for k in ("intermediate_size_mlp", "intermediate_size",
                                        "moe_intermediate_size") if c.get(k) is not None), 0)
    tie = c.get("tie_word_embeddings", False)
    if not isinstance(tie, bool):
        raise ConfigValueError("tie_word_embeddings", f"must be true or false, got "
                               f"{json.dumps(tie)[:40]}")
    out: dict[str, Any] = {
        "num_layers": _num_layers(c),
        "hidden_size": _int(c, "hidden_size"),
        "intermediate_size": int(inter),
        "vocab_size": _int(c, "vocab_size"),
        "tie_word_embeddings": tie,
        "max_context_tokens": _int(c, "max_position_embeddings"),
        "native_dtype": _native_dtype(c),
        "attention": {k: v for k, v in _attention(c).items() if v is not None},
    }
    if moe:
        out["moe"] = moe
    if str(c.get("mlp_hidden_act") or c.get("hidden_act")) == "relu2":
        out["ffn_kind"] = "plain"  # squared-ReLU FFNs have no gate (up and down only)
    blocks = _blocks(c)
    if blocks is not None:
        out["ffn_layers"] = blocks.count("moe") + blocks.count("mlp")
    mtp = _mtp(c)
    if mtp:
        out["mtp_layers"] = mtp
    return out


def config_path(name: str) -> Path | None:
    """The `config.json` that `name` points at (the file, or a directory holding one), else
    None (`name` is not a path; an empty or blank name never is, though `Path("")` is the
    working directory)."""
    if not name.strip():
        return None
    p = Path(name).expanduser()
    if p.is_dir() and (p / "config.json").is_file():
        return p / "config.json"
    if p.is_file() and p.suffix == ".json":
        return p
    return None


def model_from_config(path: Path, name: str | None = None) -> ModelSpec:
    """See `_model_from_config`; cached per file path, name and modification time (a points
    file names its model on every row)."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as e:
        raise InputFileError(f"cannot read: {e.strerror or e}", path=str(path)) from None
    return _cached(str(path.resolve()), name, mtime)


@functools.lru_cache(maxsize=64)
def _cached(path: str, name: str | None, mtime_ns: int) -> ModelSpec:
    return _model_from_config(Path(path), name)


def _model_from_config(path: Path, name: str | None = None) -> ModelSpec:
    """A catalog model built from a `config.json`: the architecture as `convert` reads it,
    named after its directory (or `name`), its source the file and its date the file's
    modification date. A config it cannot read is an `InputFileError` naming the file and
    the missing or bad field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as e:
        raise InputFileError(f"cannot read: {e.strerror or e}", path=str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputFileError(f"not a JSON config: {e}", path=str(path)) from None
    if not isinstance(raw, dict):
        raise InputFileError("not a JSON object", path=str(path))
    label = name or (path.parent.name if path.name == "config.json" else path.stem)
    try:
        arch = convert(raw)
        model = ModelSpec.model_validate(arch | {
            "name": label,
            "hf_id": f"local/{label}",
            "family": str(_text(raw).get("model_type") or "unknown"),
            "source": f"{path} (config.json, converted by fleetplan.catalog.hf_config)",
            "as_of": dt.date.fromtimestamp(path.stat().st_mtime),
        })
    except KeyError as e:
        raise InputFileError(f"missing {e.args[0]!r}: not a decoder LLM config this converter "
                             "reads", path=str(path), field=str(e.args[0])) from None
    except ConfigValueError as e:
        raise InputFileError(str(e), path=str(path), field=e.key) from None
    except (TypeError, ValueError, ValidationError) as e:
        first = str(e).strip().splitlines()
        raise InputFileError(f"cannot build a model from it: {' '.join(first[:3])}",
                             path=str(path)) from None
    _check_size(model, path)
    return model


def _digits(n: int) -> str:
    """`n` as 1.23e+19 (`float` overflows on the largest)."""
    s = str(n)
    return f"{s[0]}.{s[1:3] or '0'}e+{len(s) - 1:02d}"


def _rough_params(model: ModelSpec) -> int:
    """An estimate of the parameter count from the sizes alone, good to a small factor (the
    exact count is `fleetplan.perf.params.param_count`, a later stage): embedding and LM head,
    and per layer 4 h^2 of attention plus the dense FFN, or every routed and shared expert."""
    h = model.hidden_size
    per_layer = 4 * h * h + 3 * h * model.intermediate_size
    if model.moe is not None:
        m = model.moe
        per_layer += 3 * h * m.expert_intermediate_size * (m.num_experts + m.num_shared_experts)
    return 2 * model.vocab_size * h + model.num_layers * per_layer


def _check_size(model: ModelSpec, path: Path) -> None:
    """Refuse a model of more than `MAX_PARAMS` parameters, naming its sizes."""
    n = _rough_params(model)
    if n <= MAX_PARAMS:
        return
    sizes = {"num_hidden_layers": model.num_layers, "hidden_size": model.hidden_size,
             "intermediate_size": model.intermediate_size, "vocab_size": model.vocab_size}
    if model.moe is not None:
        sizes |= {"experts": model.moe.num_experts,
                  "moe_intermediate_size": model.moe.expert_intermediate_size}
    raise InputFileError(
        f"its sizes give {_digits(n)} parameters, over the sanity bound of "
        f"{_digits(MAX_PARAMS)} (100 trillion): a size is likely mistyped ("
        + ", ".join(f"{k} {v}" for k, v in sizes.items()) + ")", path=str(path))
