"""CLI: golden output, JSON contract, and bad inputs (exit 2, no traceback)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import check_golden, check_golden_json

GOLDEN = Path(__file__).parent / "golden"
PLAN = [
    "plan",
    "--model",
    "llama-3.1-70b",
    "--gpus",
    "h100-sxm",
    "--rate",
    "20",
    "--isl",
    "2000",
    "--osl",
    "300",
    "--slo",
    "ttft_p95=1s,tpot_p95=50ms",
    "--no-check",
]


def test_plan_json_contract(cli: Any) -> None:
    r = cli(*PLAN, "--json")
    assert r.code == 0, r.err
    d = r.json()
    assert [s["name"] for s in d["worksheet"]] == [
        "workload",
        "slo",
        "theoretical_minimum",
        "burst",
        "headroom",
        "bottleneck",
    ]
    keys = {
        "gpu",
        "tp",
        "precision",
        "engine",
        "feasible",
        "reason",
        "gpus_total",
        "usd_per_hour",
        "usd_per_million_output_tokens",
        "usd_per_million_input_tokens",
        "bottleneck",
        "kv_cache",
    }
    assert d["candidates"] and all(keys <= set(c) for c in d["candidates"])
    feas = [c for c in d["candidates"] if c["feasible"]]
    assert feas == sorted(feas, key=lambda c: c["usd_per_hour"])


def test_plan_json_golden(cli: Any) -> None:
    r = cli(*PLAN, "--json")
    check_golden_json(GOLDEN / "plan_llama70b_h100.json", r.out)


def test_plan_table_golden(cli: Any) -> None:
    r = cli(*PLAN)
    assert r.code == 0
    check_golden(GOLDEN / "plan_llama70b_h100.txt", r.out)


def test_catalog_show_model_json(cli: Any) -> None:
    r = cli("catalog", "show", "meta-llama/Llama-3.1-70B", "--json")
    assert r.code == 0
    d = r.json()
    assert d["kv_bytes_per_token"] == 327_680
    assert d["params"] == pytest.approx(70.55e9, rel=0.01)


def test_catalog_list_all(cli: Any) -> None:
    r = cli("catalog", "list")
    assert r.code == 0
    for word in ("h100-sxm", "llama-3.1-70b", "vllm", "fp8"):
        assert word in r.out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["plan", "--model", "lama-3.1-70", "--rate", "1", "--isl", "10", "--osl", "10"],
            "llama-3.1-70b",
        ),
        (["plan", "--gpus", "h100x", "--rate", "1", "--isl", "10", "--osl", "10"], "h100"),
        (["plan", "--rate", "1", "--isl", "10", "--osl", "10", "--slo", "ttft=1"], "--slo"),
        (["plan", "--rate", "0", "--isl", "10", "--osl", "10"], "--rate"),
        (["plan", "--rate", "1", "--isl", "500000", "--osl", "10"], "--isl"),
        (["plan", "--rate", "1"], "--isl"),
        (["plan", "--rate", "1", "--isl", "10", "--osl", "10", "--kv-precision", "int4-awq"],
         "--kv-precision: must be one of bf16, fp8"),
        (["catalog", "show", "nosuchthing"], "closest"),
        (["plan", "--gpus", " , ", "--rate", "1", "--isl", "10", "--osl", "10"],
         "--gpus: no GPU given"),
        (["plan", "--precision", ",", "--rate", "1", "--isl", "10", "--osl", "10"],
         "--precision: no precision given"),
        (["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "5", "--isl",
          "100", "--osl", "10", "--requests", "0"],
         "--requests: must be in [1, 10,000,000], got 0"),
        (["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--concurrency", "2",
          "--isl", "10", "--osl", "10", "--requests", "99999999999999"],
         "--requests: must be in [1, 10,000,000]"),
        (["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "2", "--isl",
          "10", "--osl", "10", "--seed", "-1"], "--seed: must be >= 0, got -1"),
        (["plan", "--rate", "1", "--isl", "10", "--osl", "10", "--seed", "-1"],
         "--seed: must be >= 0, got -1"),
        (["plan", "--rate", "inf", "--isl", "10", "--osl", "10"],
         "--rate: must be a finite number > 0, got inf"),
        (["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "2", "--isl",
          "10", "--osl", "10", "--rate-scale", "2"], "--rate-scale: --rate-scale multiplies a"),
        (["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--workload",
          "azure-conv-2023", "--isl", "10"], "--isl: --isl applies to --concurrency or --rate"),
        (["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--workload",
          "azure-conv-2023", "--burstiness", "2"], "--burstiness: --burstiness shapes --rate"),
        (["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "2", "--isl",
          "10", "--osl", "10", "--block-size", "100000000"],
         "--block-size: 100,000,000 tokens per KV block exceed"),
        (["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "nan", "--isl",
          "100", "--osl", "10"], "--rate: must be a finite number > 0"),
        (["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "5", "--isl",
          "0", "--osl", "10"], "--isl: must be >= 1 token"),
        (["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "5", "--isl",
          "10", "--osl", "10", "--slo-ttft", "-1"], "--slo-ttft: a target must be"),
        (["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "5", "--isl",
          "10", "--osl", "10", "--max-num-batched-tokens", "0"],
         "--max-num-batched-tokens: must be >= 1"),
        (["plan", "--rate", "10", "--isl", "1000", "--osl", "200", "--burst", "nan"],
         "--burst: must be a finite number >= 1"),
        (["plan", "--rate", "10", "--isl", "1000", "--osl", "200", "--top", "0"],
         "--top: must be >= 1"),
        (["plan", "--workload", "azure-conv-2023", "--burst-bin", "abc"],
         "--burst-bin: unknown bin 'abc'"),
        (["plan", "--rate", "10", "--isl", "1000", "--osl", "200", "--mc-runs", "1000000000"],
         "--mc-runs: must be in [1, 1000]"),
        (["plan", "--rate", "1", "--isl", "10", "--osl", "10", "--slo", "ttft_p95=1000us"],
         "DURATION in s or ms"),
        (["plan", "--rate", "1", "--isl", "10", "--osl", "10", "--slo", "ttft_p95=1" + "9" * 40
          + "s"], "at most 365 days"),
    ],
)
def test_bad_input_exit_2(cli: Any, args: list[str], needle: str) -> None:
    r = cli(*args)
    assert r.code == 2
    assert needle in r.err
    assert "Traceback" not in r.err


def test_requests_nothing_can_meet_exit_1(cli: Any) -> None:
    """A well-formed request no configuration meets is not a usage error: exit 1, as `plan`
    exits when no candidate is feasible (a target below the physical floor exited 2)."""
    r = cli("plan", "--rate", "1", "--isl", "10", "--osl", "10", "--slo", "tpot_p99=0.1ms")
    assert r.code == 1 and "physical floor" in r.err and "Traceback" not in r.err
    r = cli("simulate", "--model", "llama-3.1-405b", "--gpu", "l4", "--rate", "1", "--isl",
            "10", "--osl", "10")
    assert r.code == 1 and "does not fit" in r.err and "Traceback" not in r.err


def test_plan_simulation_check_reports_attainment(cli: Any) -> None:
    r = cli(
        "plan",
        "--model",
        "llama-3.1-8b",
        "--gpus",
        "h100-sxm",
        "--tp",
        "1",
        "--precision",
        "bf16",
        "--rate",
        "5",
        "--isl",
        "1000",
        "--osl",
        "200",
        "--slo",
        "ttft_p95=1s,tpot_p95=40ms",
        "--mc-runs",
        "2",
        "--sim-requests",
        "300",
        "--json",
    )
    assert r.code == 0, r.err
    d = r.json()
    sim = d["simulation"]
    assert sim["runs"] == 2 and len(sim["at_planned"]) == 2
    step = d["worksheet"][-1]
    assert step["name"] == "simulation_check"
    assert step["final_replicas"] >= sim["planned_replicas"]
    assert set(sim["at_planned"][0]["targets"]) == {"ttft_p95", "tpot_p95"}
    needed = sim["replicas_needed"]
    assert needed["p50"] <= needed["p90"] <= needed["p99"]


def test_plan_multi_node_tensor_parallelism(cli: Any) -> None:
    """DeepSeek-R1 FP8 does not fit one 8-GPU H100 node; TP 16 spans two through the scale-out
    network, and the all-reduces over the NICs take a large share of its step (with the
    calibrated efficiencies about as much as compute: which of the two the plan names moves
    with each refit, so the share is asserted from the step model)."""
    r = cli("plan", "--model", "deepseek-r1", "--gpus", "h100-sxm", "--tp", "8,16",
            "--precision", "fp8", "--rate", "5", "--isl", "2000", "--osl", "300",
            "--no-check", "--json")
    assert r.code == 0, r.err
    cands = {c["tp"]: c for c in r.json()["candidates"]}
    assert not cands[8]["feasible"] and "does not fit" in cands[8]["reason"]
    assert cands[16]["feasible"] and cands[16]["bottleneck"] in ("interconnect", "compute")
    assert cands[16]["gpus_total"] % 16 == 0
    from fleetplan.perf import Deployment, Efficiency, RooflineStepModel, StepBatch

    def comm(gpu: str) -> tuple[float, float]:
        dep = Deployment.build("deepseek-r1", gpu, "fp8", "vllm", tp=16, efficiency=Efficiency())
        brk = RooflineStepModel(dep).breakdown(StepBatch(decode_seqs=200,
                                                         decode_ctx_tokens=200 * 2150))
        return brk.comm_s, brk.total_s

    # over the NICs: a quarter of the step at the documented defaults, and more than three
    # times the same all-reduces inside one NVLink domain (GB200 NVL72: its links have twice
    # the H100's per-GPU bandwidth, the rest is the NICs)
    h100, total = comm("h100-sxm")
    assert h100 / total > 0.25
    assert h100 > 3 * comm("gb200")[0]


@pytest.mark.parametrize("name", ["no[/such].csv", "x[bold]y.csv"])
def test_error_text_with_brackets_is_printed_verbatim(tmp_path: Path, name: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A user's file name (or a value) with square brackets is text, not console markup: the
    error names it as given and exits 2 (a closing tag like '[/such]' used to raise a markup
    error with a traceback; '[bold]' vanished from the message)."""
    from fleetplan.cli import main

    path = tmp_path / name
    assert main(["validate", "--points", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "error:" in err and name in err


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "5", "--isl",
          "100", "--osl", "10", "--requests", "8", "--out"], "--out"),
        (["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "5", "--isl",
          "100", "--osl", "10", "--requests", "8", "--prometheus"], "--prometheus"),
        (["validate", "--out"], "--out"),
        (["calibrate-steps", "--out"], "--out"),
        (["workload", "synth", "--from", "azure-conv-2023", "--out"], "--out"),
        (["workload", "characterize", "azure-conv-2023", "--html"], "--html"),
    ],
)
def test_unwritable_output_paths_fail_before_the_work(cli: Any, tmp_path: Path,
                                                      args: list[str], flag: str) -> None:
    """A directory, or a file in a directory that does not exist, is a usage error naming the
    flag (exit 2), raised before the command runs; before, some crashed with a traceback after
    a whole simulation."""
    for target, words in ((tmp_path, "is a directory"),
                          (tmp_path / "no" / "x.csv", "no directory")):
        r = cli(*args, str(target))
        assert r.code == 2, r.err
        assert f"{flag}: " in r.err and words in r.err and "Traceback" not in r.err


