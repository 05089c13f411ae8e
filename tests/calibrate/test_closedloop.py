"""The analytic closed-loop predictor: the TTFT overhead is a constant added to TTFT only."""

from __future__ import annotations

import numpy as np

from fleetplan.calibrate import bundled_points_path, prepare, read_points
from fleetplan.calibrate.closedloop import FIT_FIELDS, predict
from fleetplan.perf import DEFAULT_EFFICIENCY


def _write_points(path, head: list[str], rows) -> str:  # type: ignore[no-untyped-def]
    """A points CSV of `rows` under the columns `head` at `path`; its path as a string."""
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, head)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return str(path)


def test_ttft_overhead_adds_to_ttft_only() -> None:
    _, _, pts = read_points(bundled_points_path())
    prep = prepare(pts[:200])
    n = len(prep.sup)
    eff = {f: np.full(n, float(getattr(DEFAULT_EFFICIENCY, f))) for f in FIT_FIELDS}
    a0, b0 = predict(prep.inputs, eff, 0.1, 0.25)
    over = np.linspace(0.0, 0.2, n)
    a1, b1 = predict(prep.inputs, eff, 0.1, 0.25, 1.0, over)
    np.testing.assert_allclose(a1 - a0, over, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(b1, b0)
    # The efficiency's request overhead is such a constant too.
    eff2 = {**eff, "request_overhead_s": eff["request_overhead_s"] + over}
    a2, b2 = predict(prep.inputs, eff2, 0.1, 0.25)
    np.testing.assert_allclose(a2 - a0, over, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(b2, b0)


def test_attention_dp_reading_of_replicated_kv_layouts() -> None:
    from fleetplan.calibrate.closedloop import attention_dp_variant
    from fleetplan.perf import Deployment, RooflineStepModel, StepBatch

    mla = Deployment.build("deepseek-r1", "b200", "fp8", "trtllm", tp=8, ep=8)
    alt = attention_dp_variant(mla)
    assert alt is not None
    assert (alt.tp, alt.attention_dp, alt.ep, alt.gpus) == (1, 8, 8, mla.gpus)
    # At a large batch the replicated MLA KV dominates TP decode; DP splits it 8 ways.
    b = StepBatch(decode_seqs=1024, decode_ctx_tokens=1024 * 2048)
    assert RooflineStepModel(alt).step_time_s(b) < RooflineStepModel(mla).step_time_s(b)
    # GQA with TP up to the KV heads shards the KV: no other reading.
    assert attention_dp_variant(Deployment.build("llama-3.1-70b", "h100-sxm", "fp8", "vllm",
                                                 tp=8)) is None
    assert attention_dp_variant(Deployment.build("deepseek-r1", "b200", "fp8", "trtllm",
                                                 tp=1, ep=8, attention_dp=8)) is None


def test_layout_that_cannot_hold_the_weights_is_unsupported_and_says_why() -> None:
    _, _, pts = read_points(bundled_points_path())
    prep = prepare(pts)
    why = [r for r in prep.reasons if r and "cannot have run as recorded" in r]
    assert why, "the bundled data has rows with missing layout fields"
    assert all("GiB of" in r and "weights" in r for r in why)


def test_agg_layout_spreads_clients_beyond_the_engine_batch() -> None:
    from fleetplan.calibrate.points import Layout, agg_layout

    lay = Layout(tp=2, ep=1)
    assert agg_layout(lay, 16, 16) == lay  # concurrency = batch: as recorded
    assert agg_layout(lay, 16, 0) == lay  # batch unknown
    assert agg_layout(lay, 15, 4) == lay  # not a multiple: as recorded
    # k = TP: tp_size is the world size of an attention-DP engine, batch per rank
    assert agg_layout(lay, 8, 4) == Layout(tp=1, attention_dp=2, ep=1)
    # otherwise k identical instances
    assert agg_layout(lay, 448, 14) == Layout(tp=2, ep=1, workers=32)
    dp = Layout(tp=1, attention_dp=4, ep=4)
    assert agg_layout(dp, 256, 64) == dp  # batch per rank x ranks = concurrency


def test_aggregated_tp_that_cannot_split_the_heads_read_as_attention_dp() -> None:
    """DeepSeek-R1 recorded as TP 72 (128 heads do not split 72 ways) is an attention-DP engine;
    a TP 8 layout whose replicated KV cannot hold its clients runs as recorded (the clients
    beyond its KV slots wait: fewer running than clients)."""
    from fleetplan.calibrate.closedloop import agg_deployment
    from fleetplan.calibrate.features import resolve

    _, _, pts = read_points(bundled_points_path())
    big = next(p for p in pts if p.mode == "agg" and p.agg is not None and p.agg.tp == 72
               and p.concurrency >= 4096 and "DeepSeek-R1" in p.model)
    dep = resolve(big).agg
    assert dep is not None
    chosen = agg_deployment(dep)
    assert (chosen.tp, chosen.attention_dp) == (1, 72)  # 128 heads do not split 72 ways
    prep = prepare([p for p in pts if p.mode == "agg" and p.agg is not None and p.agg.tp == 8
                    and p.agg.attention_dp == 1 and p.concurrency >= 512
                    and p.model == "deepseek-ai/DeepSeek-R1" and p.backend == "sglang"])
    assert len(prep.sup) > 0
    for i, (p, r) in enumerate(zip(prep.sup, prep.resolved, strict=True)):
        assert r.agg is not None and agg_deployment(r.agg) is r.agg
        # 1,024 / 1,024 fits all 512 (measured TTFT 3.1 s); the 9,216-token runs do not:
        # clients wait for a KV slot (measured 119 s and 159 s)
        if p.isl + p.osl > 2048:
            assert prep.inputs.running[i] < prep.inputs.clients[i]
            assert p.ttft_s is not None and p.ttft_s > 100.0
        else:
            assert prep.inputs.running[i] == prep.inputs.clients[i]
    small = next(p for p in pts if p.mode == "agg" and p.agg is not None and p.agg.tp == 8
                 and p.agg.attention_dp == 1 and p.concurrency <= 8 and "Kimi" in p.model)
    sdep = resolve(small).agg
    assert sdep is not None and agg_deployment(sdep) is sdep  # KV fits as recorded
    dense = next(p for p in pts if p.mode == "agg" and "Llama-3.1-70B" in p.model
                 and p.agg is not None and p.agg.tp > 1)
    ddep = resolve(dense).agg
    assert ddep is not None and agg_deployment(ddep) is ddep  # GQA: no other reading


def test_cohort_fraction_scales_the_steady_state_cohort_only() -> None:
    """f = 1: the prompts of a token budget come back together (the cohort min(B, k) is
    prefilled in the step a request waits for); f = 0: each arrives alone. Hand check on the
    wave-free, queue-free TTFT: the difference is (min(B, k) - 1) x, x = t_mix - t_dec; those
    cohort-mates' prefills leave the TPOT (a request's decode meets only the prefills outside its
    cohort): it falls by (min(B, k) - 1) x / (OSL - 1)."""
    from fleetplan.calibrate.closedloop import mixed_step_time, step_time

    _, _, pts = read_points(bundled_points_path())
    prep = prepare(pts[:300])
    x = prep.inputs
    n = len(prep.sup)
    eff = {f: np.full(n, float(getattr(DEFAULT_EFFICIENCY, f))) for f in FIT_FIELDS}
    a1, b1 = predict(x, eff, 0.0, 1e-9, 1.0, 0.0, 1.0)
    a0, b0 = predict(x, eff, 0.0, 1e-9, 1.0, 0.0, 0.0)
    ah, _ = predict(x, eff, 0.0, 1e-9, 1.0, 0.0, 0.5)
    # no slot wait; SGLang's receive interval sets a cohort of its own (its own test)
    agg = ~x.disagg & (x.running == x.clients) & (x.recv_iters <= 1)
    extra = np.maximum(mixed_step_time(x.mix, x.p1, x.dec, eff) - step_time(x.dec, eff), 0.0)
    want = (np.minimum(x.running, x.k) - 1.0) * extra
    osl1 = np.maximum(x.osl - 1.0, 1.0)
    np.testing.assert_allclose((b0 - b1)[agg], want[agg] / osl1[agg], rtol=1e-6, atol=1e-12)
    np.testing.assert_array_equal(b1[x.disagg], b0[x.disagg])  # no cohorts there
    np.testing.assert_allclose((a1 - a0)[agg], want[agg], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose((ah - a0)[agg], 0.5 * want[agg], rtol=1e-6, atol=1e-9)
    assert agg.sum() > 50 and (want[agg] > 0).sum() > 50
    np.testing.assert_array_equal(a1[x.disagg], a0[x.disagg])


def test_start_up_wave_of_fewer_prompts_than_a_budget_is_one_smaller_step() -> None:
    """w = 1 (TTFT = the start-up wave): N <= k prompts are one step of N prompts, between one
    prompt alone (N = 1) and a full budget of k (N = k); more take ceil(N/k) full steps."""
    from fleetplan.calibrate.closedloop import step_time

    _, _, pts = read_points(bundled_points_path())
    prep = prepare(pts)
    x = prep.inputs
    n = len(prep.sup)
    eff = {f: np.full(n, float(getattr(DEFAULT_EFFICIENCY, f))) for f in FIT_FIELDS}
    eff["request_overhead_s"][:] = 0.0
    a, _ = predict(x, eff, 1.0, 1e-9)
    t1, tw = step_time(x.p1, eff), step_time(x.pw, eff)
    ok = ~x.disagg & (x.running == x.clients)
    few = ok & (x.n <= x.k) & (x.k > 1)
    many = ok & (x.n > x.k)
    assert few.sum() > 20 and many.sum() > 20
    want_few = t1 + (x.n - 1.0) / np.maximum(x.k - 1.0, 1.0) * (tw - t1)
    np.testing.assert_allclose(a[few], want_few[few], rtol=1e-9)
    assert np.all(a[few] <= tw[few] + 1e-12)
    np.testing.assert_allclose(a[many], (tw * (np.ceil(x.n / x.k) + 1.0) / 2.0)[many], rtol=1e-9)


def test_tp_recorded_as_moe_tp_times_ep_beyond_the_domain_is_read_within_it() -> None:
    """tp_size = moe_tp x moe_ep (8 x 8 = 64) on an 8-GPU HGX system: read as TP 8, EP 8; a
    product of unequal factors, or one within the domain, stays as recorded; a genuinely
    multi-node TP is served across domains; the only rows left unsupported are layouts that
    cannot hold their weights."""
    from fleetplan.calibrate.features import resolve, scale_up_reading
    from fleetplan.calibrate.points import Layout

    assert scale_up_reading(Layout(tp=64, ep=8, moe_tp=8), 8) == Layout(tp=8, ep=8)
    assert scale_up_reading(Layout(tp=16, ep=4, moe_tp=4), 8) == Layout(tp=4, ep=4)
    assert scale_up_reading(Layout(tp=16, ep=2, moe_tp=8), 8) == Layout(tp=16, ep=2, moe_tp=8)
    assert scale_up_reading(Layout(tp=16, ep=4, moe_tp=4), 72) == Layout(tp=16, ep=4, moe_tp=4)
    _, _, pts = read_points(bundled_points_path())
    wide = [p for p in pts if p.mode == "agg" and p.agg is not None and p.agg.tp == 64
            and p.system == "h200_sxm" and p.model == "deepseek-ai/DeepSeek-R1"]
    assert wide
    dep = resolve(wide[0]).agg
    assert dep is not None and (dep.tp, dep.ep) == (8, 8)
    # Disaggregated DeepSeek-R1 pools on two H100 nodes (TP 16): a genuine multi-node layout,
    # supported through the catalog's scale-out network (hierarchical all-reduce).
    multi = [p for p in pts if p.system == "h100_sxm" and p.mode == "disagg"
             and p.decode is not None and p.decode.tp == 16]
    assert multi
    r = resolve(multi[0])
    assert r.decode is not None and r.decode.tp == 16
    prep = prepare(pts)
    left = [r for r in prep.reasons if r]
    assert left and all("cannot have run as recorded" in r for r in left)


def test_padding_slot_held_by_trtllm_before_1_1_only() -> None:
    """NVIDIA/TensorRT-LLM#7998 (2025-09-25): before it, the CUDA-graph padding request held a
    slot of max_batch_size."""
    from dataclasses import replace

    from fleetplan.calibrate.closedloop import padding_slot_held

    _, _, pts = read_points(bundled_points_path())
    p = pts[0]
    for backend, version, want in [("trtllm", "1.0.0rc3", True), ("trtllm", "0.21.0", True),
                                   ("trtllm", "1.1.0rc2.post2", False),
                                   ("trtllm", "1.2.0rc6.post2", False),
                                   ("trtllm", "gpt-oss-dev", False), ("trtllm", "", False),
                                   ("vllm", "0.12.0", False), ("sglang", "0.5.9", False)]:
        assert padding_slot_held(replace(p, backend=backend, backend_version=version)) is want


def test_held_padding_slot_makes_one_client_wait() -> None:
    """A held slot (share 1) leaves N - 1 slots for N clients: each request waits for a slot
    for one E2E / (N - 1); points whose engine held none are unchanged."""
    _, _, pts = read_points(bundled_points_path())
    prep = prepare(pts)
    x = prep.inputs
    n = len(prep.sup)
    eff = {f: np.full(n, float(getattr(DEFAULT_EFFICIENCY, f))) for f in FIT_FIELDS}
    a0, b0 = predict(x, eff, 0.0, 1e-9, 1.0, 0.0, 1.0, 0.0)
    ah, _ = predict(x, eff, 0.0, 1e-9, 1.0, 0.0, 1.0, 0.5)
    a1, b1 = predict(x, eff, 0.0, 1e-9, 1.0, 0.0, 1.0, 1.0)
    held = x.slot_ranks > 0
    assert held.sum() > 300  # the TensorRT-LLM 1.0.0rc3 aggregated rows
    np.testing.assert_array_equal(a1[~held], a0[~held])
    np.testing.assert_array_equal(b1[~held], b0[~held])
    one = held & (x.slot_ranks == 1) & (x.running == x.slot_limit) & (x.clients >= 4)
    assert one.sum() > 100
    # the wait is (TTFT before it + decode) / (N - 1); the step of N - 1 sequences is a little
    # faster than that of N, so the TTFT grows by at least 90% of decode / (N - 1)
    wait_floor = 0.9 * x.osl * b1 / np.maximum(x.clients - 1.0, 1.0)
    assert np.all((a1 - a0)[one] >= wait_floor[one])
    assert np.all((a0 < ah)[one]) and np.all((ah < a1)[one])


def test_prefill_pool_of_unrecorded_size_is_read_as_sized_to_its_load() -> None:
    """Disaggregated rows without `prefill_num_workers`: the prefill pool is read as the
    N t_p1 / (cycle u) workers that run at utilisation u (at least the one the empty field
    reads as): TTFT by hand from the step times; rows that record their pool, and every TPOT,
    are unchanged; a pool sized at a lower utilisation (more workers) never waits longer."""
    from fleetplan.calibrate.closedloop import step_time

    _, _, pts = read_points(bundled_points_path())
    prep = prepare(pts)
    x = prep.inputs
    n = len(prep.sup)
    unknown = x.pool_unknown
    recorded = np.array([p.mode == "disagg" and p.prefill_workers_recorded for p in prep.sup])
    assert unknown.sum() > 800 and recorded.sum() > 150
    assert not np.any(unknown & ~x.disagg)
    eff = {f: np.full(n, float(getattr(DEFAULT_EFFICIENCY, f))) for f in FIT_FIELDS}
    w, q, u = 0.1, 0.25, 0.8
    a0, b0 = predict(x, eff, w, q)
    a1, b1 = predict(x, eff, w, q, pool_load=u)
    a2, _ = predict(x, eff, w, q, pool_load=0.5)
    np.testing.assert_array_equal(b1, b0)
    np.testing.assert_array_equal(a1[~unknown], a0[~unknown])
    assert np.all(a2[unknown] <= a1[unknown] + 1e-12) and np.all(a1 <= a0 + 1e-12)
    # by hand: k prompts per prefill step (one per attention-DP rank), the decode step of the
    # faster layout reading
    t_p, t_w, k = step_time(x.p1, eff), step_time(x.pw, eff), x.k
    t_d = np.minimum(step_time(x.dec, eff), step_time(x.dec_alt, eff))
    cycle = t_p + (x.osl - 1.0) * t_d  # TTFT + (OSL - 1) TPOT
    workers = np.maximum(1.0, x.n * t_p / cycle / u)
    rho = np.clip(x.n * t_p / (workers * cycle), 0.0, 0.95)
    steady = t_p + q * rho / (1.0 - rho) * t_p
    m = x.n / workers
    part = np.where(k > 1, (np.clip(m, 1.0, k) - 1.0) / np.maximum(k - 1.0, 1.0), 1.0)
    wave = np.where(m <= k, t_p + part * (t_w - t_p), t_w * (np.ceil(m / k) + 1.0) / 2.0)
    want = eff["request_overhead_s"] + w * wave + (1.0 - w) * steady
    np.testing.assert_allclose(a1[unknown], want[unknown], rtol=1e-12)
    # at high concurrency the sized pool matters: far below the single-worker reading
    big = unknown & (x.n >= 1024)
    assert big.sum() > 50 and np.median(a1[big] / a0[big]) < 0.5


def test_reader_says_whether_the_prefill_pool_was_recorded() -> None:
    _, _, pts = read_points(bundled_points_path())
    dis = [p for p in pts if p.mode == "disagg"]
    # the DeepSeek-R1 disaggregated rows leave every worker and batch field empty, the
    # DeepSeek-V3 ones record them
    assert all(not p.prefill_workers_recorded for p in dis if p.model == "deepseek-ai/DeepSeek-R1")
    assert all(p.prefill_workers_recorded for p in dis if p.model == "deepseek-ai/DeepSeek-V3")
    assert all(p.prefill_workers_recorded for p in pts if p.mode == "agg")


def test_decode_worker_of_unrecorded_count_runs_at_most_what_its_kv_holds() -> None:
    """Disaggregated rows without `decode_num_workers`: each decode worker runs at most the
    sequences its KV pools hold at the mean context (the clients beyond took more workers),
    in each reading of the layout; rows that record their workers keep ceil(N / D)."""
    from fleetplan.calibrate.closedloop import (
        attention_dp_variant,
        dp_if_unsplit,
        held_context,
        kv_capacity,
    )
    from fleetplan.calibrate.features import FEATURES

    _, _, pts = read_points(bundled_points_path())
    prep = prepare(pts)
    x = prep.inputs
    col = FEATURES.index("seqs_r")
    capped = 0
    for i, p in enumerate(prep.sup):
        if p.mode != "disagg":
            continue
        r = prep.resolved[i]
        assert r.decode is not None and p.decode is not None
        dec = dp_if_unsplit(r.decode)  # TP that cannot split the heads: attention DP
        per = -(-p.concurrency // p.decode.workers)
        if p.decode_workers_recorded:
            assert x.dec[i, col] * dec.attention_dp == per
            continue
        cap = kv_capacity(dec, held_context(dec, p.mean_isl, p.mean_osl))
        want = per if cap is None else min(per, cap)
        assert x.dec[i, col] * dec.attention_dp == want
        alt = attention_dp_variant(dec)
        if alt is not None:
            # None: that reading leaves no pool (all clients)
            cap_alt = kv_capacity(alt, held_context(alt, p.mean_isl, p.mean_osl))
            if cap_alt is not None and cap is not None:
                assert cap_alt >= cap  # DP shards the KV
            want_alt = per if cap_alt is None else min(per, cap_alt)
            assert x.dec_alt[i, col] * alt.attention_dp == want_alt
        capped += want < per
    assert capped > 100
    # the clients (and so the queueing and wave arithmetic) are unchanged
    assert np.all(x.clients[x.disagg] == x.running[x.disagg])


def test_tp_that_cannot_split_the_heads_is_read_as_attention_dp() -> None:
    """DeepSeek-R1 has 128 attention heads: a recorded TP 36 cannot shard them, so it is the
    world size of an attention-DP engine (36 ranks of one GPU, experts sharded as recorded);
    TP 32 (a divisor) and layouts without an attention-DP reading stay as recorded."""
    from dataclasses import replace

    from fleetplan.calibrate.closedloop import dp_if_unsplit, heads_unsplit
    from fleetplan.perf import Deployment

    tp32 = Deployment.build("deepseek-r1", "gb200", "fp4", "trtllm", tp=32)
    tp36 = replace(tp32, tp=36)  # as a measured row records it (`build` refuses it for plans)
    assert heads_unsplit(tp36)
    dp = dp_if_unsplit(tp36)
    assert (dp.tp, dp.attention_dp, dp.gpus) == (1, 36, 36)
    assert not heads_unsplit(tp32) and dp_if_unsplit(tp32) is tp32
    llama = Deployment.build("llama-3.1-70b", "h100-sxm", "fp8", "vllm", tp=8)
    assert not heads_unsplit(llama)
    # the bundled DeepSeek-R1 GB200 rows recorded so are served by the DP reading
    _, _, pts = read_points(bundled_points_path())
    rows = [p for p in pts if p.mode == "agg" and p.system == "gb200" and p.agg is not None
            and "DeepSeek-R1" in p.model and 128 % p.agg.tp]
    assert len(rows) >= 20
    prep = prepare(rows)
    from fleetplan.calibrate.closedloop import agg_deployment

    for r in prep.resolved:
        assert r.agg is not None
        assert agg_deployment(r.agg).attention_dp == r.agg.tp


def test_batch_wait_iterations_by_hand() -> None:
    """Mean held iterations of TensorRT-LLM batch waiting (`batch_wait_iterations`): a lone
    prompt (no arrivals) waits the whole timeout; with arrivals at 0.1 per iteration over a
    20-iteration wait, 1 opener + 2 arrivals wait (20 + 2 x 10) / 3; a threshold reached by
    the opening cohort, or no request decoding, means no wait; the threshold reached by the
    arrivals cuts the span (3 more prompts needed at 0.5 per iteration: 6 iterations)."""
    from fleetplan.calibrate.closedloop import batch_wait_iterations

    f = np.array
    got = batch_wait_iterations(
        iters=f([20.0, 20.0, 20.0, 20.0, 20.0, 0.0]),
        tokens=f([np.inf, np.inf, 1000.0, np.inf, 4000.0, np.inf]),
        isl=f([1000.0] * 6),
        running=f([3.0, 3.0, 3.0, 0.0, 3.0, 3.0]),
        cohort=f([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        arrivals=f([0.0, 0.1, 0.1, 0.1, 0.5, 0.1]),
    )
    span = 6.0
    want = [20.0, (20.0 + 0.1 * 20 * 20 / 2) / (1 + 0.1 * 20), 0.0, 0.0,
            (span + 0.5 * span * span / 2) / (1 + 0.5 * span), 0.0]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_batch_wait_recipe_rows_wait_the_timeout_in_steady_state() -> None:
    """The recipe rows (`recipes.yaml`: InferenceMAX Llama-3.1-70B TensorRT-LLM 1k/1k, TP < 8)
    carry batch waiting; their steady-state TTFT grows by the held decode steps, the start-up
    wave does not (nothing decodes then); every other row and every TPOT is unchanged."""
    from dataclasses import replace

    _, _, pts = read_points(bundled_points_path())
    rec = [p for p in pts if "inferencemax-llama70b-trtllm-1k1k" in p.recipe]
    assert len(rec) >= 30
    assert sum(p.batch_wait_iters > 0 for p in pts) == len(rec)
    assert all(p.backend == "trtllm" and p.isl == p.osl == 1024 and p.agg is not None
               and p.agg.tp < 8 and p.batch_wait_iters == 20 for p in rec)
    prep = prepare(pts)
    off = prepare([replace(p, batch_wait_iters=0) for p in pts])
    n = len(prep.sup)
    eff = {f: np.full(n, float(getattr(DEFAULT_EFFICIENCY, f))) for f in FIT_FIELDS}
    # prompts arrive one by one (cohort fraction 0): none reaches the threshold alone
    a1, b1 = predict(prep.inputs, eff, 0.1, 0.25, 1.0, 0.0, 0.0)
    a0, b0 = predict(off.inputs, eff, 0.1, 0.25, 1.0, 0.0, 0.0)
    on = prep.inputs.wait_iters > 0
    assert on.sum() == len(rec)
    np.testing.assert_array_equal(b1, b0)
    np.testing.assert_array_equal(a1[~on], a0[~on])
    assert np.all(a1[on] > a0[on])
    # w = 1 (only the start-up wave) is untouched by the wait
    w1, _ = predict(prep.inputs, eff, 1.0, 0.25, 1.0, 0.0, 0.0)
    w0, _ = predict(off.inputs, eff, 1.0, 0.25, 1.0, 0.0, 0.0)
    np.testing.assert_allclose(w1[on], w0[on], rtol=1e-12)


def test_recipe_fills_only_empty_setting_columns_and_bad_values_say_where(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import csv

    import pytest

    from fleetplan.errors import InputFileError

    src = bundled_points_path()
    with open(src, newline="") as fh:
        rows = list(csv.DictReader(fh))
    head = [*rows[0], "batch_wait_timeout_iters", "batch_wait_max_tokens_ratio",
            "max_num_tokens"]
    row = next(r for r in rows if "Llama-3.1-70B" in r["model_path"] and r["backend"] == "trtllm"
               and r["isl"] == r["osl"] == "1024" and r["tp_size"] == "2")
    other = next(r for r in rows if "Llama-3.1-70B" in r["model_path"]
                 and r["backend"] == "vllm")

    def write(*rs: dict[str, str]) -> str:
        return _write_points(tmp_path / "pts.csv", head, rs)

    _, _, (filled, given, untouched) = read_points(write(
        row, {**row, "batch_wait_timeout_iters": "0", "max_num_tokens": "16384"}, other))
    # both rules that match apply: the 1k/1k batch waiting and the client's range ratio
    assert (filled.batch_wait_iters, filled.batch_wait_ratio, filled.recipe) == (
        20, 0.9, "inferencemax-llama70b-trtllm-1k1k+inferencemax-random-range-ratio")
    assert filled.range_ratio == 0.8
    assert (given.batch_wait_iters, given.batch_wait_ratio, given.max_num_tokens) == (0, 0.9, 16384)
    assert (untouched.batch_wait_iters, untouched.recipe, untouched.range_ratio) == (
        0, "inferencemax-random-range-ratio", 0.8)
    with pytest.raises(InputFileError) as e:
        read_points(write({**row, "batch_wait_max_tokens_ratio": "1.5"}))
    assert e.value.field == "batch_wait_max_tokens_ratio" and e.value.line == 2
    with pytest.raises(InputFileError) as e:
        read_points(write({**other, "max_num_tokens": "-1"}))
    assert e.value.field == "max_num_tokens"


def test_engines_that_reserve_to_completion_hold_isl_plus_osl_per_running_sequence() -> None:
    """TensorRT-LLM's default capacity scheduler (GUARANTEED_NO_EVICT) reserves a request's
    blocks to completion when it admits it, so its running batch is bounded by ISL + OSL per
    sequence; vLLM allocates as tokens are made, so its batch holds the mean context
    ISL + OSL/2. By hand, Llama-3.1-70B FP8 (FP8 KV) at TP 2 on H100 (81,559 MiB), ISL 2,048,
    OSL 1,024: 80 layers x 8 KV heads / 2 x 128 x 2 (K, V) x 1 B = 81,920 B per token per GPU."""
    from fleetplan.calibrate.closedloop import held_context, kv_capacity
    from fleetplan.perf import Deployment

    trt = Deployment.build("llama-3.1-70b", "h100-sxm", "fp8", "trtllm", tp=2)
    vllm = Deployment.build("llama-3.1-70b", "h100-sxm", "fp8", "vllm", tp=2)
    assert held_context(trt, 2048, 1024) == 3072
    assert held_context(vllm, 2048, 1024) == 2560
    # TRT-LLM: 0.9 of what weights (36,327,526,400 B), activations (1,072,300,032 B) and the
    # 3 GB overhead leave of 85,520,809,984 B: 40,608,885,196.8 B / (81,920 x 3,072) = 161.4
    assert kv_capacity(trt, held_context(trt, 2048, 1024)) == 161
    # vLLM: 0.9 of all memory less the rest, 36,568,902,553.6 B / (81,920 x 2,560) = 174.4
    assert kv_capacity(vllm, held_context(vllm, 2048, 1024)) == 174
    # the running batch of the bundled TensorRT-LLM aggregated rows is bounded the same way
    _, _, pts = read_points(bundled_points_path())
    prep = prepare(pts)
    from fleetplan.calibrate.closedloop import agg_deployment

    seen = 0
    for i, p in enumerate(prep.sup):
        r = prep.resolved[i]
        if p.mode != "agg" or r.agg is None or r.engine.name != "trtllm":
            continue
        dep = agg_deployment(r.agg)
        cap = kv_capacity(dep, p.mean_isl + p.mean_osl)
        if cap is not None and cap < prep.inputs.clients[i]:
            assert prep.inputs.running[i] == cap
            seen += 1
    assert seen > 0


def test_random_range_ratio_rows_are_predicted_at_the_mean_lengths(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A benchmark client with `--random-range-ratio r` draws lengths from the integers
    [int(r x L), L]: by hand, L = 1,024, r = 0.8: [819, 1,024], mean 921.5 -> 922; L = 8,192:
    [6,553, 8,192], mean 7,372.5 -> 7,372 (half to even). The InferenceMAX / InferenceX rows
    take r = 0.8 from their recipe, aiconfigurator's fixed-length runs none; a row's own value
    wins and a bad one says where. The analytic inputs of a row with r equal those of the same
    row with its mean lengths fixed."""
    import csv
    from dataclasses import replace

    import pytest

    from fleetplan.calibrate.closedloop import build_inputs
    from fleetplan.calibrate.features import resolve
    from fleetplan.calibrate.points import mean_length
    from fleetplan.errors import InputFileError

    assert (mean_length(1024, 0.8), mean_length(8192, 0.8)) == (922, 7372)
    assert mean_length(1024, 1.0) == 1024 and mean_length(1, 0.5) == 1
    src = bundled_points_path()
    with open(src, newline="") as fh:
        rows = list(csv.DictReader(fh))
    imax = next(r for r in rows if "db-dump/" in r["silicon_data_source"]
                and r["mode"] == "agg" and r["isl"] == "8192")
    aic = next(r for r in rows if "aic-auto-gap-analysis" in r["silicon_data_source"])
    head = [*rows[0], "range_ratio"]

    def write(*rs: dict[str, str]) -> str:
        return _write_points(tmp_path / "pts.csv", head, rs)

    _, _, (a, b, c) = read_points(write(imax, aic, {**imax, "range_ratio": "1"}))
    assert a.range_ratio == 0.8 and "inferencemax-random-range-ratio" in a.recipe
    assert (a.mean_isl, a.mean_osl) == (7372, mean_length(int(imax["osl"]), 0.8))
    assert (b.range_ratio, b.mean_isl) == (1.0, b.isl)
    assert "inferencemax-random-range-ratio" not in b.recipe
    assert (c.range_ratio, c.mean_isl) == (1.0, c.isl)
    for bad in ("0", "1.2", "x"):
        with pytest.raises(InputFileError) as e:
            read_points(write({**aic, "range_ratio": bad}))
        assert e.value.field == "range_ratio" and e.value.line == 2
    fixed = replace(a, isl=a.mean_isl, osl=a.mean_osl, range_ratio=1.0)
    xa, xf = (build_inputs([q], [resolve(q)]) for q in (a, fixed))
    for f in ("dec", "p1", "pw", "mix", "k", "osl", "isl", "running", "clients"):
        np.testing.assert_array_equal(getattr(xa, f), getattr(xf, f))


def test_kv_memory_fraction_of_aiconfigurator_trtllm_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """aiconfigurator's generator writes TensorRT-LLM's `free_gpu_memory_fraction` 0.80 (its
    templates' default) where trtllm-serve's own is 0.9: its TensorRT-LLM rows take 0.8 from
    the recipe rule, its vLLM rows and other harnesses' rows nothing; the KV pool of the fraction
    of free memory shrinks by 8/9. By hand, Qwen3-32B FP8 on one H100 (85,520,809,984 B), ISL
    2,048 + OSL 512 reserved to completion, 64 layers x 8 KV heads x 128 x 2 x 1 B = 131,072 B
    per token: free = 85,520,809,984 - 34,317,931,520 (weights) - 1,329,987,584 (activations)
    - 3,000,000,000 = 46,872,890,880 B; / (2,560 x 131,072) = 139.7 sequences' worth; x 0.9
    -> 125, x 0.8 -> 111. A row's own value wins and a bad one says where."""
    import csv

    import pytest

    from fleetplan.calibrate.closedloop import held_context, kv_capacity
    from fleetplan.calibrate.features import resolve
    from fleetplan.errors import InputFileError

    with open(bundled_points_path(), newline="") as fh:
        rows = list(csv.DictReader(fh))
    trt = next(r for r in rows if "aic-auto-gap-analysis" in r["silicon_data_source"]
               and r["backend"] == "trtllm" and "Qwen3-32B" in r["model_path"]
               and r["tp_size"] == "1" and r["isl"] == "2048" and r["osl"] == "512")
    vllm = next(r for r in rows if "aic-auto-gap-analysis" in r["silicon_data_source"]
                and r["backend"] == "vllm")
    imax = next(r for r in rows if "wip=" in r["silicon_data_source"]
                and r["backend"] == "trtllm")
    head = [*rows[0], "kv_memory_fraction"]
    path = _write_points(tmp_path / "pts.csv", head,
                         [trt, vllm, imax, {**trt, "kv_memory_fraction": "0.9"}])
    _, _, (a, b, c, d) = read_points(path)
    assert (a.kv_memory_fraction, a.recipe) == (0.8, "aiconfigurator-trtllm-kv-fraction")
    assert b.kv_memory_fraction == 0.0 and c.kv_memory_fraction == 0.0
    assert d.kv_memory_fraction == 0.9 and d.recipe == ""
    ra, rd = resolve(a), resolve(d)
    assert ra.engine.gpu_memory_utilization.value == 0.8
    assert "kv_memory_fraction" in ra.engine.gpu_memory_utilization.source
    assert ra.agg is not None and rd.agg is not None
    ctx = held_context(ra.agg, a.mean_isl, a.mean_osl)
    assert ctx == 2560
    assert (kv_capacity(rd.agg, ctx), kv_capacity(ra.agg, ctx)) == (125, 111)
    for bad in ("0", "1.5"):
        with pytest.raises(InputFileError) as e:
            read_points(_write_points(tmp_path / "bad.csv", head,
                                      [{**trt, "kv_memory_fraction": bad}]))
        assert e.value.field == "kv_memory_fraction" and e.value.line == 2


def test_sglang_receive_interval_recipes_fill_the_rows_the_recipes_ran() -> None:
    """The InferenceX SGLang recipes (`recipes.yaml`) pass `--scheduler-recv-interval` by model,
    GPU, precision, TP and concurrency: DeepSeek-R1 FP8 on B200 polls every 30 decode steps from
    16 clients at TP 8, every 10 below that and at TP 4; Qwen3.5 FP8 on B200 from 5 clients;
    GLM-5 FP8 and every H200 recipe pass none; aiconfigurator's own runs are not matched."""
    _, _, pts = read_points(bundled_points_path())
    got = [p for p in pts if p.recv_interval]
    assert len(got) > 300 and all(p.backend == "sglang" and p.mode == "agg" for p in got)
    assert not any(p.system.startswith("h200") or "aic-auto" in p.id for p in got)
    for p in got:
        assert p.agg is not None
        m, n = p.model, p.concurrency
        if "DeepSeek" in m and p.precision == "fp8":
            tp8 = p.agg.tp * p.agg.attention_dp >= 8
            assert p.recv_interval == (30 if tp8 and n >= 16 else 10), p
        elif "DeepSeek" in m:
            assert p.recv_interval == (30 if n >= 16 else 10), p
        elif "GLM-5" in m:
            assert p.precision == "fp4" and p.recv_interval == 10, p
        elif p.system.startswith("b200") and p.precision in ("fp8", "fp4"):
            assert p.recv_interval == (30 if n > 4 else 10), p
    assert not any(p.recv_interval for p in pts if "GLM-5" in p.model and p.precision == "fp8")


def test_receive_interval_rule_conditions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`precision`, `tp_at_least` and `min_concurrency` select the rule; a value the row gives
    wins (0: off); a negative one is an error naming the line and field."""
    import csv

    import pytest

    from fleetplan.errors import InputFileError

    with open(bundled_points_path(), newline="") as fh:
        rows = list(csv.DictReader(fh))
    head = [*rows[0], "scheduler_recv_interval"]
    base = next(r for r in rows if r["backend"] == "sglang" and "DeepSeek-R1" in r["model_path"]
                and r["system"] == "b200_sxm" and r["precision"] == "fp8" and r["mode"] == "agg"
                and r["tp_size"] == "8" and "silicon_concurrency=64" in r["silicon_data_source"])

    def conc(r: dict[str, str], n: int) -> dict[str, str]:
        src = r["silicon_data_source"].replace("silicon_concurrency=64", f"silicon_concurrency={n}")
        return {**r, "silicon_data_source": src, "batch_size": str(n)}

    _, _, got = read_points(_write_points(tmp_path / "p.csv", head, [
        base, conc(base, 8), {**base, "tp_size": "4"}, {**base, "system": "h200_sxm"},
        {**base, "scheduler_recv_interval": "0"}, {**base, "precision": "bf16"}]))
    assert [p.recv_interval for p in got] == [30, 10, 10, 0, 0, 0]
    assert "inferencex-sglang-dsr1-fp8-tp8-recv-interval-30" in got[0].recipe
    assert "inferencex-sglang-dsr1-recv-interval-10" in got[1].recipe
    with pytest.raises(InputFileError) as e:
        read_points(_write_points(tmp_path / "q.csv", head,
                                  [{**base, "scheduler_recv_interval": "-3"}]))
    assert (e.value.field, e.value.line) == ("scheduler_recv_interval", 2)


def test_receive_interval_waits_half_a_window_and_gathers_the_window_into_one_cohort() -> None:
    """Hand check of `predict` on the rows with SGLang's receive interval R: against the same
    rows without it (cohort fraction 0, no start-up wave, a vanishing queue factor), the TTFT
    grows by (R - 1) t_d / 2 + (c - 1) x and the TPOT falls by (c - 1) x / (OSL - 1), with the
    window's cohort c = min(1 + lam R, min(B, k)), lam = B t_d / (TTFT_ss + (OSL - 1) TPOT)
    the arrivals per decode step of the loop without it. Other rows are unchanged; attention DP,
    other engines and disaggregated rows never carry it."""
    from dataclasses import replace

    from fleetplan.calibrate.closedloop import mixed_step_time, recv_interval, step_time

    _, _, pts = read_points(bundled_points_path())
    prep = prepare([p for p in pts if p.backend == "sglang" and p.mode == "agg"])
    x = prep.inputs
    off = replace(x, recv_iters=np.zeros_like(x.recv_iters))
    n = len(prep.sup)
    eff = {f: np.full(n, float(getattr(DEFAULT_EFFICIENCY, f))) for f in FIT_FIELDS}
    eff["request_overhead_s"] = np.zeros(n)
    a1, b1 = predict(x, eff, 0.0, 1e-12, 1.0, 0.0, 0.0)
    a0, b0 = predict(off, eff, 0.0, 1e-12, 1.0, 0.0, 0.0)
    on = (x.recv_iters > 1) & (x.running == x.clients)
    assert on.sum() > 200
    t_d = step_time(x.dec, eff)
    extra = np.maximum(mixed_step_time(x.mix, x.p1, x.dec, eff) - t_d, 0.0)
    osl1 = np.maximum(x.osl - 1.0, 1.0)
    lam = x.running * t_d / (a0 + osl1 * b0)
    c = np.minimum(1.0 + lam * x.recv_iters, np.maximum(np.minimum(x.running, x.k), 1.0))
    np.testing.assert_allclose((a1 - a0)[on], (0.5 * (x.recv_iters - 1.0) * t_d
                                               + (c - 1.0) * extra)[on], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose((b0 - b1)[on], ((c - 1.0) * extra / osl1)[on], rtol=1e-6,
                               atol=1e-12)
    same = x.recv_iters <= 1
    np.testing.assert_array_equal(a1[same], a0[same])
    np.testing.assert_array_equal(b1[same], b0[same])
    dsr1 = next(p for p in pts if p.recv_interval == 30 and p.agg is not None)
    dep = prep.resolved[prep.sup.index(dsr1)].agg if dsr1 in prep.sup else None
    assert dep is not None and recv_interval(dsr1, dep) == 30
    assert recv_interval(dsr1, replace(dep, tp=1, attention_dp=dep.tp)) == 0
    assert recv_interval(replace(dsr1, backend="vllm"), dep) == 0
    assert recv_interval(replace(dsr1, mode="disagg"), dep) == 0


def test_inferencex_trtllm_recipes_fill_their_kv_memory_fraction() -> None:
    """The InferenceX TensorRT-LLM recipes cache KV in 0.8 (DeepSeek-R1 on B200; 0.75 for the
    FP8 8k/1k TP 4 runs), 0.75 (DeepSeek-R1 on H200) and 0.85 (gpt-oss-120b) of the memory the
    weights leave free; the Llama-3.1-70B recipes set none (the engine's 0.9 stands); the
    engine the row resolves to carries the fraction."""
    from fleetplan.calibrate.features import resolve

    _, _, pts = read_points(bundled_points_path())
    imax = [p for p in pts if p.backend == "trtllm" and p.mode == "agg" and p.range_ratio < 1]
    want = {("b200_sxm", "DeepSeek"): 0.8, ("h200_sxm", "DeepSeek"): 0.75,
            ("b200_sxm", "gpt-oss"): 0.85, ("h200_sxm", "gpt-oss"): 0.85}
    seen = 0
    for p in imax:
        key = next(((p.system, m) for m in ("DeepSeek", "gpt-oss") if m in p.model), None)
        if key in want:
            tp4_8k = (p.precision == "fp8" and p.isl == 8192 and p.osl == 1024
                      and p.agg is not None and p.agg.tp < 8 and key[0] == "b200_sxm")
            assert p.kv_memory_fraction == (0.75 if tp4_8k else want[key]), p
            seen += 1
        elif "Llama-3.1-70B" in p.model:
            assert p.kv_memory_fraction == 0.0, p
    assert seen > 300
    one = next(p for p in imax if "gpt-oss" in p.model and p.system == "h200_sxm")
    assert float(resolve(one).engine.gpu_memory_utilization.value) == 0.85
