"""A model built at run time from a config.json (`--model path/to/config.json`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fleetplan.catalog import get_model
from fleetplan.catalog.hf_config import config_path, model_from_config
from fleetplan.cli import main
from fleetplan.errors import InputFileError
from fleetplan.perf.calibration import same_architecture
from fleetplan.perf.params import param_count

CONFIGS = (Path(__file__).resolve().parents[2] / "src" / "fleetplan" / "catalog" / "data"
           / "sources" / "model_configs")


def _copy(tmp_path: Path, name: str, dirname: str = "my-finetune") -> Path:
    d = tmp_path / dirname
    d.mkdir()
    shutil.copy(CONFIGS / name, d / "config.json")
    return d


def test_directory_or_file_resolves_to_the_converted_architecture(tmp_path: Path) -> None:
    d = _copy(tmp_path, "meta-llama--Meta-Llama-3.1-70B_config.json")
    for ref in (str(d), str(d / "config.json")):
        m = get_model(ref)
        assert m.name == "my-finetune" and str(d / "config.json") in m.source
        assert same_architecture(m, get_model("llama-3.1-70b"))
        assert param_count(m) == param_count(get_model("llama-3.1-70b"))
    assert config_path("llama-3.1-70b") is None  # a name, not a path


def test_unfitted_local_model_takes_its_architectures_factor(tmp_path: Path) -> None:
    from fleetplan.perf.calibration import efficiency_for

    m = get_model(str(_copy(tmp_path, "meta-llama--Meta-Llama-3.1-70B_config.json")))
    eff = efficiency_for("h100-sxm", "vllm", "fp8", "dense", m)
    assert "factor of model llama-3.1-70b (same architecture as my-finetune)" in eff.provenance
    assert eff.bandwidth == efficiency_for("h100-sxm", "vllm", "fp8", "dense",
                                           "llama-3.1-70b").bandwidth


@pytest.mark.parametrize(
    ("text", "needle"),
    [("{not json", "not a JSON config"), ("[1, 2]", "not a JSON object"),
     (json.dumps({"hidden_size": 8}), "field 'num_hidden_layers': missing")],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "config.json"
    p.write_text(text)
    with pytest.raises(InputFileError, match=needle) as e:
        model_from_config(p)
    assert str(p) in str(e.value)


def test_plan_with_a_config_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _copy(tmp_path, "Qwen--Qwen3-8B_config.json", "qwen-sft")
    args = ["plan", "--gpus", "h100-sxm", "--rate", "2", "--isl", "1000", "--osl", "200",
            "--no-check"]
    assert main([*args, "--model", str(d)]) == 0
    assert "qwen-sft" in capsys.readouterr().out
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    assert main([*args, "--model", str(bad)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "config.json" in err and "missing" in err


def _edited(tmp_path: Path, name: str, **edit: object) -> Path:
    cfg = json.loads((CONFIGS / name).read_text())
    cfg.update(edit)
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    return p


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        ({"num_hidden_layers": 2.5}, "num_hidden_layers", "must be a whole number, got 2.5"),
        ({"num_hidden_layers": True}, "num_hidden_layers", "must be a whole number, got true"),
        ({"hidden_size": None}, "hidden_size", "must be a whole number, got null"),
        ({"max_position_embeddings": 0}, "max_position_embeddings", "must be >= 1, got 0"),
        ({"num_key_value_heads": 5}, "num_key_value_heads", "5 KV heads must divide the 64"),
        ({"num_key_value_heads": 128}, "num_key_value_heads", "must divide"),
        ({"head_dim": -4}, "head_dim", "must be >= 1"),
        ({"intermediate_size": "abc"}, "intermediate_size", "must be a whole number"),
        ({"tie_word_embeddings": "no"}, "tie_word_embeddings", "must be true or false"),
        ({"quantization_config": "fp8"}, "quantization_config", "must be an object"),
        ({"quantization_config": {"quant_method": "compressed-tensors", "config_groups": [1]}},
         "quantization_config", "config_groups must map"),
        ({"layer_types": ["full_attention"] * 3}, "layer_types", "one type per layer (80)"),
        ({"layer_types": ["banana"] * 80}, "layer_types", 'unknown layer type(s) "banana"'),
        ({"use_sliding_window": True, "sliding_window": -5}, "sliding_window", "must be >= 1"),
    ],
)
def test_config_values_the_converter_cannot_read_name_the_key(
        tmp_path: Path, edit: dict[str, object], field: str, words: str) -> None:
    """These were coerced (2.5 layers read as 2, "no" as true, a negative sliding window planned
    11x fewer GPUs), silently ignored (layer_types of the wrong length) or raised tracebacks
    (a quantization_config that is not an object)."""
    p = _edited(tmp_path, "meta-llama--Meta-Llama-3.1-70B_config.json", **edit)
    with pytest.raises(InputFileError) as e:
        model_from_config(p)
    assert e.value.field == field and words in str(e.value)


def test_unknown_attention_layer_kinds_read_as_full_attention(tmp_path: Path) -> None:
    """Published configs name new kinds (GLM-5.2's "deepseek_sparse_attention"): full KV."""
    p = _edited(tmp_path, "meta-llama--Meta-Llama-3.1-70B_config.json",
                layer_types=["deepseek_sparse_attention"] * 80)
    m = model_from_config(p)
    assert m.attention.full_layers == 80 and param_count(m) == param_count(
        get_model("llama-3.1-70b"))


def test_more_experts_per_token_than_experts_is_an_error(tmp_path: Path) -> None:
    p = _edited(tmp_path, "Qwen--Qwen3-30B-A3B_config.json", num_experts_per_tok=1000)
    with pytest.raises(InputFileError, match="1000 experts per token of 128 experts"):
        model_from_config(p)


def test_a_bare_catalog_name_is_not_shadowed_by_a_local_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--model qwen3-8b` with ./qwen3-8b/config.json (a 28-layer Qwen3-0.6B here) in the
    working directory silently planned the folder's model; the catalog name wins, the explicit
    path `./qwen3-8b` reads the folder, and missing paths say so (were "unknown model")."""
    _copy(tmp_path, "Qwen--Qwen3-0.6B_config.json", dirname="qwen3-8b")
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    assert get_model("qwen3-8b").hf_id == get_model("Qwen/Qwen3-8B").hf_id
    assert "config.json" in get_model("./qwen3-8b").source
    with pytest.raises(InputFileError, match="no such file or directory"):
        get_model("nope.json")
    with pytest.raises(InputFileError, match=r"holds no config\.json"):
        get_model("empty")
