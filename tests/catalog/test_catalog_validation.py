"""The packaged catalog loads, every figure is sourced and dated, names resolve uniquely."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from fleetplan.catalog import (
    EngineFeature,
    Fig,
    find,
    get_engine,
    get_gpu,
    get_model,
    get_quant,
    load_catalog,
    normalize,
)
from fleetplan.catalog.loader import _keys, strip_checkpoint_suffixes
from fleetplan.errors import UsageError

DATA = Path(__file__).resolve().parents[2] / "src" / "fleetplan" / "catalog" / "data"

# Spellings used by the aiconfigurator calibration data (columns `system` and `model_path`).
CALIBRATION_SYSTEMS = {
    "b200_sxm": "b200",
    "h100_sxm": "h100-sxm",
    "h200_sxm": "h200-sxm",
    "gb200": "gb200",
    "b300_sxm": "b300",
    "gb300": "gb300",
}
CALIBRATION_MODELS = {
    "deepseek-ai/DeepSeek-R1": "deepseek-r1",
    "deepseek-ai/DeepSeek-V3": "deepseek-v3",
    "MiniMaxAI/MiniMax-M2.5": "minimax-m2.5",
    "openai/gpt-oss-120b": "gpt-oss-120b",
    "meta-llama/Llama-3.1-70B": "llama-3.1-70b",
    "Qwen/Qwen3.5-397B-A17B": "qwen3.5-397b-a17b",
    "Qwen/Qwen3-32B": "qwen3-32b",
    "moonshotai/Kimi-K2.5": "kimi-k2.5",
    "Qwen/Qwen3-235B-A22B-FP8": "qwen3-235b-a22b",
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b",
    "zhipuai/GLM-5": "glm-5",
    "nvidia/Llama-3.1-8B-Instruct-FP8": "llama-3.1-8b",
    "nvidia/DeepSeek-R1-NVFP4": "deepseek-r1",
    "nvidia/DeepSeek-V3.1-NVFP4": "deepseek-v3.1",
    "nvidia/Qwen3-32B-NVFP4": "qwen3-32b",
}
REQUIRED_GPUS = {
    "a100-sxm-80gb", "h100-sxm", "h100-pcie", "h200-sxm", "b200", "gb200", "b300", "gb300",
    "l40s", "l4", "mi300x", "mi325x", "gaudi3",
}  # fmt: skip
REQUIRED_MODELS = {
    "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "llama-3.3-70b", "qwen3-32b",
    "qwen3-235b-a22b", "mixtral-8x7b", "deepseek-v3", "deepseek-r1", "gpt-oss-120b",
    *CALIBRATION_MODELS.values(),
}  # fmt: skip


def _figures(obj: object, path: str) -> Iterator[tuple[str, Fig | EngineFeature]]:
    if isinstance(obj, Fig | EngineFeature):
        yield path, obj
    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _figures(getattr(obj, name), f"{path}.{name}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _figures(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _figures(v, f"{path}[{i}]")


def test_packaged_catalog_loads_from_its_directory() -> None:
    c = load_catalog(DATA)
    assert c == load_catalog()
    assert set(c.gpus) >= REQUIRED_GPUS
    assert set(c.models) >= REQUIRED_MODELS
    assert {"vllm", "sglang", "trtllm", "tgi", "llamacpp"} <= set(c.engines)
    assert {"bf16", "fp8", "int8", "int4-awq", "int4-gptq", "fp4"} <= set(c.quants)


def test_every_figure_has_a_source_and_a_date() -> None:
    c = load_catalog()
    figures = list(_figures(c, "catalog"))
    assert len(figures) > 200
    for path, fig in figures:
        assert len(fig.source.strip()) >= 3, path
        assert dt.date(2000, 1, 1) <= fig.as_of <= dt.date(2027, 1, 1), path
        if "ESTIMATE" in fig.source or "placeholder" in fig.source.lower():
            assert "placeholder" not in fig.source.lower(), f"{path}: placeholder left"
            assert fig.note, f"{path}: an estimate says why in its note"


def test_records_have_sources_and_dates() -> None:
    c = load_catalog()
    for m in c.models.values():
        assert len(m.source) >= 3 and m.as_of, m.name
    for q in c.quants.values():
        assert len(q.source) >= 3 and q.as_of, q.name


def test_every_gpu_has_bf16_and_sane_figures() -> None:
    for g in load_catalog().gpus.values():
        assert "bf16" in g.flops_per_s, g.name
        assert 16e9 <= g.memory_bytes.value <= 300e9, g.name
        assert 0.2e12 <= g.hbm_bytes_per_s.value <= 10e12, g.name
        assert g.interconnect.domain_gpus in {8, 72}, g.name
        assert 0.2 <= g.price_usd_per_hour.value <= 20, g.name
        for dtype, fig in g.flops_per_s.items():
            assert 1e13 <= fig.value <= 2e16, (g.name, dtype)


def test_nvidia_memory_is_what_the_device_reports() -> None:
    """Engines size KV pools from the total the device reports (gpu_memory_utilization x
    total): nvidia-smi's MiB, not the datasheet's GB (HBM stacks are binary: the H100's
    80 GB are 80 GiB, of which 81,559 MiB are visible)."""
    seen = {"a100-sxm-80gb": 81920, "h100-sxm": 81559, "h100-pcie": 81559, "h200-sxm": 143771,
            "b200": 183359, "gb200": 189471}
    for name, mib in seen.items():
        g = get_gpu(name)
        assert g.memory_bytes.value == mib * 2**20, name
        assert f"{mib:,} MiB" in g.memory_bytes.source and "datasheet" in g.memory_bytes.source


def test_blackwell_ultra_figures() -> None:
    b300, gb300 = get_gpu("b300_sxm"), get_gpu("gb300")
    # device-visible memory (nvidia-smi total, MiB): 275,040 and 284,208 of the 288 GB sold
    assert b300.memory_bytes.value == 275040 * 2**20
    assert gb300.memory_bytes.value == 284208 * 2**20
    assert 13e15 <= b300.flops_per_s["fp4"].value <= 15e15
    assert gb300.flops_per_s["fp4"].value == 15e15
    assert gb300.interconnect.domain_gpus == 72 and b300.interconnect.domain_gpus == 8
    assert get_gpu("gb200").interconnect.domain_gpus == 72


@pytest.mark.parametrize("kind", ["gpus", "models", "engines", "quants"])
def test_names_and_aliases_unique_across_entries(kind: str) -> None:
    table: dict[str, BaseModel] = getattr(load_catalog(), kind)
    owner: dict[str, str] = {}
    for name, entry in table.items():
        for key in set(_keys(entry)):
            assert owner.setdefault(key, name) == name, f"{key!r}: {owner[key]} and {name}"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("H100", "h100-sxm"),
        ("h100-sxm", "h100-sxm"),
        ("h100_sxm", "h100-sxm"),
        ("b300_sxm", "b300"),
        ("H200", "h200-sxm"),
        ("A100", "a100-sxm-80gb"),
        ("MI300X", "mi300x"),
        *CALIBRATION_SYSTEMS.items(),
    ],
)
def test_gpu_aliases_resolve(query: str, expected: str) -> None:
    assert get_gpu(query).name == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("meta-llama/Llama-3.1-70B", "llama-3.1-70b"),
        ("meta-llama/Meta-Llama-3.1-70B-Instruct", "llama-3.1-70b"),
        ("Llama-3.1-8B", "llama-3.1-8b"),
        ("DeepSeek-V3", "deepseek-v3"),
        *CALIBRATION_MODELS.items(),
    ],
)
def test_model_aliases_resolve(query: str, expected: str) -> None:
    assert get_model(query).name == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("nvidia/Qwen3-235B-A22B-Instruct-2507-FP8", "qwen3-235b-a22b"),
        ("RedHatAI/Llama-3.1-8B-Instruct-FP8-dynamic", "llama-3.1-8b"),
        ("Qwen/Qwen3-32B-FP8-Static-PerTensor", "qwen3-32b"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
        ("some-org/DeepSeek-V3-0324-NVFP4", "deepseek-v3"),
    ],
)
def test_checkpoint_variants_resolve_to_their_architecture(query: str, expected: str) -> None:
    assert get_model(query).name == expected


def test_checkpoint_suffix_stripping() -> None:
    assert strip_checkpoint_suffixes("nvidia/Qwen3-30B-A3B-Instruct-2507-FP8") == "Qwen3-30B-A3B"
    assert strip_checkpoint_suffixes("fp8") == "fp8"  # never empty
    assert strip_checkpoint_suffixes("Qwen3-8B") == "Qwen3-8B"


def test_stripped_model_names_are_unambiguous() -> None:
    """No two catalog models share a name once checkpoint suffixes are stripped, so the
    fallback lookup cannot pick the wrong architecture."""
    owner: dict[str, str] = {}
    for name, m in load_catalog().models.items():
        for n in {m.name, *m.aliases, m.hf_id}:
            key = normalize(strip_checkpoint_suffixes(n))
            assert owner.setdefault(key, name) == name, f"{n!r}: {owner[key]} and {name}"


def test_unknown_architecture_is_not_matched_by_stripping() -> None:
    with pytest.raises(UsageError, match="unknown model"):
        get_model("Qwen/Qwen9-77B-Instruct-FP8")


def test_engine_and_quant_aliases_resolve() -> None:
    assert get_engine("TensorRT-LLM").name == "trtllm"
    assert get_engine("llama.cpp").name == "llamacpp"
    assert get_quant("NVFP4").name == "fp4"
    assert get_quant("awq").name == "int4-awq"
    assert get_quant("W8A8").name == "int8"


def test_unknown_name_raises_usage_error_with_close_names() -> None:
    with pytest.raises(UsageError, match=r"unknown gpu 'h100-sxn'; closest: h100-sxm"):
        get_gpu("h100-sxn")
    with pytest.raises(UsageError, match=r"closest:.*llama-3\.1-70b"):
        get_model("llama-3.1-7b")
    with pytest.raises(UsageError) as e:
        find("gpu", "zzzz", load_catalog().gpus, where="--gpus")
    assert e.value.where == "--gpus"


def test_normalize_ignores_case_and_separators() -> None:
    assert normalize(" H100_SXM ") == normalize("h100-sxm") == normalize("h100.sxm") == "h100sxm"


def test_layer_counts_must_add_up() -> None:
    """Mixer types (full, sliding, linear, none) sum to the layers; FFN layers and the dense
    ones among them cannot exceed it."""
    from fleetplan.catalog.schema import ModelSpec

    base = get_model("nemotron-3-nano-30b-a3b").model_dump()
    bad_mixers = {**base, "attention": {**base["attention"], "mixerless_layers": 22}}
    with pytest.raises(ValueError, match="22 without a mixer = 51"):
        ModelSpec.model_validate(bad_mixers)
    with pytest.raises(ValueError, match="ffn_layers 53 > num_layers 52"):
        ModelSpec.model_validate({**base, "ffn_layers": 53})
    with pytest.raises(ValueError, match=r"moe\.dense_layers 24 > layers with an FFN 23"):
        ModelSpec.model_validate({**base, "moe": {**base["moe"], "dense_layers": 24}})
    m = ModelSpec.model_validate(base)
    assert (m.mixer_layer_count, m.ffn_layer_count, m.moe_layer_count) == (29, 23, 23)
