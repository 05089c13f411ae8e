"""Each reader on a small file in its real format → the canonical Workload table."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import polars as pl
import pytest

from fleetplan.workload import characterize, load

FIXTURES = Path(__file__).parent / "fixtures"


def test_azure_2023_seven_fractional_digits() -> None:
    w = load(str(FIXTURES / "azure_2023.csv"))
    assert w.format == "azure"
    assert w.table.columns == ["arrival_s", "input_tokens", "output_tokens"]
    assert w.table["input_tokens"].dtype == pl.Int64
    # 18:15:50.9951690 - 18:15:46.6805900 = 4.3145790 s, exact to 100 ns
    assert w.table["arrival_s"].to_list()[:2] == pytest.approx([0.0, 4.314579], abs=1e-7)
    assert w.start_epoch_s == pytest.approx(1700158546.68059, abs=1e-6)


def test_azure_2024_with_offset() -> None:
    w = load(str(FIXTURES / "azure_2024.csv"))
    assert w.requests == 4
    assert w.table["arrival_s"][-1] == pytest.approx(1.5 - 0.009930, abs=1e-9)
    assert w.start_epoch_s == pytest.approx(1715299200.00993, abs=1e-6)


def test_burstgpt_relative_seconds_and_model() -> None:
    w = load(str(FIXTURES / "burstgpt.csv"))
    assert w.format == "burstgpt"
    assert w.table["arrival_s"].to_list() == [0.0, 40.0, 113.0, 122.0, 155.0]
    assert w.table["model"].to_list() == ["ChatGPT", "ChatGPT", "GPT-4", "ChatGPT", "GPT-4"]
    assert w.start_epoch_s is None
    c = characterize(w)
    assert c.by_model is not None
    assert {r["model"]: r["requests"] for r in c.by_model} == {"ChatGPT": 3, "GPT-4": 2}


def test_mooncake_hashes_and_prefix_reuse() -> None:
    w = load(str(FIXTURES / "mooncake.jsonl"))
    assert w.format == "mooncake"
    assert w.block_tokens == 512
    assert w.table["arrival_s"].to_list() == [0.0, 0.25, 1.0, 2.5]  # ms → s
    assert w.table["hash_ids"].to_list()[1] == [0, 1, 2]
    p = characterize(w, cache_blocks=2).prefix_reuse
    assert p is not None
    total = 1024 + 1500 + 600 + 1100
    assert p.repeat_block_fraction == pytest.approx(3 / 10)
    # leading hits: request 1 reuses blocks 0,1 (1024 tokens); request 3 reuses block 0 (512)
    assert p.hit_rate_unbounded == pytest.approx((1024 + 512) / total)
    # LRU of 2 blocks: block 0 is evicted before request 3
    assert p.hit_rate_lru == pytest.approx(1024 / total)


def test_gzip_is_read(tmp_path: Path) -> None:
    gz = tmp_path / "trace.jsonl.gz"
    with (FIXTURES / "mooncake.jsonl").open("rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert load(str(gz)).table.equals(load(str(FIXTURES / "mooncake.jsonl")).table)


@pytest.mark.parametrize("name", ["litellm_spendlogs.csv", "litellm_spendlogs.json"])
def test_litellm(name: str) -> None:
    w = load(str(FIXTURES / name))
    assert w.format == "litellm"
    assert w.table["input_tokens"].to_list() == [100, 800, 50]
    assert w.table["output_tokens"].to_list() == [40, 100, 10]
    assert w.table["arrival_s"].to_list() == pytest.approx([0.0, 1.877, 3.127])
    assert w.table["model"].to_list() == ["gpt-4o", "gpt-4o", "llama3"]
    assert w.table["tenant"].to_list()[:2] == ["team-a", "team-a"]


def test_litellm_jsonl(tmp_path: Path) -> None:
    src = pl.read_json(FIXTURES / "litellm_spendlogs.json")
    path = tmp_path / "spend.jsonl"
    src.write_ndjson(path)
    w = load(str(path))
    assert w.format == "litellm"
    assert w.table["input_tokens"].to_list() == [100, 800, 50]


def test_otel_genai_spans_grouped_into_workflows() -> None:
    w = load(str(FIXTURES / "otel_genai.json"))
    assert w.format == "otel"
    # invoke_agent and execute_tool spans are not requests; the four chat spans are.
    assert w.requests == 4
    assert w.table["input_tokens"].to_list() == [500, 100, 1800, 300]
    assert w.table["arrival_s"].to_list() == pytest.approx([0.0, 0.69, 1.49, 2.49])
    wf = characterize(w).workflows
    assert wf is not None
    assert wf["workflows"] == 2
    assert wf["calls_per_workflow"]["mean"] == 2.0
    # conv-1: (550 + 1980) / 550; trace B: (120 + 340) / 120
    assert wf["token_inflation"]["max"] == pytest.approx(2530 / 550)
    assert wf["token_inflation"]["mean"] == pytest.approx((2530 / 550 + 460 / 120) / 2)


def test_mapped_csv_with_tenant() -> None:
    mapping = {"timestamp": "ts", "input_tokens": "prompt", "output_tokens": "completion",
               "tenant": "team"}
    w = load(str(FIXTURES / "mapped.csv"), mapping=mapping)
    assert w.format == "csv"
    assert w.table["arrival_s"].to_list() == [0.0, 0.5, 1.25, 3.0]
    assert w.start_epoch_s == pytest.approx(1717243200.0)
    c = characterize(w)
    assert c.by_tenant is not None
    assert c.by_tenant[0] == pytest.approx({
        "tenant": "a", "requests": 3, "share": 0.75, "rate_mean_per_s": 1.0,
        "input_tokens_mean": 470 / 3, "output_tokens_mean": 95 / 3, "tokens": 565})


def test_mapped_parquet_with_datetime_column(tmp_path: Path) -> None:
    src = pl.read_csv(FIXTURES / "mapped.csv").with_columns(
        pl.from_epoch(pl.col("ts") * 1e6, time_unit="us").alias("when"))
    path = tmp_path / "trace.parquet"
    src.write_parquet(path)
    mapping = {"timestamp": "when", "input_tokens": "prompt", "output_tokens": "completion"}
    w = load(str(path), mapping=mapping)
    assert w.format == "parquet"
    assert w.table["arrival_s"].to_list() == pytest.approx([0.0, 0.5, 1.25, 3.0])


def test_mapped_jsonl_gz_in_ms(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write('{"t": 1000, "i": 5, "o": 6}\n{"t": 3000, "i": 7, "o": 8}\n')
    w = load(str(path), mapping={"timestamp": "t", "input_tokens": "i", "output_tokens": "o",
                                 "timestamp_unit": "ms"})
    assert w.table["arrival_s"].to_list() == [0.0, 2.0]


def test_synthetic_output_reads_back(tmp_path: Path) -> None:
    from fleetplan.workload.synthetic import generate, write

    s = generate(load(str(FIXTURES / "burstgpt.csv")), seed=3, duration_s=600.0)
    path = tmp_path / "s.csv"
    write(s, path)
    back = load(str(path))
    assert back.format == "fleetplan"
    assert back.requests == s.requests
    assert back.table["input_tokens"].to_list() == s.table["input_tokens"].to_list()


def test_format_can_be_forced() -> None:
    w = load(str(FIXTURES / "azure_2023.csv"), format="azure")
    assert w.requests == 5


def test_workload_does_not_import_later_stages() -> None:
    import ast

    pkg = Path(__file__).parents[2] / "src" / "fleetplan" / "workload"
    for py in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("fleetplan.perf", "fleetplan.sim", "fleetplan.plan",
                                            "fleetplan.cli")), f"{py.name} imports {name}"