def test_output_file_types_are_checked(cli: Any, tmp_path: Path) -> None:
    r = cli("workload", "synth", "--from", "azure-conv-2023", "--out", str(tmp_path / "s.txt"))
    assert r.code == 2 and "unknown file type '.txt'; use .csv, .parquet" in r.err
    r = cli("calibrate-steps", "--yaml", str(tmp_path / "fits.json"))
    assert r.code == 2 and "--yaml" in r.err and ".yaml, .yml" in r.err


def _trace(tmp_path: Path, rows: str) -> str:
    f = tmp_path / "t.csv"
    f.write_text("arrival_s,input_tokens,output_tokens\n" + rows)
    return str(f)


def test_plan_traces_without_a_rate_or_tokens_are_usage_errors(cli: Any, tmp_path: Path) -> None:
    """A one-request trace raised a TypeError, a trace of empty outputs a ZeroDivisionError;
    a flag that supplies the missing figure makes them plannable."""
    one = _trace(tmp_path, "0,100,20\n")
    r = cli("plan", "--workload", one, "--no-check")
    assert r.code == 2 and "no arrival rate to plan for; give --rate" in " ".join(r.err.split())
    assert cli("plan", "--workload", one, "--rate", "3", "--no-check", "--json").code == 0
    empty = _trace(tmp_path, "0,100,0\n1,100,0\n2,100,0\n")
    r = cli("plan", "--workload", empty, "--no-check")
    assert r.code == 2
    assert "0 output tokens: nothing to size for; give --osl" in " ".join(r.err.split())
    assert cli("plan", "--workload", empty, "--osl", "100", "--no-check", "--json").code == 0


