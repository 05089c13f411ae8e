"""Per-layer figures that follow from a layer's shape, shared by the config converter (which
records them in the catalog, `hf_config`) and the performance model (`perf.params`).

Gated DeltaNet (Qwen3-Next / Qwen3.5 `linear_attention`), with n_k key heads of d_k, n_v value
heads of d_v, key_dim = n_k*d_k, value_dim = n_v*d_v, conv kernel c:
  in_proj_qkvz = h*(2*key_dim + 2*value_dim)   (q, k, v and the output gate z)
  in_proj_ba   = h*(2*n_v)                     (per-head beta and decay inputs)
  conv1d       = (2*key_dim + value_dim)*c     (depthwise, no bias)
  dt_bias, A_log = 2*n_v;  gated RMSNorm = d_v
  out_proj     = value_dim*h
Per-sequence state: conv state (c - 1)*(2*key_dim + value_dim) elements (the last c-1 inputs of
the depthwise conv over q, k, v) in the model dtype, recurrent state n_v*d_k*d_v elements (one
d_k x d_v matrix per value head) in the SSM state dtype: the shapes vLLM allocates for
`GatedDeltaNet` layers (conv_state (c-1, conv_dim), temporal_state (n_v, d_k, d_v)).
"""

from __future__ import annotations

__all__ = ["gated_deltanet_params", "gated_deltanet_state_bytes"]


def gated_deltanet_params(hidden: int, n_k: int, n_v: int, d_k: int, d_v: int,
                          conv: int) -> int:
    """Parameters of one Gated DeltaNet layer (module docstring)."""
    key_dim, value_dim = n_k * d_k, n_v * d_v
    return (
        hidden * (2 * key_dim + 2 * value_dim)
        + hidden * 2 * n_v
        + (2 * key_dim + value_dim) * conv
        + 2 * n_v
        + d_v
        + value_dim * hidden
    )


def gated_deltanet_state_bytes(n_k: int, n_v: int, d_k: int, d_v: int, conv: int,
                               conv_state_bytes: int, ssm_state_bytes: int) -> int:
    """Per-sequence state of one Gated DeltaNet layer, bytes (module docstring)."""
    conv_dim = 2 * n_k * d_k + n_v * d_v
    return (conv - 1) * conv_dim * conv_state_bytes + n_v * d_k * d_v * ssm_state_bytes
