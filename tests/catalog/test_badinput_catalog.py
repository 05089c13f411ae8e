"""Bad input to the catalog: empty names and config.json values the converter must refuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fleetplan.catalog import get_gpu, get_model
from fleetplan.catalog.hf_config import config_path, model_from_config
from fleetplan.cli import main
from fleetplan.errors import InputFileError, UsageError

CONFIGS = (Path(__file__).resolve().parents[2] / "src" / "fleetplan" / "catalog" / "data"
           / "sources" / "model_configs")
PLAN = ["plan", "--no-check", "--gpus", "h100-sxm", "--rate", "1", "--isl", "100", "--osl", "100"]


@pytest.fixture
def cwd_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding a model's config.json (what '' used to resolve to)."""
    shutil.copy(CONFIGS / "Qwen--Qwen3-8B_config.json", tmp_path / "config.json")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", ["", "   ", "\t"])
def test_empty_model_name_is_an_error_not_the_working_directory(
        cwd_config: Path, name: str) -> None:
    assert config_path(name) is None
    with pytest.raises(UsageError, match="model name is empty") as e:
        get_model(name, where="--model")
    assert e.value.where == "--model"
    assert "config.json" in get_model(".").source  # an explicit path still reads it


def test_plan_with_an_empty_model_exits_2_naming_the_flag(
        cwd_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*PLAN, "--model", ""]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--model: model name is empty" in err and "Traceback" not in err


def test_empty_catalog_names_are_errors_of_their_own() -> None:
    with pytest.raises(UsageError, match="gpu name is empty"):
        get_gpu(" ", where="system")


def test_missing_config_in_a_named_directory_names_the_flag(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputFileError, match=r"holds no config\.json \(given as --model\)"):
        get_model("mine", where="--model")


def _edited(tmp_path: Path, name: str, **edit: object) -> Path:
    cfg: dict[str, Any] = json.loads((CONFIGS / name).read_text())
    text = cfg.get("text_config", cfg)  # a multimodal wrapper's language model
    text.update(edit)
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    return p


DSV3 = "deepseek-ai--DeepSeek-V3_config.json"
QWEN_MOE = "Qwen--Qwen3-30B-A3B_config.json"
QWEN = "Qwen--Qwen3-8B_config.json"
NEMOTRON = "nvidia--Nemotron-H-56B-Base-8K_config.json"
NEMOTRON_ULTRA = "nvidia--NVIDIA-Nemotron-3-Ultra-550B-A55B-BF16_config.json"
SCOUT = "meta-llama--Llama-4-Scout-17B-16E-Instruct_config.json"
QWEN35 = "Qwen--Qwen3.5-27B_config.json"


@pytest.mark.parametrize(
    ("base", "edit", "field", "words"),
    [
        # were accepted and changed plans, or truncated (64.7 read as 64)
        (DSV3, {"qk_rope_head_dim": -64}, "qk_rope_head_dim", "must be >= 1, got -64"),
        (DSV3, {"qk_rope_head_dim": 64.7}, "qk_rope_head_dim", "must be a whole number, got 64.7"),
        (DSV3, {"q_lora_rank": -5}, "q_lora_rank", "must be >= 1, got -5"),
        (DSV3, {"kv_lora_rank": -512}, "kv_lora_rank", "must be >= 1"),
        (DSV3, {"index_n_heads": 64, "index_head_dim": -1, "index_topk": 2048},
         "index_head_dim", "must be >= 1"),
        (QWEN_MOE, {"shared_expert_intermediate_size": -100}, "shared_expert_intermediate_size",
         "must be >= 0, got -100"),
        (QWEN_MOE, {"first_k_dense_replace": 1000}, "first_k_dense_replace",
         "1000 dense layers of 48 layers"),
        (QWEN_MOE, {"interleave_moe_layer_step": 0}, "interleave_moe_layer_step", "must be >= 1"),
        (QWEN_MOE, {"n_shared_experts": -1}, "n_shared_experts", "must be >= 0"),
        (QWEN_MOE, {"moe_latent_size": -3}, "moe_latent_size", "must be >= 1"),
        (QWEN35, {"linear_num_key_heads": -16}, "linear_num_key_heads", "must be >= 1"),
        (NEMOTRON, {"ssm_state_size": 0}, "ssm_state_size", "must be >= 1"),
        # were "invalid literal for int()" or "object of type 'int' has no len()", no key named
        (DSV3, {"v_head_dim": "x"}, "v_head_dim", 'must be a whole number, got "x"'),
        (DSV3, {"q_lora_rank": "abc"}, "q_lora_rank", 'must be a whole number, got "abc"'),
        (QWEN_MOE, {"shared_expert_intermediate_size": "big"}, "shared_expert_intermediate_size",
         'must be a whole number, got "big"'),
        (QWEN_MOE, {"mlp_only_layers": 5}, "mlp_only_layers", "must list layer indices"),
        (QWEN_MOE, {"mlp_only_layers": [0, 99]}, "mlp_only_layers", "must list layer indices"),
        (NEMOTRON, {"mamba_num_heads": "many"}, "mamba_num_heads", "must be a whole number"),
        # were read as 2 bytes per element, silently
        (NEMOTRON, {"mamba_ssm_cache_dtype": "int3"}, "mamba_ssm_cache_dtype",
         'unknown state dtype "int3"; accepted: float32, bfloat16, float16'),
        (QWEN35, {"mamba_ssm_dtype": 5}, "mamba_ssm_dtype", "unknown state dtype 5"),
        # was "field 'X': missing 'X'"
        (NEMOTRON, {"hybrid_override_pattern": "MXM*"}, "hybrid_override_pattern",
         "unknown layer letter 'X' (layer 1); allowed: M (Mamba-2), E (MoE), * (attention), "
         "- (MLP)"),
        (NEMOTRON, {"hybrid_override_pattern": 5}, "hybrid_override_pattern",
         "must be a string of layer letters"),
        (NEMOTRON, {"num_hidden_layers": 100}, "hybrid_override_pattern",
         "118 layers where num_hidden_layers is 100"),
        (NEMOTRON_ULTRA, {"layers_block_type": ["mamba", "banana"]}, "layers_block_type",
         'unknown block type "banana" (layer 1)'),
        (SCOUT, {"no_rope_layers": [1, 0]}, "no_rope_layers", "must list 0 or 1 for each"),
        (SCOUT, {"no_rope_layer_interval": 0}, "no_rope_layer_interval", "must be >= 1"),
        # was reported as a missing 'attention_chunk_size'
        (QWEN, {"layer_types": ["sliding_attention"] * 36, "sliding_window": None},
         "sliding_window", "missing or null, but 36 layers have sliding window attention"),
    ],
)
def test_impossible_config_values_name_the_file_and_key(
        tmp_path: Path, base: str, edit: dict[str, object], field: str, words: str) -> None:
    _assert_refused(tmp_path, base, edit, field, words)