def test_plan_trace_shorter_than_the_burst_bin_uses_the_default_burst(cli: Any,
                                                                       tmp_path: Path) -> None:
    """19 s of trace holds no 1-minute bin: its burst factor is not measured (was x1.00)."""
    r = cli("plan", "--workload", _trace(tmp_path, "0,100,20\n1,100,20\n19,100,30\n"),
            "--no-check", "--json")
    assert r.code == 0, r.err
    steps = {w["name"]: w for w in r.json()["worksheet"]}
    assert steps["burst"]["burst_factor"] == 3.0
    assert "no burst factor measured" in steps["workload"]["source"]
    assert "a rate from 3 arrivals is uncertain by ~58%" in steps["workload"]["source"]


def test_plan_request_beyond_the_context_is_named(cli: Any, tmp_path: Path) -> None:
    r = cli("plan", "--workload", _trace(tmp_path, "0,100,20\n1,200000,20\n70,100,30\n"),
            "--no-check")
    assert r.code == 2
    assert "longest request needs 200,020 tokens (input + output), beyond llama-3.1-70b's " \
        "context of 131,072" in " ".join(r.err.split())


def test_plan_refuses_outputs_beyond_the_context_without_the_check(cli: Any,
                                                                    tmp_path: Path) -> None:
    """Input and output together must fit the context (vLLM refuses prompt + max_tokens beyond
    max_model_len); with --no-check a 200k-token output was sized at 13,873 GPUs."""
    r = cli("plan", "--no-check", "--model", "llama-3.1-8b", "--gpus", "h100-sxm", "--rate",
            "5", "--isl", "100", "--osl", "200000")
    assert r.code == 2
    assert ("--isl/--osl: a mean request of 100 input + 200,000 output tokens exceeds "
            "llama-3.1-8b's context of 131,072 tokens") in " ".join(r.err.split())
    # one long output among short ones: the trace's own joint maximum
    r = cli("plan", "--no-check", "--model", "llama-3.1-8b", "--gpus", "h100-sxm", "--workload",
            _trace(tmp_path, "0,100,20\n1,100,131000\n70,100,30\n"))
    assert r.code == 2 and "longest request needs 131,100 tokens" in " ".join(r.err.split())
    assert "--workload (trace" in r.err


