"""Engine defaults that depend on the GPU and the layout, evaluated for one deployment.

The engine catalog (`catalog/data/engines.yaml`) holds each scheduler default as one figure,
the value on an 80 GB data-centre GPU. Some engines choose theirs from the device instead
(facts from `docs/ENGINES.md`, each with the engine source it cites):

- vLLM: unset `max_num_batched_tokens` / `max_num_seqs` are 8192 / 1024 for the OpenAI server
  on a GPU with at least 70 GiB that is not an A100, else 2048 / 256
  (`vllm/engine/arg_utils.py` `_set_default_args` @99d7eb5d).
- SGLang: `chunked_prefill_size` and `cuda_graph_max_bs` by GPU memory (GiB: < 20: 2048 / 8;
  < 35: 2048 / 24, 80 at TP >= 4; < 60: 4096 / 32, 160; < 90 and < 160: 8192 / 256, 512;
  otherwise 16384 / 512), and `mem_fraction_static` = (mem - reserved) / mem with reserved =
  512 + 1.5 max(chunk, 2048) + 2 cuda_graph_max_bs + TP x PP / 8 x 1024 MiB, at least 10 GiB
  on a GPU of more than 60 GiB (`python/sglang/srt/server_args.py`, unpinned).

`on_gpu` returns the engine with those figures evaluated for the GPU and layout, each with a
source that says so. A figure the caller set (one that differs from the catalog's, e.g. a
benchmark recipe's memory fraction) is kept as given.
"""

from __future__ import annotations

from fleetplan.catalog import GPU, Engine, get_engine
from fleetplan.catalog.schema import Fig

__all__ = ["RULE_SOURCE", "on_gpu", "sglang_defaults", "vllm_defaults"]

#: Source prefix of a figure evaluated here (so that a re-evaluation recognises its own).
RULE_SOURCE = "engine default on this GPU"
GIB = 2**30
MIB = 2**20
#: SGLang's tiers by GPU memory (GiB, exclusive upper bound): chunked_prefill_size,
#: cuda_graph_max_bs at TP < 4, at TP >= 4 (ENGINES.md, server_args.py)
SGLANG_TIERS = ((20, 2048, 8, 8), (35, 2048, 24, 80), (60, 4096, 32, 160),
                (90, 8192, 256, 512), (160, 8192, 256, 512))
SGLANG_LARGE = (16384, 512, 512)


def vllm_defaults(gpu: GPU) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) of vLLM's OpenAI server on `gpu`."""
    large = gpu.memory_bytes.value >= 70 * GIB and "a100" not in gpu.name.lower()
    return (8192, 1024) if large else (2048, 256)


def sglang_defaults(gpu: GPU, tp: int = 1, pp: int = 1,
                    chunk: int | None = None) -> tuple[int, float]:
    """(chunked_prefill_size, mem_fraction_static) of SGLang on `gpu` with `tp` x `pp` GPUs
    per instance; with `chunk`, the fraction SGLang derives for that chunk size."""
    mem_mib = gpu.memory_bytes.value / MIB
    tier_chunk, bs_small, bs_large = next(
        ((c, s, b) for gib, c, s, b in SGLANG_TIERS if mem_mib < gib * 1024), SGLANG_LARGE)
    chunk = chunk or tier_chunk
    bs = bs_large if tp >= 4 else bs_small
    reserved = 512 + 1.5 * max(chunk, 2048) + 2 * bs + tp * pp / 8 * 1024
    if mem_mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return chunk, (mem_mib - reserved) / mem_mib


def on_gpu(engine: Engine, gpu: GPU, tp: int = 1, pp: int = 1) -> Engine:
    """`engine` with its GPU- and layout-dependent defaults evaluated (module docstring); `tp`
    counts every GPU of one instance's tensor group (with attention data parallelism, all of
    them)."""
    if engine.name not in ("vllm", "sglang"):
        return engine
    base = get_engine(engine.name)

    def free(field: str) -> bool:  # left at the catalog's figure, or evaluated here before
        f: Fig = getattr(engine, field)
        return f == getattr(base, field) or f.source.startswith(RULE_SOURCE)

    def fig(field: str, value: float, why: str) -> Fig:
        f: Fig = getattr(base, field)
        return f.model_copy(update={"value": value, "source": f"{RULE_SOURCE} ({gpu.name}, "
                                    f"TP {tp} PP {pp}): {why}; catalog: {f.source}"})

    mem_gib = gpu.memory_bytes.value / GIB
    upd: dict[str, Fig] = {}
    if engine.name == "vllm":
        mbt, mns = vllm_defaults(gpu)
        why = (f"{mem_gib:.0f} GiB" + (", an A100" if "a100" in gpu.name.lower() else "")
               + (" >= 70 GiB: 8192 / 1024" if mbt == 8192 else ": under 70 GiB or an A100, "
                  "2048 / 256"))
        for field, v in (("max_num_batched_tokens", mbt), ("max_num_seqs", mns)):
            if free(field):
                upd[field] = fig(field, v, f"vLLM server defaults on {why}")
    else:  # a chunk size the caller set is the one SGLang sizes its memory for
        given = None if free("max_num_batched_tokens") else int(
            engine.max_num_batched_tokens.value)
        chunk, frac = sglang_defaults(gpu, tp, pp, given)
        if free("max_num_batched_tokens"):
            upd["max_num_batched_tokens"] = fig(
                "max_num_batched_tokens", chunk,
                f"SGLang chunked_prefill_size {chunk} on {mem_gib:.0f} GiB")
        if free("gpu_memory_utilization"):
            upd["gpu_memory_utilization"] = fig(
                "gpu_memory_utilization", round(frac, 4),
                f"SGLang mem_fraction_static (mem - reserved) / mem = {frac:.4f} for "
                f"chunked_prefill_size {chunk}")
    changed = {k: v for k, v in upd.items() if v != getattr(engine, k)}
    return engine.model_copy(update=changed) if changed else engine
