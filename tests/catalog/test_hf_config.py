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