def test_plan_without_a_feasible_candidate_exits_1_after_the_table(cli: Any) -> None:
    r = cli("plan", "--no-check", "--model", "llama-3.1-8b", "--gpus", "h100-sxm", "--tp", "3",
            "--rate", "1", "--isl", "100", "--osl", "100")
    assert r.code == 1
    assert "No feasible candidate" in r.out and "no: --tp 3" in r.out
    r = cli("plan", "--no-check", "--model", "llama-3.1-8b", "--gpus", "h100-sxm", "--tp", "3",
            "--rate", "1", "--isl", "100", "--osl", "100", "--json")
    assert r.code == 1 and not any(c["feasible"] for c in r.json()["candidates"])


def test_plan_tp_sizes_given_twice_are_tried_once(cli: Any) -> None:
    r = cli("plan", "--rate", "10", "--isl", "1000", "--osl", "200", "--tp", "2,2",
            "--gpus", "h100-sxm", "--precision", "fp8", "--no-check", "--json")
    assert r.code == 0, r.err
    keys = [(c["gpu"], c["tp"], c["precision"]) for c in r.json()["candidates"]]
    assert len(keys) == len(set(keys)) == 1


def test_plan_and_simulate_read_any_trace_with_a_column_mapping(cli: Any, tmp_path: Path) -> None:
    """The format error told plan/simulate users to give --format or --map, which only
    `workload` had; both now take them (and refuse them without a trace file)."""
    f = tmp_path / "gen.csv"
    f.write_text("ts,p,c\n0,100,20\n1,120,30\n70,90,25\n")
    mapping = ["--map", "timestamp=ts,input_tokens=p,output_tokens=c"]
    assert cli("plan", "--workload", str(f), "--no-check").code == 2
    r = cli("plan", "--workload", str(f), *mapping, "--no-check", "--json")
    assert r.code == 0, r.err
    assert r.json()["worksheet"][0]["input_tokens"]["max"] == 120
    r = cli("simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--workload", str(f),
            *mapping, "--json")
    assert r.code == 0 and r.json()["requests_completed"] == 3
    r = cli("plan", "--rate", "1", "--isl", "10", "--osl", "10", *mapping, "--no-check")
    assert r.code == 2 and "describe a --workload trace file" in r.err
    r = cli("plan", "--workload", "chat", *mapping, "--no-check")
    assert r.code == 2 and "is a demand preset" in r.err


