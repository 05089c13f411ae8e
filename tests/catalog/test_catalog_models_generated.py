"""models.yaml is the converter's output over the copied configs and the metadata file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "src" / "fleetplan" / "catalog" / "data" / "sources"


def _tool() -> ModuleType:
    path = ROOT / "tools" / "hf_config_to_catalog.py"
    spec = importlib.util.spec_from_file_location("hf_config_to_catalog", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_models_yaml_is_generated_from_sources() -> None:
    text = (ROOT / "src" / "fleetplan" / "catalog" / "data" / "models.yaml").read_text()
    assert text == _tool().build_all(), "run tools/hf_config_to_catalog.py --all"


def test_every_config_used_is_copied_with_its_licence() -> None:
    metas = yaml.safe_load((SOURCES / "models_meta.yaml").read_text())
    for m in metas:
        assert (SOURCES / "model_configs" / m["config"]).is_file(), m["config"]
    assert (SOURCES / "model_configs" / "LICENSE-aiconfigurator-Apache-2.0").is_file()


def test_converter_handles_wrappers_mla_moe_and_layer_types() -> None:
    tool = _tool()
    cfgs = SOURCES / "model_configs"
    kimi = tool.convert(json.loads((cfgs / "moonshotai--Kimi-K2.5_config.json").read_text()))
    assert kimi["attention"]["kind"] == "mla" and kimi["attention"]["kv_lora_rank"] == 512
    assert kimi["moe"] == {
        "num_experts": 384,
        "experts_per_token": 8,
        "num_shared_experts": 1,
        "expert_intermediate_size": 2048,
        "dense_layers": 1,
    }
    assert kimi["native_dtype"] == "int4" and "mtp_layers" not in kimi
    oss = tool.convert(json.loads((cfgs / "openai--gpt-oss-120b_config.json").read_text()))
    assert oss["attention"]["sliding_layers"] == 18 and oss["attention"]["full_layers"] == 18
    assert oss["native_dtype"] == "fp4" and oss["moe"]["bias"] is True
    mm = tool.convert(json.loads((cfgs / "MiniMaxAI--MiniMax-M2.5_config.json").read_text()))
    assert mm["moe"]["num_shared_experts"] == 0 and mm["mtp_layers"] == 3
    q35 = tool.convert(json.loads((cfgs / "Qwen--Qwen3.5-397B-A17B_config.json").read_text()))
    assert q35["moe"]["shared_intermediate_size"] == 1024 and q35["mtp_layers"] == 1
    assert q35["attention"]["output_gate"] is True


def test_single_config_cli_prints_an_entry(capsys: pytest.CaptureFixture[str]) -> None:
    tool = _tool()
    cfg = SOURCES / "model_configs" / "meta-llama--Meta-Llama-3.1-8B_config.json"
    assert tool.main([str(cfg), "--name", "x", "--hf-id", "org/x"]) == 0
    out = capsys.readouterr().out
    entry = yaml.safe_load(out)[0]
    assert entry["name"] == "x" and entry["num_layers"] == 32