@pytest.mark.parametrize(
    ("base", "edit", "check"),
    [
        # null q_lora_rank: queries not compressed (DeepSeek-V2-Lite)
        (DSV3, {"q_lora_rank": None}, lambda m: m.attention.q_lora_rank is None),
        # a shared width of 0 or null: no shared expert (Qwen3-Coder, MiniMax write 0)
        (QWEN_MOE, {"shared_expert_intermediate_size": 0}, lambda m: m.moe.num_shared_experts == 0),
        (QWEN_MOE, {"shared_expert_intermediate_size": None},
         lambda m: m.moe.num_shared_experts == 0),
        (QWEN_MOE, {"shared_expert_intermediate_size": 768.0},
         lambda m: m.moe.shared_intermediate_size == 768 and m.moe.num_shared_experts == 1),
        (QWEN_MOE, {"mlp_only_layers": [0, 1]}, lambda m: m.moe.dense_layers == 2),
        (QWEN_MOE, {"first_k_dense_replace": 0}, lambda m: not m.moe.dense_layers),
        (SCOUT, {"no_rope_layers": [1, 1, 1, 0] * 12},
         lambda m: m.attention.sliding_layers == 36),
    ],
)
def test_values_that_may_be_null_or_zero_still_convert(
        tmp_path: Path, base: str, edit: dict[str, object], check: Any) -> None:
    assert check(model_from_config(_edited(tmp_path, base, **edit)))


KIMI_NVFP4 = "nvidia--Kimi-K2.6-NVFP4_config.json"  # a wrapper quantized at the top level
CT_INT8_FP4 = {"quant_method": "compressed-tensors", "config_groups": {
    "a": {"weights": {"num_bits": 4, "type": "float"}},
    "b": {"weights": {"num_bits": 8, "type": "int"}}}}


@pytest.mark.parametrize(
    ("base", "edit", "field", "words"),
    [
        # were read as bf16
        (QWEN, {"torch_dtype": "int3"}, "torch_dtype",
         'unknown dtype "int3"; known: bfloat16, bf16, float16'),
        (QWEN, {"torch_dtype": 16}, "torch_dtype", "unknown dtype 16"),
        (QWEN, {"torch_dtype": None, "dtype": "float64"}, "dtype", 'unknown dtype "float64"'),
        (DSV3, {"torch_dtype": "int3"}, "torch_dtype", "unknown dtype"),  # fp8 checkpoint too
        (QWEN, {"quantization_config": {"quant_method": 5}}, "quantization_config.quant_method",
         "must be a string naming the quantization method, got 5; known: compressed-tensors, "
         "fp8, modelopt, mxfp4"),
        (QWEN, {"quantization_config": {"quant_method": "foo"}},
         "quantization_config.quant_method",
         'unknown quantization method "foo"; known: compressed-tensors, fp8, modelopt, mxfp4'),
        (QWEN, {"quantization_config": {"bits": 4}}, "quantization_config.quant_method",
         "missing; known methods"),
        # real methods not modelled: "not supported yet", not "unknown"
        (QWEN, {"quantization_config": {"quant_method": "gptq", "bits": 4}},
         "quantization_config.quant_method", "'gptq' checkpoints are not supported yet"),
        (QWEN, {"quantization_config": {"quant_method": "AWQ"}},
         "quantization_config.quant_method", "'awq' checkpoints are not supported yet"),
        (QWEN, {"quantization_config": CT_INT8_FP4}, "quantization_config",
         "compressed-tensors weights of float 4-bit, int 8-bit are not supported yet"),
        # was ignored (the config read as if it had no text_config)
        (QWEN, {"text_config": "qwen3"}, "text_config", 'must be an object (the language '
         "model's config), got \"qwen3\""),
        (QWEN, {"text_config": [1, 2]}, "text_config", "must be an object"),
    ],
)
def test_unknown_dtypes_quant_methods_and_text_configs_name_the_key(
        tmp_path: Path, base: str, edit: dict[str, object], field: str, words: str) -> None:
    _assert_refused(tmp_path, base, edit, field, words)