SIM = ["simulate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm"]
FLAGS_PLAN = ["plan", "--rate", "10", "--isl", "1000", "--osl", "200"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([*SIM, "--concurrency", "2", "--isl", "10", "--osl", "10", "--burstiness", "2"],
         "--burstiness: --burstiness shapes --rate arrivals; in a closed loop (--concurrency)"),
        ([*SIM, "--concurrency", "2", "--isl", "10", "--osl", "10", "--burstiness", "1"],
         "--burstiness: --burstiness shapes --rate arrivals"),
        ([*SIM, "--workload", "azure-conv-2023", "--burstiness", "1"],
         "--burstiness: --burstiness shapes --rate arrivals; a --workload trace"),
        ([*FLAGS_PLAN, "--burst-bin", "1s"],
         "--burst-bin: --burst-bin applies to a burst factor measured from a trace; no "
         "--workload given"),
        (["plan", "--workload", "chat", "--burst-bin", "1s"],
         "--burst-bin: --burst-bin applies to a burst factor measured from a trace; 'chat' is a "
         "demand preset without arrival times"),
        (["plan", "--workload", "azure-conv-2023", "--burst", "2", "--burst-bin", "1h"],
         "--burst-bin: --burst-bin applies to a burst factor measured from a trace; with --burst "
         "none is measured"),
        ([*FLAGS_PLAN, "--no-check", "--mc-runs", "5"],
         "--mc-runs: --mc-runs applies to the simulation check, which --no-check turns off"),
        ([*FLAGS_PLAN, "--no-check", "--sim-requests", "500"],
         "--sim-requests: --sim-requests applies to the simulation check, which --no-check"),
        ([*FLAGS_PLAN, "--no-check", "--seed", "1"],
         "--seed: --seed applies to the simulation check, which --no-check turns off"),
    ],
)
def test_flags_that_would_be_ignored_are_refused(cli: Any, args: list[str], needle: str) -> None:
    """Each of these flags was accepted and silently ignored: --burstiness in a closed loop,
    --burst-bin where no burst factor is measured (no trace, a demand preset, or --burst
    given), the simulation check's flags with --no-check."""
    r = cli(*args)
    assert r.code == 2, r.err
    assert needle in " ".join(r.err.split())
    assert "Traceback" not in r.err


