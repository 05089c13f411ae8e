"""`fleetplan catalog show|list`: the human tables (units, yes/no, no None rows, sources in
full) and what `catalog show` does with a path."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from fleetplan.catalog import load_catalog

CONFIGS = (Path(__file__).resolve().parents[2] / "src" / "fleetplan" / "catalog" / "data"
           / "sources" / "model_configs")


def _table(out: str) -> dict[str, list[str]]:
    """`catalog show`'s table as {field: [value, source, as of]}, wrapped lines joined."""
    rows: dict[str, list[str]] = {}
    field = ""
    for line in out.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells[0]:
            field = cells[0]
            rows[field] = cells[1:]
        else:
            rows[field] = [f"{a} {b}".strip() for a, b in zip(rows[field], cells[1:], strict=True)]
    return rows


def _squash(s: str) -> str:
    return "".join(s.split())


def test_show_model_reads_as_units_and_words(cli: Any) -> None:
    r = cli("catalog", "show", "llama-3.1-70b")
    assert r.code == 0, r.err
    rows = _table(r.out)
    value = {k: v[0] for k, v in rows.items()}
    assert value["tie_word_embeddings"] == "no"
    assert value["aliases"].startswith("meta-llama/Meta-Llama-3.1-70B, llama3.1-70b, ")
    assert value["published_params"] == "70.6 B params"
    assert value["params"] == "70.6 B params (70,553,706,496)"
    assert value["kv_bytes_per_token"] == "320.0 KiB (327,680 bytes)"
    assert value["weights_bytes"] == "131.4 GiB (141,107,412,992 bytes)"
    assert not [v for v in value.values() if v in {"None", "True", "False"} or "e+" in v
                or "[" in v]


def test_show_leaves_out_fields_that_do_not_apply_but_json_keeps_them(cli: Any) -> None:
    rows = _table(cli("catalog", "show", "llama-3.1-70b").out)
    for absent in ("attention.q_lora_rank", "attention.sliding_window", "moe", "note",
                   "published_active_params"):
        assert absent not in rows
    assert "attention.full_layers" in rows
    d = cli("catalog", "show", "llama-3.1-70b", "--json").json()
    assert d["attention"]["q_lora_rank"] is None
    assert d["moe"] is None


def test_show_gpu_in_human_units_json_raw(cli: Any) -> None:
    value = {k: v[0] for k, v in _table(cli("catalog", "show", "h100-sxm").out).items()}
    assert value["memory_bytes"] == "79.6 GiB (85,520,809,984 bytes)"
    assert value["hbm_bytes_per_s"] == "3.35 TB/s"
    assert value["flops_per_s.bf16"] == "989.5 TFLOP/s"
    assert value["flops_per_s.fp8"] == "1,979 TFLOP/s"
    assert value["interconnect.bytes_per_s"] == "450 GB/s"
    assert value["interconnect.scale_out_latency_s"] == "20 µs"
    assert value["tdp_w"] == "700 W"
    assert value["price_usd_per_hour"] == "$3.99/h"
    d = cli("catalog", "show", "h100-sxm", "--json").json()
    assert d["memory_bytes"]["value"] == 85_520_809_984
    assert d["interconnect"]["bytes_per_s"]["value"] == 450e9


def test_show_engine_booleans_and_lists(cli: Any) -> None:
    vllm = load_catalog().engines["vllm"]
    value = {k: v[0] for k, v in _table(cli("catalog", "show", "vllm").out).items()}
    assert value["features.paged_kv"] == "yes"
    assert value["quantizations"] == ", ".join(vllm.quantizations)
    assert value["max_num_seqs"] == "1,024"


@pytest.mark.parametrize("name", ["h100-sxm", "llama-3.1-70b", "vllm", "sglang"])
def test_show_prints_every_source_and_date_in_full(cli: Any, name: str) -> None:
    r = cli("catalog", "show", name)
    assert "…" not in r.out
    rows = _table(r.out)
    figures = {k: v for k, v in rows.items() if v[1]}
    assert figures
    data = cli("catalog", "show", name, "--json").json()
    for field, (_, source, as_of) in figures.items():
        fig = data
        for part in field.split("."):
            fig = fig[part]
        assert _squash(source) == _squash(fig["source"]), field
        assert as_of == fig["as_of"], field
    if "source" in rows:  # the entry's own source, in the value column
        assert _squash(rows["source"][0]) == _squash(data["source"])


def test_list_headers_say_what_the_numbers_are(cli: Any) -> None:
    models = cli("catalog", "list", "models").out
    assert "params (bn)" in models and "KV bytes/token" in models
    assert "params B" not in models and "KV B/token" not in models
    r = cli("catalog", "list", "quants")
    assert r.code == 0, r.err
    assert "bytes/weight" in r.out and "weight B" not in r.out
    assert cli("catalog", "list", "quant").code == 0  # the old spelling still works
    gpus = cli("catalog", "list", "gpus").out
    assert "FP8 TFLOP/s" in gpus


def test_show_unknown_name_says_what_was_given(cli: Any) -> None:
    r = cli("catalog", "show", "nosuchthing")
    assert r.code == 2
    assert "catalog show: unknown catalog entry 'nosuchthing'; closest: " in r.err
    assert "NAME" not in r.err


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ("/no/such/dir", "'/no/such/dir' (no such file or folder)"),
        ("./nope", "'./nope' (no such file or folder)"),
        ("./empty", "'./empty' (a folder with no config.json)"),
        ("./notes.txt", "'./notes.txt' (not a config.json)"),
    ],
)
def test_show_path_is_no_fuzzy_lookup(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, needle: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    r = cli("catalog", "show", given)
    assert r.code == 2
    assert r.err.startswith("error: catalog show: unknown catalog entry '")
    assert needle in r.err
    assert "closest" not in r.err


def test_show_config_json_shows_the_converted_model(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "org" / "qwen3-8b").mkdir(parents=True)
    shutil.copy(CONFIGS / "Qwen--Qwen3-8B_config.json", tmp_path / "org/qwen3-8b/config.json")
    monkeypatch.chdir(tmp_path)
    for given in ("org/qwen3-8b", "./org/qwen3-8b/config.json", str(tmp_path / "org/qwen3-8b")):
        r = cli("catalog", "show", given)
        assert r.code == 0, r.err
        assert r.out.startswith("qwen3-8b (model)")
        assert _table(r.out)["hidden_size"][0] == "4,096"
