"""CLI: golden output, JSON contract, and bad inputs (exit 2, no traceback)."""

from __future__ import annotations

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
        (["plan", "--rate", "10", "--isl", "1000", "--osl", "200", "--burst-bin", "abc"],
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
