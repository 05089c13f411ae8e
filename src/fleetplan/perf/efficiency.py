"""Efficiency parameters: how much of a GPU's datasheet peak a serving engine achieves.

The roofline model divides work by *achievable* rates, never by peaks. These are the named knobs,
each with a default and the public source it comes from; `fleetplan.perf.calibration` replaces
them with values fitted per (GPU, engine, precision) against measured serving data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["DEFAULT_EFFICIENCY", "DEFAULT_SOURCES", "FRACTION_CAPS", "Efficiency"]


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Achievable fractions of peak and fixed costs of one engine step.

    compute_max: fraction of dense peak FLOP/s reached by large GEMMs.
    compute_half_tokens: tokens in the step at which GEMM efficiency is half of `compute_max`
        (efficiency(t) = compute_max * t / (t + compute_half_tokens)).
    bandwidth: fraction of peak HBM bytes/s reached when streaming weights and KV.
    attention: fraction of peak FLOP/s reached by prefill attention kernels.
    comm: fraction of the interconnect's per-GPU bandwidth reached by collectives.
    collective_latency_s: fixed latency of one collective call.
    step_overhead_s: fixed cost of one engine step (scheduling, launch, sampling).
    layer_overhead_s: fixed cost per transformer layer of one step (kernel boundaries: launch
        gaps and tails of the ~10 kernels of a layer, which CUDA graphs do not remove), so a
        deep model pays more per step than a shallow one of the same size.
    seq_overhead_s: per-sequence cost of one step (input preparation, sampling).
    moe_compute: efficiency of MoE expert GEMMs relative to dense GEMMs at the same step size
        (grouped GEMMs over tokens x k / E rows per expert); 1.0 = same as dense.
    request_overhead_s: fixed time of one request before its first token outside the engine
        steps (HTTP, chat template and tokenisation, admission, detokenising and streaming the
        first token); added to every TTFT, not to the step time.
    kv_read: efficiency of decode attention's KV-cache reads relative to `bandwidth` (1.0 =
        paged decode kernels stream KV as fast as weights; eager attention that first copies
        the KV heads up to the query heads reaches a fraction of it).
    gqa_expansion: extra KV traffic of decode attention per query head sharing a KV head: KV
        bytes moved = KV bytes x (1 + gqa_expansion x query heads / KV heads). 0 = GQA kernels
        read each KV head once; 2 = attention that copies the KV heads up to the query heads and
        reads the copy (transformers' SDPA path, `repeat_kv`).
    activation_passes: memory passes over the activations per token and layer outside the
        GEMMs (norms, rotary, activation function, residual adds), in units of
        (hidden + FFN width) x 2 bytes at `bandwidth`; 0 = fused into the GEMMs and attention
        kernels (the roofline's GEMM efficiency absorbs them), a few for an unfused eager path.
    overhead_overlap: share of the fixed step costs (step, layer, sequence overheads) hidden
        behind GPU work: 0 = they add to it (the host waits for the GPU, or CUDA graphs leave
        only launch gaps), 1 = the step takes the longer of the two (an eager host that
        dispatches kernels ahead of the GPU).
    """

    compute_max: float = 0.70
    compute_half_tokens: float = 48.0
    bandwidth: float = 0.80
    attention: float = 0.45
    comm: float = 0.70
    collective_latency_s: float = 12e-6
    step_overhead_s: float = 2.5e-3
    layer_overhead_s: float = 20e-6
    seq_overhead_s: float = 5e-6
    moe_compute: float = 1.0
    request_overhead_s: float = 0.03
    kv_read: float = 1.0
    gqa_expansion: float = 0.0
    activation_passes: float = 0.0
    overhead_overlap: float = 0.0
    provenance: str = field(default="defaults (fleetplan.perf.efficiency)", compare=False)

    def compute_at(self, tokens: float) -> float:
        """GEMM efficiency for a step with `tokens` tokens through the linear layers."""
        t = max(tokens, 1.0)
        return self.compute_max * t / (t + self.compute_half_tokens)

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