def test_a_wrappers_top_level_quant_method_is_read_and_checked(tmp_path: Path) -> None:
    cfg: dict[str, Any] = json.loads((CONFIGS / KIMI_NVFP4).read_text())
    cfg["quantization_config"]["quant_method"] = "foo"
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    with pytest.raises(InputFileError, match='unknown quantization method "foo"') as e:
        model_from_config(p)
    assert e.value.field == "quantization_config.quant_method"
    cfg["quantization_config"] = {"quant_method": "fp8"}
    p.write_text(json.dumps(cfg))
    assert model_from_config(p).native_dtype == "fp8"


def _ct(bits: int, kind: str | None) -> dict[str, Any]:
    w: dict[str, Any] = {"num_bits": bits} | ({"type": kind} if kind else {})
    return {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": w}}}


@pytest.mark.parametrize(
    ("base", "edit", "dtype"),
    [
        (QWEN, {"torch_dtype": "bfloat16"}, "bf16"),
        (QWEN, {"torch_dtype": "float16"}, "fp16"),
        (QWEN, {"torch_dtype": "BFloat16"}, "bf16"),
        (QWEN, {"torch_dtype": "float32"}, "bf16"),  # served in bf16: the catalog has no fp32
        (QWEN, {"torch_dtype": "float8_e4m3fn"}, "fp8"),
        (QWEN, {"torch_dtype": None, "dtype": "float16"}, "fp16"),  # transformers >= 4.56
        (QWEN, {"torch_dtype": None}, "bf16"),  # no dtype: the documented default
        (QWEN, {"quantization_config": None}, "bf16"),
        (QWEN, {"quantization_config": {"quant_method": "FP8"}}, "fp8"),
        (QWEN, {"quantization_config": {"quant_method": "mxfp4"}}, "fp4"),
        (QWEN, {"quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4"}},
         "bf16"),  # read as the unquantized dtype, as the catalog's NVIDIA entries
        (QWEN, {"quantization_config": _ct(4, None)}, "int4"),
        (QWEN, {"quantization_config": _ct(8, "int")}, "int8"),
        # were read as int8 / int4
        (QWEN, {"quantization_config": _ct(8, "float")}, "fp8"),
        (QWEN, {"quantization_config": _ct(4, "float")}, "fp4"),
        (QWEN, {"text_config": None}, "bf16"),
    ],
)
def test_real_dtypes_and_quant_methods_still_convert(
        tmp_path: Path, base: str, edit: dict[str, object], dtype: str) -> None:
    assert model_from_config(_edited(tmp_path, base, **edit)).native_dtype == dtype


@pytest.mark.parametrize(
    ("base", "edit", "words"),
    [
        (QWEN, {"num_hidden_layers": 1e12}, "num_hidden_layers 1000000000000"),
        (QWEN, {"hidden_size": 10**9, "head_dim": 128}, "hidden_size 1000000000"),
        (QWEN, {"vocab_size": 10**14}, "vocab_size 100000000000000"),
        (QWEN_MOE, {"num_experts": 10**9, "num_experts_per_tok": 8}, "experts 1000000000"),
        (SCOUT, {"num_hidden_layers": 10**15}, "num_hidden_layers"),  # was a 10^15-step loop
    ],
)
def test_absurd_sizes_are_refused_beyond_the_sanity_bound(
        tmp_path: Path, base: str, edit: dict[str, object], words: str) -> None:
    p = _edited(tmp_path, base, **edit)
    with pytest.raises(InputFileError) as e:
        model_from_config(p)
    assert e.value.path == str(p)
    assert "over the sanity bound of 1.00e+14 (100 trillion)" in str(e.value)
    assert words in str(e.value)


def test_the_largest_bundled_models_are_within_the_bound() -> None:
    from fleetplan.catalog.hf_config import MAX_PARAMS
    from fleetplan.perf.params import param_count

    for p in sorted(CONFIGS.glob("*.json")):
        assert param_count(model_from_config(p)) < MAX_PARAMS / 50, p.name


def _assert_refused(tmp_path: Path, base: str, edit: dict[str, object], field: str,
                    words: str) -> None:
    """The config `base` with `edit` applied is refused naming its file and `field`."""
    p = _edited(tmp_path, base, **edit)
    with pytest.raises(InputFileError) as e:
        model_from_config(p)
    assert e.value.path == str(p) and e.value.field == field
    assert words in str(e.value)