def test_flags_are_accepted_where_they_apply(cli: Any) -> None:
    """The refusals above leave the flags working where they apply, and the defaults working
    without them."""
    r = cli(*SIM, "--rate", "5", "--isl", "10", "--osl", "10", "--requests", "20",
            "--burstiness", "0.5", "--json")
    assert r.code == 0, r.err
    r = cli("plan", "--workload", "azure-conv-2023", "--gpus", "h100-sxm", "--burst-bin", "1s",
            "--no-check", "--json")
    assert r.code == 0, r.err
    steps = {w["name"]: w for w in r.json()["worksheet"]}
    assert steps["burst"]["burst_source"] == "measured from the trace (peak/mean at 1s bins)"
    r = cli(*FLAGS_PLAN, "--gpus", "h100-sxm", "--no-check", "--json")
    assert r.code == 0, r.err
    steps = {w["name"]: w for w in r.json()["worksheet"]}
    assert steps["burst"]["burst_factor"] == 3.0


def _help(cli: Any, monkeypatch: pytest.MonkeyPatch, *command: str) -> str:
    """`--help` of `command`, the panels' borders dropped and whitespace collapsed (a help
    text wrapped in its cell reads as one line)."""
    monkeypatch.setenv("COLUMNS", "200")
    r = cli(*command, "--help")
    assert r.code == 0, r.err
    return " ".join(r.out.replace("│", " ").split())


@pytest.mark.parametrize(
    ("command", "phrases"),
    [
        (["plan"], [
            "--engine <str> serving engine: vllm, sglang, trtllm, tgi, llamacpp, transformers",
            "--efficiency-tax <float> multiplicative tax on the theoretical minimum: GPUs "
            "x(1 + tax); 0.2 = 20% more",
            "--headroom <float> spare capacity above the burst peak: GPUs x(1 + headroom); "
            "0.4 = 40% more",
            "--burst <float> peak/mean arrival-rate factor the fleet is sized for (default: "
            "measured from a trace --workload, else 3)",
            "--burst-bin <str> bin of the burst factor measured from a trace --workload: 1s, "
            "1min, 1h (default: 1min; not with --burst)",
            "--seed <int> seed of the check's random draws",
            "--mc-runs <int> Monte Carlo runs of the check: Poisson draws, or windows of a "
            "trace (default: 3)",
            "--sim-requests <int> requests per run of the check (default: at least 2,000, and "
            "enough arrivals at the peak rate for 3 request lifetimes, at most 10,000)",
            "--format <str> Trace reader, instead of detecting it: fleetplan, azure, burstgpt, "
            "mooncake, litellm, otel, csv, jsonl, parquet.",
            "--slo <str> latency targets: METRIC_pNN=DURATION[,...] with METRIC in ttft|tpot|e2e, "
            "NN in 50|90|95|99|999 (99.9) and DURATION in s or ms",
            "--isl <int> input tokens per request: without --workload every request has this "
            "many; with it, the workload's input lengths are scaled so their mean is this",
            "--osl <int> output tokens per request: without --workload every request has this "
            "many; with it, the workload's output lengths are scaled so their mean is this",
            "--rate <float> mean requests per second; with --workload it replaces the "
            "workload's mean rate",
            "--model <str> catalog name, alias, Hugging Face id, or a config.json",
        ]),
        (["simulate"], [
            "--model <str> catalog name, alias, Hugging Face id, or a config.json (the file or "
            "its folder)",
            "--engine <str> serving engine: vllm, sglang, trtllm, tgi, llamacpp, transformers",
            "--max-num-seqs <int> most requests a replica runs at once (default: the engine's "
            "default on this GPU, e.g. vLLM 256 under 70 GiB or on an A100, SGLang's from its KV "
            "pool; at most --max-num-batched-tokens)",
            "--max-num-batched-tokens <int> token budget of one engine step (default: the "
            "engine's default on this GPU)",
            "--block-size <int> tokens per KV-cache block (default: the engine's catalog value)",
            "--prefix-caching --no-prefix-caching reuse the KV of repeated prompt prefixes "
            "(default: on where the engine's catalog entry supports it)",
            "--requests <int> requests to send (default: 4 x --concurrency; 1,000 with --rate; "
            "with --workload the whole trace, or its first N when given)",
            "--burstiness <float> with --rate: gamma shape of the gaps between arrivals",
            "--seed <int> seed of the run's random draws",
        ]),
        (["workload", "characterize"], [
            "--cache-blocks <int> Also simulate an LRU prefix cache of N KV blocks; needs a "
            "trace with hash_ids (e.g. Mooncake), one per block (Mooncake: 512 tokens; --map "
            "block_tokens=N for other files).",
            "--format <str> Trace reader, instead of detecting it: fleetplan, azure",
        ]),
    ],
)
def test_help_texts(cli: Any, monkeypatch: pytest.MonkeyPatch, command: list[str],
                    phrases: list[str]) -> None:
    """Every option says what it does, its default where the flag has no fixed one, and the
    values it takes (several had no help at all: plan --engine, --efficiency-tax, --seed)."""
    text = _help(cli, monkeypatch, *command)
    for phrase in phrases:
        assert phrase in text