DEFAULT_EFFICIENCY = Efficiency()

#: Upper bounds of the fractional fields: a fit may push a factor past them, the step time
#: never uses more (fractions of a peak; MoE expert GEMMs at most 1.5x dense efficiency).
FRACTION_CAPS: dict[str, float] = {
    "compute_max": 1.0,
    "bandwidth": 1.0,
    "attention": 1.0,
    "comm": 1.0,
    "moe_compute": 1.5,
    "overhead_overlap": 1.0,
}

#: Where each default comes from (shown by `fleetplan plan --explain` and in FIDELITY.md).
DEFAULT_SOURCES: dict[str, str] = {
    "compute_max": "dense BF16/FP8 GEMM reaches 60-80% of Hopper peak in cuBLAS/CUTLASS "
    "benchmarks (NVIDIA Hopper tuning guide; aiconfigurator GEMM tables)",
    "compute_half_tokens": "GEMM with M < ~64 rows is bandwidth/latency bound (roofline "
    "ridge point of H100 BF16 ~ 295 FLOP/byte); chosen so small-M efficiency falls off there",
    "bandwidth": "HBM streaming reaches ~80% of peak (aiconfigurator "
    "mem_bw_empirical_scaling_factor 0.8; STREAM-like measurements on H100)",
    "attention": "FlashAttention-2 reaches 35-50% and FlashAttention-3 50-75% of H100 peak "
    "(Dao 2023; Shah et al. 2024)",
    "comm": "NCCL all-reduce bus bandwidth ~70% of NVLink peak at MB message sizes "
    "(nccl-tests on HGX H100)",
    "collective_latency_s": "NCCL small-message all-reduce latency ~10-20 us on NVLink "
    "(nccl-tests)",
    "step_overhead_s": "vLLM V1 per-step scheduling+launch+sampling overhead of a few ms "
    "(vLLM V1 blog, 2025-01)",
    "layer_overhead_s": "~2 us per kernel boundary (launch gap and tail under CUDA graphs) x "
    "~10 kernels per transformer layer (Nsight Systems traces of vLLM/TRT-LLM decode steps)",
    "seq_overhead_s": "per-sequence input preparation and sampling, microseconds per sequence",
    "moe_compute": "neutral default (1.0 = dense GEMM efficiency); fitted per GPU/engine in "
    "perf/calibration/*.yaml (grouped expert GEMMs run few rows per expert)",
    "kv_read": "neutral default (1.0: decode attention reads KV at the weight-streaming "
    "bandwidth, as paged decode kernels do); fitted from measured step times where an engine's "
    "attention path is slower (perf/calibration/gpu_steps.yaml)",
    "gqa_expansion": "0.0: paged decode kernels (vLLM, SGLang, TRT-LLM; FlashInfer, "
    "FlashAttention) load each KV head once for its query-head group; transformers' "
    "integrations/sdpa_attention.py repeat_kv copies KV up to the query heads (v5.17.0), "
    "fitted in perf/calibration/gpu_steps.yaml",
    "activation_passes": "0.0: serving engines fuse norms, activation and residual adds "
    "into neighbouring kernels, and the fitted GEMM efficiency absorbs the rest; fitted for "
    "eager PyTorch in perf/calibration/gpu_steps.yaml",
    "overhead_overlap": "0.0: serving engines with CUDA graphs (vLLM, SGLang, TRT-LLM) pay "
    "scheduling and launch costs between steps, in series with the GPU (vLLM V1 blog, 2025-01); "
    "fitted from measured step times for eager engines (perf/calibration/gpu_steps.yaml)",
    "request_overhead_s": "tokenisation 10-20 us per token (tenstorrent/tt-inference-server#2173, "
    "2026-02) plus HTTP, scheduling and streaming the first token: 62 ms TTFT for an 8-token "
    "prompt on an 8B model at batch 1 (vllm-project/vllm#770, 2024-12), mostly outside the GPU; "
    "30 ms default, fitted per GPU/engine/precision and model in perf/calibration/*.yaml",
}
