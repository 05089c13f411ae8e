"""Each engine's scheduling policy on tiny cases whose outcome can be checked by hand
(ENGINES.md; the shared invariants run for every policy in test_properties.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import pytest

from fleetplan.perf.step import StepBatch
from fleetplan.sim import FleetConfig, ReplicaConfig, TraceLoad, simulate
from fleetplan.sim import scheduler as sched
from fleetplan.sim.kvcache import KVCache
from fleetplan.sim.replica import Replica
from fleetplan.sim.request import Request
from tests.sim.toy import ToyModel, toy_replica

M = ToyModel()


def _trace(*rows: tuple[float, int, int]) -> TraceLoad:
    t, i, o = zip(*rows, strict=True)
    return TraceLoad(pl.DataFrame({"arrival_s": list(t), "input_tokens": list(i),
                                   "output_tokens": list(o)}))


def _one(**kw: Any) -> FleetConfig:
    return FleetConfig.homogeneous(toy_replica(M, **kw), 1)


def _decode_until(t0: float, t: float, every: int = 1) -> tuple[int, float]:
    """A request of context 101 decoding alone from `t0`: the first multiple j of `every`
    decode steps that ends at or after `t`, and that end."""
    j = every
    while t0 + M.decode_run_time_s(1, 101, j) < t:
        j += every
    return j, t0 + M.decode_run_time_s(1, 101, j)


@pytest.fixture
def steps() -> Iterator[list[tuple[int, int, list[int], list[int]]]]:
    """Record (prefill seqs, decode seqs, request ids, tokens) of every scheduled step."""
    seen: list[tuple[int, int, list[int], list[int]]] = []
    orig = dict(sched.POLICIES)

    def wrap(f: sched.SchedulePolicy) -> sched.SchedulePolicy:
        def g(rep: Replica, now_s: float) -> sched.StepSums:
            out = f(rep, now_s)
            seen.append((out[1], out[4], [r.idx for r in rep.batch_reqs],
                         list(rep.batch_tokens)))
            return out
        return g

    for k, f in orig.items():
        sched.POLICIES[k] = wrap(f)
    try:
        yield seen
    finally:
        sched.POLICIES.update(orig)


def test_catalog_engines_pick_their_policy() -> None:
    from fleetplan.perf import Deployment

    for eng, bs in (("vllm", 16), ("sglang", 1), ("trtllm", 32), ("tgi", 1)):
        dep = Deployment.build("llama-3.1-8b", "h100-sxm", "bf16", eng)
        cfg = ReplicaConfig.from_deployment(dep)
        assert (cfg.engine, cfg.block_size) == (eng, bs)
        assert cfg.chunked_prefill == (eng != "trtllm")


def test_trtllm_reserves_to_completion_and_stops_at_first_misfit() -> None:
    """16 blocks of 16 tokens. A = 64 + 64 tokens (8 blocks) is admitted at t=0; B = 16 + 200
    (14 blocks) does not fit beside A and stops admission, so C = 16 + 16 (2 blocks), which would
    fit, waits behind it; both start when A finishes. vLLM admits all three at once."""
    load = _trace((0.0, 64, 64), (0.0, 16, 200), (0.0, 16, 16))
    kw: dict[str, Any] = {"kv_blocks": 16, "block_size": 16, "prefix_caching": False}
    trt = simulate(_one(engine="trtllm", chunked_prefill=False, **kw), load).requests
    a_end = float(trt["e2e_s"][0])
    assert trt["queue_s"].to_list() == [0.0, a_end, a_end]
    assert trt["preemptions"].sum() == 0
    vllm = simulate(_one(engine="vllm", **kw), load).requests
    assert vllm["queue_s"].to_list() == [0.0, 0.0, 0.0]


def test_trtllm_whole_prompt_per_step_and_context_first(steps: list[Any]) -> None:
    """Chunked prefill off, 256 tokens per step. A's prefill (100) runs alone; B (200) and C (60)
    arrive meanwhile. Next step: A's decode token leaves 255, B's whole prompt fits (55 left),
    C's 60 do not and stop admission (vLLM would chunk C into the 55); C goes whole in the step
    after. Context tokens come before generation tokens in each batch."""
    load = _trace((0.0, 100, 4), (0.0001, 200, 3), (0.0002, 60, 3))
    res = simulate(_one(engine="trtllm", chunked_prefill=False, max_num_batched_tokens=256,
                        block_size=32), load).requests
    assert [s[2:] for s in steps[:3]] == [([0], [100]), ([1, 0], [200, 1]),
                                         ([2, 0, 1], [60, 1, 1])]
    assert res["preemptions"].sum() == 0
    with pytest.raises(Exception, match="chunked prefill off"):
        simulate(_one(engine="trtllm", chunked_prefill=False, max_num_batched_tokens=64),
                 _trace((0.0, 100, 4)))


def test_trtllm_batch_waiting_holds_prompts_while_others_decode() -> None:
    """TensorRT-LLM batch waiting, 5 steps: A (100 + 60) decodes alone when B (100 + 5) arrives
    at 10 ms. Without waiting B joins the next step; with it B is held 5 more decode steps of A
    (each base + 1 token + A's context), then joins. A prompt arriving with nothing else
    running is never held (A itself), and a threshold B's tokens reach ends the wait at once
    (same TTFT as off)."""
    load = _trace((0.0, 100, 60), (0.01, 100, 5))
    kw: dict[str, Any] = {"engine": "trtllm", "chunked_prefill": False, "block_size": 1,
                          "prefix_caching": False}
    off = simulate(_one(**kw), load).requests
    on = simulate(_one(batch_wait_iters=5, **kw), load).requests
    assert float(on["ttft_s"][0]) == float(off["ttft_s"][0])
    held = float(on["ttft_s"][1]) - float(off["ttft_s"][1])
    # five decode steps of A, each reading A's context (< 200 tokens), and 5 more tokens of it
    # read in B's step
    assert 5 * (M.base_s + M.token_s) < held < 5 * (M.base_s + M.token_s) + 6 * 200 * M.ctx_s
    early = simulate(_one(batch_wait_iters=5, batch_wait_tokens=101, **kw), load).requests
    assert float(early["ttft_s"][1]) == float(off["ttft_s"][1])
    # C arrives during B's wait and brings the step to the threshold: the held run is cut at
    # the step in flight and both are admitted in the next step
    load3 = _trace((0.0, 100, 60), (0.01, 100, 5), (0.0115, 100, 5))
    both = simulate(_one(batch_wait_iters=50, batch_wait_tokens=201, **kw), load3).requests
    start_b = 0.01 + float(both["ttft_s"][1])
    start_c = 0.0115 + float(both["ttft_s"][2])
    assert start_b == pytest.approx(start_c, abs=1e-12)
    assert float(both["ttft_s"][2]) < 3 * (M.base_s + M.token_s) + M.step_time_s(
        StepBatch.prefill_chunk(200, 0))
    with pytest.raises(Exception, match="TensorRT-LLM setting"):
        toy_replica(M, engine="vllm", batch_wait_iters=3)


def test_sglang_runs_a_waiting_prefill_before_decodes(steps: list[Any]) -> None:
    """A decodes alone; B arrives at 10 ms. The decode run is cut at the step in flight, then B's
    prefill runs as its own forward pass (no decode of A in it), so B's TTFT is the wait for
    that step plus its prefill alone."""
    load = _trace((0.0, 100, 50), (0.01, 100, 5))
    res = simulate(_one(engine="sglang", block_size=1), load).requests
    assert all(d == 0 for p, d, _, _ in steps if p)  # prefill and decode never share a step
    t_a = M.prefill_alone_s(100, 2048)
    j, t1 = _decode_until(t_a, 0.01)
    np.testing.assert_allclose(float(res["ttft_s"][1]),
                               t1 - 0.01 + M.prefill_alone_s(100, 2048), rtol=1e-12)
    # vLLM mixes B's prefill with A's decode: one more token and A's context in that step.
    v = simulate(_one(engine="vllm", block_size=1), load).requests
    mixed = M.step_time_s(StepBatch(100, 1, 100 * 50.5, 100, 1, 101 + j))
    np.testing.assert_allclose(float(v["ttft_s"][1]), t1 - 0.01 + mixed, rtol=1e-12)


def test_sglang_retracts_fewest_generated_longest_prompt() -> None:
    """Four decoding requests need one new block each with three free: retract the one with the
    fewest generated tokens, the longer prompt among the two with 3; it goes to the tail of the
    queue and the ratio resets to (decoded + 20 bs) / sum(max_new)."""
    spec = [(10, 5, 50), (10, 3, 50), (20, 3, 50), (10, 8, 50)]  # prompt, generated, output
    reqs = []
    for i, (p, g, o) in enumerate(spec):
        r = Request(i, 0.0, p, o)
        r.generated, r.computed = g, p + g - 1
        reqs.append(r)
    kv = KVCache(sum(r.computed for r in reqs) + 3, 1, prefix_caching=False)
    rep = Replica(0, M, kv, max_num_seqs=8, max_num_batched_tokens=64,
                  policy=sched.schedule_sglang, sglang=True)
    for r in reqs:
        assert kv.allocate(r, r.computed)
        rep.running.append(r)
    out = sched.schedule_sglang(rep, 0.0)
    assert out[6] and [r.idx for r in rep.running] == [0, 1, 3]
    assert list(rep.waiting) == [reqs[2]] and reqs[2].computed == 0 and kv.used == 14 + 12 + 17 + 3
    assert rep.new_token_ratio == pytest.approx((5 + 3 + 8 + 20 * 3) / 150)
    assert out[4] == 3 and rep.batch_tokens == [1, 1, 1]


def test_sglang_reserves_decode_tokens_at_admission() -> None:
    """100 blocks of 1 token: A (prompt 10, 80 to generate) runs; B (prompt 10, 80) needs
    10 + 80 < 100 - 10 - 0.7 * 79 (free minus A's reservation) -> waits; vLLM admits it."""
    load = _trace((0.0, 10, 80), (0.001, 10, 80))
    kw: dict[str, Any] = {"kv_blocks": 100, "block_size": 1, "prefix_caching": False}
    s = simulate(_one(engine="sglang", **kw), load).requests
    assert float(s["queue_s"][1]) > 0.01 and s["preemptions"].sum() == 0
    v = simulate(_one(engine="vllm", **kw), load).requests
    assert float(v["queue_s"][1]) < 0.002


def test_tgi_reserves_max_new_tokens_at_admission() -> None:
    """150 one-token blocks: A takes 16 + 100 = 116 at admission (usage 116/150 after the first
    step), so B (another 116) waits until A finishes, and nothing is ever preempted."""
    load = _trace((0.0, 16, 100), (0.0, 16, 100))
    res = simulate(_one(engine="tgi", kv_blocks=150, block_size=1, prefix_caching=False), load,
                   sample_interval_s=1e-9)
    df = res.requests
    assert float(df["queue_s"][1]) == float(df["e2e_s"][0])
    assert res.preemptions == 0
    assert res.timeseries["kv_cache_usage"][0] == pytest.approx(116 / 150)


def test_tgi_prefill_budget_is_what_decodes_leave(steps: list[Any]) -> None:
    """max_batch_prefill_tokens 64: with A decoding, B's 100-token prompt gets 64 - 1 = 63
    tokens, then the other 37, each step carrying A's decode first."""
    load = _trace((0.0, 8, 40), (0.002, 100, 2))
    simulate(_one(engine="tgi", max_num_batched_tokens=64, block_size=1), load)
    with_b = [s[2:] for s in steps if 1 in s[2]]
    assert with_b[:2] == [([0, 1], [1, 63]), ([0, 1], [1, 37])]


def test_unknown_engine_policy_is_refused() -> None:
    with pytest.raises(Exception, match="no scheduling policy"):
        toy_replica(M, engine="orca")


def test_sglang_receive_interval_sees_new_requests_at_its_polls(steps: list[Any]) -> None:
    """SGLang's `--scheduler-recv-interval` R = 10: A (100 + 60) decodes alone; B (100 + 5)
    arrives at 10 ms. After A's prefill the scheduler polls at once (the prefill weighs 1,000),
    then every 10 decode steps: B is seen at the first poll after it arrived (decode step 10,
    20, ... of A), not at the step in flight as with R = 1, and is prefilled alone then. Two
    arrivals between the same polls are prefilled in one step. An idle replica polls at once.
    Stepping through every decode gives the same times."""
    load = _trace((0.0, 100, 60), (0.01, 100, 5))
    kw: dict[str, Any] = {"engine": "sglang", "block_size": 1, "prefix_caching": False}
    off = simulate(_one(**kw), load).requests
    on = simulate(_one(recv_interval=10, **kw), load).requests
    t_a = M.prefill_alone_s(100, 2048)
    assert float(on["ttft_s"][0]) == float(off["ttft_s"][0]) == pytest.approx(t_a)  # idle: at once
    _, poll = _decode_until(t_a, 0.01, every=10)
    np.testing.assert_allclose(float(on["ttft_s"][1]),
                               poll - 0.01 + M.prefill_alone_s(100, 2048), rtol=1e-12)
    assert float(on["ttft_s"][1]) > float(off["ttft_s"][1])
    stepped = simulate(_one(recv_interval=10, **kw), load, decode_runs=False).requests
    np.testing.assert_allclose(stepped["ttft_s"].to_numpy(), on["ttft_s"].to_numpy(), rtol=1e-12)
    # B and C arrive between the same two polls: one prefill step of both
    steps.clear()
    three = _trace((0.0, 100, 60), (0.01, 100, 5), (0.0105, 100, 5))
    both = simulate(_one(recv_interval=10, **kw), three).requests
    assert 0.01 + float(both["ttft_s"][1]) == pytest.approx(0.0105 + float(both["ttft_s"][2]))
    assert any(p == 2 and d == 0 for p, d, _, _ in steps)
    with pytest.raises(Exception, match="SGLang setting"):
        toy_replica(M, engine="vllm", recv_interval=10)
    with pytest.raises(Exception, match="must be >= 1"):
        toy_replica(M, engine="sglang", recv_interval=0)
