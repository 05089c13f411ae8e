"""KV that does not grow with the context in the simulator: sliding-window layers and the
recurrent state of linear-attention layers, held per sequence beside the growing blocks."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetplan.perf.deployment import Deployment
from fleetplan.perf.memory import (
    kv_bytes_per_token_per_gpu,
    max_concurrent_sequences,
    memory_budget,
)
from fleetplan.sim.config import ReplicaConfig
from fleetplan.sim.kvcache import KVCache
from fleetplan.sim.request import Request


def test_extra_blocks_by_hand() -> None:
    """Window 128 at one windowed layer per full layer, 2 state blocks, blocks of 16: a
    request of 100 + 200 tokens holds ceil(300/16) = 19 growing blocks, 2 state blocks and
    128/16 = 8 window blocks; one of 20 + 10 tokens 2 + 2 + 2."""
    kv = KVCache(100, 16, prefix_caching=False, window_tokens=128, window_ratio=1.0,
                 state_blocks=2)
    a, b = Request(0, 0.0, 100, 200), Request(1, 0.0, 20, 10)
    assert kv.extra_for(a) == 10 and kv.extra_for(b) == 4
    assert kv.allocate(a, 300)
    assert (a.held, a.extra, kv.free) == (19, 10, 71)
    assert kv.allocate(a, 305)  # growing: one more block, no more state
    assert (a.held, a.extra, kv.free) == (20, 10, 70)
    assert kv.allocate(b, 30) and kv.free == 70 - 6
    kv.release(a)
    kv.release(b)
    assert kv.free == 100 and (a.held, a.extra) == (0, 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 400), st.integers(1, 400)), min_size=1, max_size=12),
       st.integers(0, 300), st.sampled_from([0.0, 0.5, 1.0, 3.0]), st.integers(0, 5))
def test_blocks_are_conserved(reqs: list[tuple[int, int]], window: int, ratio: float,
                              state: int) -> None:
    """Whatever is allocated and released, free + held + extra = the pool, `fits` agrees with
    `allocate`, and nothing is left after every release."""
    kv = KVCache(200, 16, prefix_caching=False, window_tokens=window, window_ratio=ratio,
                 state_blocks=state)
    held = []
    for i, (p, o) in enumerate(reqs):
        r = Request(i, 0.0, p, o)
        ok = kv.fits(r, p)
        assert kv.allocate(r, p) == ok
        if ok:
            held.append(r)
        assert kv.free + sum(x.held + x.extra for x in held) == 200
    for r in held:
        kv.release(r)
    assert kv.free == 200


def test_gpt_oss_pool_holds_what_the_planner_counts() -> None:
    """gpt-oss-120b (18 full layers, 18 with a 128-token window) on one H200: the simulator
    counted every layer's KV for every token, so its pool held half the 32k-token sequences the
    planner (and vLLM's hybrid allocator) hold."""
    dep = Deployment.build("gpt-oss-120b", "h200-sxm", "fp8", "vllm")
    cfg = ReplicaConfig.from_deployment(dep)
    budget = memory_budget(dep)
    full_bytes = kv_bytes_per_token_per_gpu(dep) / 2  # the full half of the attention layers
    assert cfg.kv_blocks == int(budget.kv_pool_bytes // (full_bytes * 16))
    assert (cfg.kv_window_tokens, cfg.kv_window_ratio, cfg.kv_state_blocks) == (128, 1.0, 0)
    ctx = 32_500
    held = cfg.kv_blocks // cfg.blocks_for(ctx)
    assert abs(held - max_concurrent_sequences(dep, ctx)) <= 1
    assert held == 23


def test_linear_state_is_held_per_sequence() -> None:
    """Qwen3.5-397B-A17B: 45 linear-attention layers of 4.27 MB state each beside 15 full
    layers; the state of one sequence is worth thousands of tokens of full-layer KV."""
    dep = Deployment.build("qwen3.5-397b-a17b", "b200", "fp8", "vllm", tp=4)
    cfg = ReplicaConfig.from_deployment(dep)
    a = dep.model.attention
    state = a.linear_layers * a.linear_state_bytes_per_layer / 4
    block = kv_bytes_per_token_per_gpu(dep) * 16
    assert cfg.kv_state_blocks == math.ceil(state / block)
    assert cfg.kv_state_blocks * 16 > 1000  # tokens' worth of KV per sequence
    ctx = 8192 + 1024
    assert abs(cfg.kv_blocks // cfg.blocks_for(ctx) - max_concurrent_sequences(dep, ctx)) <= 1


def test_dense_models_are_unchanged() -> None:
    dep = Deployment.build("llama-3.1-8b", "h100-sxm", "bf16", "vllm")
    cfg = ReplicaConfig.from_deployment(dep)
    assert cfg.kv_blocks == memory_budget(dep).kv_capacity_tokens // 16
    assert (cfg.kv_window_ratio, cfg.kv_state_blocks) == (0.0, 0)
    assert cfg.blocks_for(1000) == math.ceil(1000 / 16)
    assert cfg.longest_fitting == cfg.kv_capacity_tokens