def test_help_lists_the_catalogs_engines_and_the_readers() -> None:
    """The --engine and --format help lists are the catalog's engines and the readers' names."""
    from fleetplan.catalog import load_catalog
    from fleetplan.cli._app import ENGINES
    from fleetplan.workload import FORMATS

    assert sorted(ENGINES) == sorted(load_catalog().engines)
    assert FORMATS == ("fleetplan", "azure", "burstgpt", "mooncake", "litellm", "otel", "csv",
                       "jsonl", "parquet")


@pytest.mark.parametrize(
    ("command", "usage", "shown"),
    [
        ([], " [OPTIONS] COMMAND [ARGS]... ", ["--help Show this message"]),
        (["plan"], " plan [OPTIONS] ",
         ["--json print JSON only", "--check --no-check verify the best candidate",
          "--top <int> rows", "--headroom <float>"]),
        (["simulate"], " simulate [OPTIONS] ",
         ["--json print the summary", "--out <path> per-request records"]),
        (["workload", "characterize"], " workload characterize [OPTIONS] TRACE ",
         ["* TRACE <str> Trace file or preset name.", "--json Print JSON only."]),
        (["catalog", "show"], " catalog show [OPTIONS] NAME ", ["--json print"]),
        (["catalog", "list"], " catalog list [OPTIONS] [KIND] ", []),
        (["calibrate-steps"], " calibrate-steps [OPTIONS] [STEPS]... ", []),
        (["calibrate-kernels"], " calibrate-kernels [OPTIONS] [FILES]... ",
         ["--out <path> write every layer"]),
    ],
)
def test_help_shows_no_type_for_flags(cli: Any, monkeypatch: pytest.MonkeyPatch,
                                      command: list[str], usage: str, shown: list[str]) -> None:
    """A flag takes no value, so its help shows no type (was `--json <bool>`, `--help
    <bool>`); options with a value keep theirs; arguments read NAME, [NAME], NAME... in usage
    lines (was `{name}`)."""
    text = _help(cli, monkeypatch, *command)
    assert "<bool>" not in text
    line = text.split("Usage:")[1].split("╭")[0]  # the usage line and the command's doc
    assert usage in line and "{" not in line
    for phrase in [*shown, "--help Show this message and exit."]:
        assert phrase in text


