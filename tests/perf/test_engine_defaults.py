"""Engine defaults chosen from the GPU and layout (ENGINES.md), by hand."""

from __future__ import annotations

import pytest

from fleetplan.catalog import Fig, get_engine, get_gpu
from fleetplan.perf.deployment import Deployment
from fleetplan.perf.engine_defaults import RULE_SOURCE, on_gpu, sglang_defaults, vllm_defaults
from fleetplan.perf.memory import memory_budget
from fleetplan.sim.config import ReplicaConfig


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [("h100-sxm", (8192, 1024)), ("h200-sxm", (8192, 1024)), ("b200", (8192, 1024)),
     ("a100-sxm-80gb", (2048, 256)),  # >= 70 GiB, but an A100 (vLLM PR #17885)
     ("l40s", (2048, 256)), ("l4", (2048, 256))],
)
def test_vllm_server_defaults_by_gpu(gpu: str, expected: tuple[int, int]) -> None:
    assert vllm_defaults(get_gpu(gpu)) == expected


def test_sglang_memory_fraction_by_hand() -> None:
    """(mem - reserved) / mem, reserved = 512 + 1.5 max(chunk, 2048) + 2 cuda_graph_max_bs +
    TP PP / 8 x 1024 MiB, at least 10 GiB above 60 GiB."""
    # H100: 81,559 MiB (79.6 GiB < 90: chunk 8192, graphs 256 at TP < 4)
    chunk, frac = sglang_defaults(get_gpu("h100-sxm"))
    assert chunk == 8192
    assert frac == pytest.approx((81559 - (512 + 12288 + 512 + 128)) / 81559, rel=1e-4)
    # TP 8: graphs 512, TP/8 x 1024 = 1024 MiB
    _, frac8 = sglang_defaults(get_gpu("h100-sxm"), tp=8)
    assert frac8 == pytest.approx((81559 - (512 + 12288 + 1024 + 1024)) / 81559, rel=1e-4)
    # H200: 143,771 MiB (140 GiB < 160): chunk 8192 -> 0.9065
    assert sglang_defaults(get_gpu("h200-sxm")) == (
        8192, pytest.approx((143771 - 13440) / 143771, rel=1e-4))
    # B200: 183,359 MiB (179 GiB): chunk 16384, graphs 512 -> reserved 26,240 MiB
    chunk, frac = sglang_defaults(get_gpu("b200"))
    assert chunk == 16384 and frac == pytest.approx((183359 - 26240) / 183359, rel=1e-4)
    # an L4 (24 GB, 22.4 GiB < 35): chunk 2048, graphs 24; no 10 GiB floor under 60 GiB
    mem = get_gpu("l4").memory_bytes.value / 2**20
    chunk, frac = sglang_defaults(get_gpu("l4"))
    assert chunk == 2048 and frac == pytest.approx((mem - (512 + 3072 + 48 + 128)) / mem)


def test_deployments_carry_the_gpu_defaults_and_the_simulator_uses_them() -> None:
    dep = Deployment.build("llama-3.1-8b", "a100-sxm-80gb", "bf16", "vllm")
    assert dep.engine.max_num_seqs.value == 256
    assert dep.engine.max_num_batched_tokens.value == 2048
    assert dep.engine.max_num_seqs.source.startswith(RULE_SOURCE)
    cfg = ReplicaConfig.from_deployment(dep)
    assert (cfg.max_num_seqs, cfg.max_num_batched_tokens) == (256, 2048)
    # SGLang on an H200 keeps 0.9065 of the device for weights, activations and KV (was the
    # 80 GB figure, 0.836): 10% more KV
    h200 = Deployment.build("llama-3.1-8b", "h200-sxm", "bf16", "sglang")
    assert h200.engine.gpu_memory_utilization.value == pytest.approx(0.9065, abs=1e-4)
    usable = memory_budget(h200).usable_bytes
    assert usable == pytest.approx(0.9065 * get_gpu("h200-sxm").memory_bytes.value, rel=1e-4)
    # other engines are left as the catalog has them
    trt = Deployment.build("llama-3.1-8b", "a100-sxm-80gb", "bf16", "trtllm")
    assert trt.engine == get_engine("trtllm")


def test_a_figure_the_caller_set_is_kept() -> None:
    """A benchmark recipe's memory fraction (the calibration sets it on the engine) wins over
    the GPU rule; the fields it did not set still follow the GPU."""
    eng = get_engine("sglang")
    mine = eng.model_copy(update={"gpu_memory_utilization": Fig(
        value=0.82, source="the recipe", as_of=eng.gpu_memory_utilization.as_of)})
    got = on_gpu(mine, get_gpu("b200"))
    assert got.gpu_memory_utilization.value == 0.82
    assert got.max_num_batched_tokens.value == 16384
    # evaluating twice, or for another layout, re-evaluates its own figures
    again = on_gpu(on_gpu(eng, get_gpu("h100-sxm"), tp=1), get_gpu("h100-sxm"), tp=8)
    assert again.gpu_memory_utilization.value == pytest.approx(
        sglang_defaults(get_gpu("h100-sxm"), tp=8)[1], abs=1e-4)


def test_sglang_max_running_requests_by_hand() -> None:
    """min(max_total_tokens // 2, clamp(max_total_tokens / context_len x 512, 2048, 4096))
    (ENGINES.md): Llama-3.1-8B on an H100 holds 392,890 tokens of 131,072-token context ->
    1,534 -> 2,048 (was the catalog's cap, 4,096, everywhere); a small pool halves."""
    from fleetplan.sim.config import sglang_max_running

    assert sglang_max_running(392_890, 131_072) == 2048
    assert sglang_max_running(1_099_276, 131_072) == 4096
    assert sglang_max_running(3000, 131_072) == 1500
    dep = Deployment.build("llama-3.1-8b", "h100-sxm", "bf16", "sglang")
    cfg = ReplicaConfig.from_deployment(dep)
    assert cfg.max_num_seqs == sglang_max_running(cfg.kv_capacity_tokens, 131_072) == 2048
    assert ReplicaConfig.from_deployment(dep, max_num_seqs=300).max_num_seqs == 300


def test_sglang_memory_follows_a_given_chunk_size() -> None:
    """SGLang derives mem_fraction_static from the chunk size it runs with: an explicit
    --max-num-batched-tokens of 16,384 on an H200 reserves 1.5 x 16,384 MiB more than the
    default 8,192 (0.821, not 0.9065): about 12 GiB less KV per GPU."""
    dep = Deployment.build("llama-3.1-8b", "h200-sxm", "bf16", "sglang")
    default = ReplicaConfig.from_deployment(dep)
    given = ReplicaConfig.from_deployment(dep, max_num_batched_tokens=16384)
    frac = sglang_defaults(get_gpu("h200-sxm"), chunk=16384)[1]
    assert frac == pytest.approx((143771 - (512 + 24576 + 512 + 128)) / 143771, rel=1e-4)
    assert given.max_num_batched_tokens == 16384
    kv_token = memory_budget(dep).kv_bytes_per_token
    lost = (default.kv_blocks - given.kv_blocks) * default.block_size * kv_token
    # the pool loses the usable memory and the larger step's activations
    assert lost == pytest.approx((0.9065 - frac) * get_gpu("h200-sxm").memory_bytes.value
                                 + (memory_budget(dep, 16384).activation_bytes
                                    - memory_budget(dep).activation_bytes), rel=0.01)
