"""`fleetplan simulate --json`: a small closed-loop run, keys and sanity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

ARGS = ["simulate", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--tp", "4",
        "--replicas", "2", "--concurrency", "8", "--isl", "512", "--osl", "64",
        "--requests", "32"]


def test_simulate_json_closed_loop(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "requests.parquet"
    prom = tmp_path / "metrics.txt"
    r = cli(*ARGS, "--json", "--slo-ttft", "2.0", "--out", str(out), "--prometheus", str(prom))
    assert r.code == 0, r.err
    s = r.json()
    for key in ("requests_completed", "ttft_s", "tpot_s", "e2e_s",
                "throughput_output_tokens_per_s", "prefix_cache_hit_rate", "preemptions"):
        assert key in s
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert set(s[key]) >= {"p50", "p90", "p95", "p99", "mean"}
        assert 0 < s[key]["p50"] <= s[key]["p90"] <= s[key]["p95"] <= s[key]["p99"]
    assert s["requests_completed"] == 32
    assert s["ttft_s"]["mean"] < s["e2e_s"]["mean"]
    # A decode step of a 70B model on 4 H100s takes milliseconds, not micro- or whole seconds.
    assert 0.005 < s["tpot_s"]["mean"] < 0.1
    # Output throughput cannot beat concurrency / TPOT.
    assert s["throughput_output_tokens_per_s"] <= 8 / s["tpot_s"]["p50"] * 1.01
    assert s["config"]["max_num_seqs"] == 1024 and s["config"]["block_size"] == 16
    assert 0.0 <= s["slo_attainment"] <= 1.0
    df = pl.read_parquet(out)
    assert df.height == 32 and {"ttft_s", "tpot_s", "queue_s", "cached_tokens"} <= set(df.columns)
    text = prom.read_text()
    for name in ("vllm:time_to_first_token_seconds_bucket", "vllm:num_requests_waiting",
                 "vllm:kv_cache_usage_perc", "vllm:e2e_request_latency_seconds_count",
                 "vllm:num_preemptions_total"):
        assert name in text


def test_simulate_bad_input_exit_2(cli: Any) -> None:
    r = cli(*ARGS[:-8], "--isl", "512", "--osl", "64")
    assert r.code == 2 and "exactly one of --workload, --concurrency or --rate" in r.err
    r = cli(*[a if a != "2" else "0" for a in ARGS], "--json")
    assert r.code == 2 and "--replicas" in r.err


def test_duckdb_output_and_prometheus_format(tmp_path: Path) -> None:
    import duckdb

    from fleetplan.sim import ClosedLoop, FleetConfig, simulate, write_result
    from tests.sim.toy import toy_replica

    res = simulate(FleetConfig.homogeneous(toy_replica(), 2, "least-outstanding"),
                   ClosedLoop(concurrency=4, isl=64, osl=8, requests=12))
    db = write_result(res, tmp_path / "run.duckdb")
    con = duckdb.connect(str(db))
    try:
        assert con.execute("select count(*) from requests").fetchone() == (12,)
        assert con.execute("select count(*) from timeseries").fetchone()[0] > 0  # type: ignore[index]
    finally:
        con.close()
    text = res.prometheus("toy")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    # Every sample line is `name{labels} value`, and histogram buckets are cumulative.
    for ln in lines:
        name_labels, value = ln.rsplit(" ", 1)
        assert name_labels.startswith("vllm:") and "{" in name_labels
        float(value)
    ttft = [float(ln.rsplit(" ", 1)[1]) for ln in lines
            if ln.startswith('vllm:time_to_first_token_seconds_bucket{engine="0"')]
    assert ttft == sorted(ttft) and ttft[-1] == res.requests.filter(
        res.requests["replica"] == 0).height


def test_simulate_disaggregated_and_engine(cli: Any) -> None:
    base = ["simulate", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--concurrency", "8",
            "--isl", "1024", "--osl", "32", "--requests", "16", "--json"]
    r = cli(*base, "--disagg-prefill", "1:4", "--disagg-decode", "2:4",
            "--kv-transfer-gb-s", "50")
    assert r.code == 0, r.err
    s = r.json()
    assert s["requests_completed"] == 16 and s["gpus"] == 12 and s["replicas"] == 3
    d = s["config"]["disaggregated"]
    assert d["prefill"] == "1:4" and d["kv_transfer_s_per_prompt_token"] > 0
    r = cli(*base, "--disagg-prefill", "1:4")
    assert r.code != 0 and "--disagg-decode" in r.err
    r = cli(*base, "--disagg-prefill", "1x4", "--disagg-decode", "1:4")
    assert r.code != 0 and "WORKERS:TP" in r.err
    r = cli(*base, "--tp", "4", "--engine", "trtllm")
    assert r.code == 0, r.err
    s = r.json()
    assert s["config"]["scheduler"] == "trtllm" and s["config"]["block_size"] == 32
    assert s["preemptions"] == 0


def test_simulate_think_time(cli: Any) -> None:
    """`--think` spaces a closed loop's requests: the run takes longer than without; it is a
    closed-loop option only, and a negative value is refused with exit 2."""
    base = cli(*ARGS, "--json")
    slow = cli(*ARGS, "--json", "--think", "0.5")
    assert base.code == 0 and slow.code == 0, slow.err
    assert slow.json()["duration_s"] > base.json()["duration_s"] + 0.5
    r = cli(*ARGS, "--think", "-1")
    assert r.code == 2 and "--think" in r.err
    r = cli(*ARGS[:-8], "--rate", "2", "--isl", "512", "--osl", "64", "--think", "0.1")
    assert r.code == 2 and "closed loop" in r.err


def test_simulate_trtllm_batch_waiting(cli: Any) -> None:
    """`--batch-wait-timeout-iters`: TensorRT-LLM holds new prompts while others decode, so the
    mean TTFT of a Poisson load grows (a lockstep closed loop would never be held: its requests
    all finish together and come back to an idle replica); refused for other engines,
    for disaggregated pools and without a timeout (exit 2 naming the flag)."""
    base = ["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--engine", "trtllm",
            "--rate", "20", "--isl", "512", "--osl", "128", "--requests", "96", "--json"]
    off = cli(*base)
    on = cli(*base, "--batch-wait-timeout-iters", "20", "--batch-wait-max-tokens-ratio", "0.9")
    assert off.code == 0 and on.code == 0, on.err
    a, b = off.json(), on.json()
    assert b["config"]["batch_wait_timeout_iters"] == 20
    assert b["config"]["batch_wait_max_tokens"] == int(0.9 * b["config"]["max_num_batched_tokens"])
    assert b["ttft_s"]["mean"] > a["ttft_s"]["mean"] + 5 * a["tpot_s"]["p50"]
    assert b["requests_completed"] == a["requests_completed"] == 96
    r = cli(*base[:5], "--engine", "vllm", *base[7:], "--batch-wait-timeout-iters", "20")
    assert r.code == 2 and "--batch-wait-timeout-iters" in r.err
    r = cli(*base, "--batch-wait-max-tokens-ratio", "0.5")
    assert r.code == 2 and "timeout" in r.err
    r = cli(*base, "--batch-wait-timeout-iters", "5", "--batch-wait-max-tokens-ratio", "2")
    assert r.code == 2 and "--batch-wait-max-tokens-ratio" in r.err
    r = cli(*base, "--disagg-prefill", "1:1", "--disagg-decode", "1:1",
            "--batch-wait-timeout-iters", "5")
    assert r.code == 2 and "aggregated" in r.err


def test_simulate_sglang_receive_interval(cli: Any) -> None:
    """`--scheduler-recv-interval 30`: SGLang sees new requests every 30 decode steps, so a
    Poisson load's mean TTFT grows by about half that many decode steps; the TPOT barely
    moves; refused for other engines and below 1 (exit 2 naming the flag); disaggregated pools
    take it on every replica."""
    base = ["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--engine", "sglang",
            "--rate", "8", "--isl", "512", "--osl", "256", "--requests", "120", "--json"]
    off, on = cli(*base), cli(*base, "--scheduler-recv-interval", "30")
    assert off.code == 0 and on.code == 0, on.err
    a, b = off.json(), on.json()
    assert (a["config"]["scheduler_recv_interval"], b["config"]["scheduler_recv_interval"]) == (
        1, 30)
    grew = b["ttft_s"]["mean"] - a["ttft_s"]["mean"]
    assert 5 * a["tpot_s"]["p50"] < grew < 30 * a["tpot_s"]["p50"]
    assert b["requests_completed"] == a["requests_completed"] == 120
    r = cli(*base[:5], "--engine", "vllm", *base[7:], "--scheduler-recv-interval", "30")
    assert r.code == 2 and "--scheduler-recv-interval" in r.err
    r = cli(*base, "--scheduler-recv-interval", "0")
    assert r.code == 2 and "--scheduler-recv-interval" in r.err
    d = cli(*base, "--disagg-prefill", "1:1", "--disagg-decode", "1:1",
            "--scheduler-recv-interval", "10")
    assert d.code == 0, d.err
    assert d.json()["config"]["scheduler_recv_interval"] == 10


def test_simulate_random_range_ratio(cli: Any, tmp_path: Path) -> None:
    """`--range-ratio r`: each closed-loop request's ISL and OSL are drawn from the integers
    [int(r x L), L] (benchmark_serving --random-range-ratio), seeded; the run is shorter than
    with the full lengths; refused outside (0, 1] and for open loops (exit 2 naming the flag)."""
    out = tmp_path / "r.parquet"
    fixed = cli(*ARGS, "--json")
    drawn = cli(*ARGS, "--json", "--range-ratio", "0.5", "--out", str(out))
    again = cli(*ARGS, "--json", "--range-ratio", "0.5")
    assert fixed.code == 0 and drawn.code == 0 and again.code == 0, drawn.err
    assert drawn.json()["ttft_s"] == again.json()["ttft_s"]  # seeded
    df = pl.read_parquet(out)
    isl, osl = df["input_tokens"].to_numpy(), df["output_tokens"].to_numpy()
    assert isl.min() >= 256 and isl.max() <= 512 and len(set(isl.tolist())) > 10
    assert osl.min() >= 32 and osl.max() <= 64 and len(set(osl.tolist())) > 5
    assert drawn.json()["e2e_s"]["mean"] < fixed.json()["e2e_s"]["mean"]
    for bad in ("0", "1.5"):
        r = cli(*ARGS, "--range-ratio", bad)
        assert r.code == 2 and "--range-ratio" in r.err
    r = cli(*ARGS[:-8], "--rate", "2", "--isl", "512", "--osl", "64", "--range-ratio", "0.8")
    assert r.code == 2 and "closed loop" in r.err
    # a trace replay has its own lengths and send times: neither flag is silently dropped
    for flag, value in (("--range-ratio", "0.8"), ("--think", "0.1")):
        r = cli(*ARGS[:-8], "--workload", "azure-conv-2023", flag, value)
        assert r.code == 2 and flag in r.err and "closed loop" in r.err
    # given at their default values they are still given, and still ignored: refused too
    for flag, value in (("--range-ratio", "1"), ("--think", "0")):
        r = cli(*ARGS[:-8], "--rate", "2", "--isl", "512", "--osl", "64", flag, value)
        assert r.code == 2 and flag in r.err and "closed loop" in r.err
    r = cli(*ARGS[:-8], "--rate", "2", "--isl", "512", "--osl", "64", "--rate-scale", "1")
    assert r.code == 2 and "--rate-scale" in r.err


def test_table_shows_rejected_requests(cli: Any, tmp_path: Path) -> None:
    """A request beyond the context is refused; the table said nothing of it (only --json)."""
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,input_tokens,output_tokens\n0,100,10\n1,200000,10\n2,100,10\n")
    r = cli("simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--workload", str(trace))
    assert r.code == 0, r.err
    row = next(line for line in r.out.splitlines() if "requests refused" in line)
    assert row.split("│")[2].strip() == "1"


def test_simulate_first_requests_of_a_trace(cli: Any) -> None:
    """--requests K with a trace replays its first K requests (was ignored)."""
    r = cli("simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--workload",
            "azure-conv-2023", "--requests", "5", "--json")
    assert r.code == 0, r.err
    assert r.json()["requests_completed"] == 5


def test_simulate_refuses_a_file_that_is_no_duckdb_database_before_simulating(
        cli: Any, tmp_path: Path) -> None:
    junk = tmp_path / "junk.duckdb"
    junk.write_text("junk\n")
    r = cli("simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--concurrency", "2",
            "--isl", "10", "--osl", "10", "--out", str(junk))
    assert r.code == 2 and "cannot be written as a DuckDB database" in r.err
    assert junk.read_text() == "junk\n"  # left as it was


def test_gauges_are_time_averages_little_law() -> None:
    """The running / waiting / KV gauges are exact time averages, so Little's law holds:
    mean waiting = sum of queue times / duration, mean running = sum of (e2e - queue) /
    duration (the means of samples taken at step ends over-counted the queue ~26x: the steps
    bunch at arrivals)."""
    from fleetplan.sim import FleetConfig, PoissonLoad, simulate

    fleet = FleetConfig.build("llama-3.1-8b", "h100-sxm", replicas=1)
    res = simulate(fleet, PoissonLoad(6.0, 600, 1024, 128), seed=1)
    r = res.requests
    t_end = float(r["finish_s"].max())  # arrivals start after 0: the run is [0, last finish]
    waiting = float(r["queue_s"].sum()) / t_end
    running = float((r["e2e_s"] - r["queue_s"]).sum()) / t_end
    (g_run, g_wait, g_kv), = res.gauges
    assert g_wait == pytest.approx(waiting, rel=1e-6)
    assert g_run == pytest.approx(running, rel=1e-6)
    assert 0.0 < g_kv < 1.0 and res.summary()["kv_cache_usage_mean"] == g_kv
    assert res.summary()["waiting_max"] >= int(res.timeseries["waiting"].max())  # exact
    gauge = next(ln for ln in res.prometheus("m").splitlines()
                 if ln.startswith("vllm:num_requests_running{"))
    assert float(gauge.rsplit(" ", 1)[1]) == pytest.approx(running, rel=1e-6)


def test_counter_families_are_named_with_total() -> None:
    """prometheus_client writes `# TYPE x_total counter` for a counter whose samples are
    `x_total`; a family declared as `x` held no samples for a parser."""
    from fleetplan.sim import ClosedLoop, FleetConfig, simulate
    from tests.sim.toy import toy_replica

    text = simulate(FleetConfig.homogeneous(toy_replica(), 1),
                    ClosedLoop(concurrency=2, isl=64, osl=8, requests=4)).prometheus("toy")
    typed = {ln.split()[2]: ln.split()[3] for ln in text.splitlines()
             if ln.startswith("# TYPE")}
    samples = {ln.split("{")[0] for ln in text.splitlines() if ln and not ln.startswith("#")}
    for fam, kind in typed.items():
        if kind == "counter":
            assert fam.endswith("_total") and fam in samples
        elif kind == "gauge":
            assert fam in samples
    assert typed["vllm:num_preemptions_total"] == "counter"


def test_request_overhead_is_in_ttft_and_e2e_not_in_tpot(cli: Any) -> None:
    """The calibrated request overhead (HTTP, tokenisation, admission, first-token streaming,
    fitted into every measured TTFT) is in the TTFT and E2E `fleetplan simulate` reports, as
    plan, verify and validate state them (it reported the bare prefill step: 70 ms for a
    125 ms TTFT); TPOT is unchanged, and the summary says how much was added."""
    from fleetplan.perf.calibration import efficiency_for
    from fleetplan.sim import SLO, ClosedLoop, FleetConfig, simulate

    args = ("--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--tp", "2", "--precision", "fp8",
            "--engine", "trtllm", "--concurrency", "1", "--isl", "1024", "--osl", "16",
            "--requests", "3", "--json")
    r = cli("simulate", *args)
    assert r.code == 0, r.err
    out = r.json()
    over = efficiency_for("h100-sxm", "trtllm", "fp8", "dense", "llama-3.1-70b").request_overhead_s
    assert over > 0.01 and out["request_overhead_s"] == pytest.approx(over)
    fleet = FleetConfig.build("llama-3.1-70b", "h100-sxm", tp=2, precision="fp8", engine="trtllm")
    bare = simulate(fleet, ClosedLoop(concurrency=1, isl=1024, osl=16, requests=3))
    for key in ("ttft_s", "e2e_s"):
        assert out[key]["mean"] == pytest.approx(bare.summary()[key]["mean"] + over, rel=1e-12)
    assert out["tpot_s"]["mean"] == pytest.approx(bare.summary()["tpot_s"]["mean"], rel=1e-12)
    shifted = bare.with_request_overhead(0.25)
    assert (shifted.requests["ttft_s"] - bare.requests["ttft_s"]).to_list() == pytest.approx(
        [0.25] * 3)
    assert shifted.requests["finish_s"].to_list() == bare.requests["finish_s"].to_list()
    assert shifted.slo_attainment(SLO(ttft_s=float(bare.requests["ttft_s"].max()) + 0.1)) == 0.0