def test_missing_argument_is_named_as_in_the_usage_line(cli: Any) -> None:
    r = cli("workload", "characterize")
    assert r.code == 2 and "Missing argument 'TRACE'" in r.err


def test_worksheet_counts_and_prices_read_as_written(cli: Any) -> None:
    """"1 replica, 1 GPU" (was "1 replicas, 1 GPUs"); prices below $100 keep their cents (a
    $2.25/hour fleet printed as "$2/h"); the burst line has no nested parentheses; the
    footnote on defaults names the metric of its figures."""
    r = cli("plan", "--model", "llama-3.1-8b", "--gpus", "l40s", "--tp", "1", "--precision",
            "fp8", "--rate", "0.2", "--isl", "500", "--osl", "100", "--mc-runs", "1",
            "--sim-requests", "50")
    assert r.code == 0, r.err
    out = " ".join(r.out.split())
    assert "-> 1 replica, 1 GPU" in out and "final: 1 replica, 1 GPU, $" in out
    assert "1 run x 50 requests" in out
    assert re.search(r"final: 1 replica, 1 GPU, \$\d+\.\d\d/hour", out)
    assert re.search(r"l40s TP1 fp8 \$\d+\.\d\d/h ", out)
    assert re.search(r"│ yes │ 1 │ \d+\.\d\d │ [\d,]+ │", out)
    assert "4. Burst x3.00 = 0.02 GPUs; assumed (default 3x; typical 2.5-4x)" in out
    assert "((" not in out and "))" not in out
    assert "the defaults' in-sample TPOT MAPE is ~18% for dense and ~94% for MoE models" in out
    r = cli(*FLAGS_PLAN, "--gpus", "h100-sxm", "--burst", "2", "--no-check")
    assert r.code == 0, r.err
    assert "; set with --burst" in r.out


def test_usd_and_count_formats() -> None:
    from fleetplan.cli.plan import _count, _usd

    assert [_usd(x) for x in (3.7, 0.004, 99.99, 99.996, 100.0, 1642.5, 139_810.2)] == [
        "3.70", "0.00", "99.99", "100", "100", "1,642", "139,810"]
    assert [_count(n, "GPU") for n in (0, 1, 2, 1000)] == ["0 GPUs", "1 GPU", "2 GPUs",
                                                           "1,000 GPUs"]


def test_plan_and_simulate_print_trace_warnings_as_messages(cli: Any, tmp_path: Path) -> None:
    """A trace's ignored blank line was reported as a Python UserWarning with the source
    line of fleetplan's loader (an error under -W error); it is a `warning:` line as in
    `fleetplan workload`."""
    f = tmp_path / "blank.csv"
    f.write_text("arrival_s,input_tokens,output_tokens\n0,100,20\n,,\n1,120,30\n70,90,25\n")
    for args in (["plan", "--workload", str(f), "--gpus", "h100-sxm", "--no-check", "--json"],
                 [*SIM, "--workload", str(f), "--json"]):
        r = cli(*args)
        assert r.code == 0, r.err
        assert r.err.startswith("warning: ") and "ignored 1 blank line" in r.err
        assert "UserWarning" not in r.err and "_load.py" not in r.err


def test_help_lists_planning_commands_before_the_checks(cli: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`fleetplan --help` lists plan and simulate first, then the commands that check the model
    against measurements, then the groups (the modules register in import order, which put
    calibrate-kernels first)."""
    monkeypatch.setenv("COLUMNS", "200")
    r = cli("--help")
    panel = r.out.split("Commands")[1]
    listed = [ln.strip("│ ").split()[0] for ln in panel.splitlines()[1:] if ln.startswith("│")]
    assert listed == ["plan", "simulate", "validate", "calibrate-steps", "calibrate-kernels",
                      "catalog", "workload"]
