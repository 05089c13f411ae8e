"""The stored calibration is looked up per (GPU, engine, precision) and model class."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetplan.catalog import get_model
from fleetplan.perf import DEFAULT_EFFICIENCY, Deployment
from fleetplan.perf.calibration import calibration_entries, efficiency_for, model_class_of


def _uncapped(cls: str, gpu: str, engine: str, precision: str, field: str,
              disagg: bool = False) -> float:
    """One field of a group's parameters before any cap, by hand from the stored log factors:
    the default times exp(class-wide + GPU + engine + precision + group + engine x mode + GPU x
    engine)."""
    import math

    from fleetplan.perf.calibration import calibration_factors

    f = calibration_factors()[cls]
    labels = {"gpu": gpu, "engine": engine, "precision": precision,
              "group": f"{gpu}/{engine}/{precision}",
              "mode": f"{engine}/{'disagg' if disagg else 'agg'}", "gpu_engine": f"{gpu}/{engine}"}
    log = f["global"][field] + sum(f[level].get(lab, {}).get(field, 0.0)
                                   for level, lab in labels.items())
    return float(getattr(DEFAULT_EFFICIENCY, field)) * math.exp(log)


def test_model_class() -> None:
    assert model_class_of(get_model("llama-3.1-70b")) == "dense"
    assert model_class_of(get_model("deepseek-v3")) == "moe"


def test_dense_and_moe_fits_are_stored_apart() -> None:
    keys = calibration_entries()
    both = [k[:3] for k in keys if k[3] == "dense" and (*k[:3], "moe") in keys]
    assert both, "some (gpu, engine, precision) group is fitted for both classes"
    g = both[0]
    dense, moe = efficiency_for(*g, "dense"), efficiency_for(*g, "moe")
    assert "dense models" in dense.provenance and "moe models" in moe.provenance
    assert dense != moe  # fitted apart: the values differ
    # MoE TTFT is fitted on the relative error (biased low): every such prediction says so.
    assert "relative error" in moe.provenance and "relative error" not in dense.provenance


def test_missing_fit_falls_back_to_defaults_and_says_so() -> None:
    e = efficiency_for("l4", "llama.cpp", "bf16", "moe")
    assert e == DEFAULT_EFFICIENCY
    assert e.provenance.startswith("defaults (no calibration fit for l4/llama.cpp/bf16")
    with pytest.raises(ValueError, match="model_class"):
        efficiency_for("h100-sxm", "vllm", "fp8", "sparse")


def test_deployment_build_uses_the_models_class() -> None:
    dep = Deployment.build("llama-3.1-70b", "h100-sxm", "fp8", "vllm", tp=2)
    assert dep.efficiency == efficiency_for("h100-sxm", "vllm", "fp8", "dense", "llama-3.1-70b")
    assert "dense models" in dep.efficiency.provenance
    assert "factor of model llama-3.1-70b" in dep.efficiency.provenance


def test_model_factor_multiplies_the_group_fit_and_is_capped() -> None:
    """The model level of the fit: the stored log factor of a model the fit saw multiplies
    every field of the group's parameters (fractions capped as the step time caps them); an
    unknown model or no model leaves the group's parameters as they are."""
    import math

    from fleetplan.perf.calibration import calibration_factors
    from fleetplan.perf.efficiency import FRACTION_CAPS

    table = calibration_factors()["moe"]["model"]
    assert "gpt-oss-120b" in table and "deepseek-r1" in table
    base = efficiency_for("b200", "trtllm", "fp4", "moe")
    assert efficiency_for("b200", "trtllm", "fp4", "moe", "no-such-model") == base
    e = efficiency_for("b200", "trtllm", "fp4", "moe", "gpt-oss-120b")
    assert "factor of model gpt-oss-120b" in e.provenance
    for k, log in table["gpt-oss-120b"].items():
        want = min(_uncapped("moe", "b200", "trtllm", "fp4", k) * math.exp(log),
                   FRACTION_CAPS.get(k, math.inf))
        assert float(getattr(e, k)) == pytest.approx(want, rel=1e-12), k
    assert e != base


def test_unfitted_model_takes_the_factor_of_its_architecture() -> None:
    """Llama-3.3-70B is Llama-3.1-70B's network post-trained again: the fit never saw it, so it
    gets Llama-3.1-70B's model factor and says so; Llama-3.1-405B (another network) gets none."""
    from fleetplan.perf.calibration import same_architecture

    assert same_architecture(get_model("llama-3.3-70b"), get_model("llama-3.1-70b"))
    assert not same_architecture(get_model("llama-3.1-405b"), get_model("llama-3.1-70b"))
    group = ("h100-sxm", "trtllm", "fp8", "dense")
    fitted = efficiency_for(*group, "llama-3.1-70b")
    twin = efficiency_for(*group, "llama-3.3-70b")
    assert "factor of model llama-3.1-70b (same architecture as llama-3.3-70b)" in twin.provenance
    assert {k: getattr(twin, k) for k in fitted.__dataclass_fields__ if k != "provenance"} == {
        k: getattr(fitted, k) for k in fitted.__dataclass_fields__ if k != "provenance"}
    other = efficiency_for(*group, "llama-3.1-405b")
    assert "factor of model" not in other.provenance
    assert other != fitted


def test_group_without_fit_is_composed_from_its_gpu_and_engine_levels() -> None:
    from fleetplan.perf.calibration import calibration_factors

    f = calibration_factors()["dense"]
    gpus, engines = set(f["gpu"]), set(f["engine"])
    fitted = {k[:3] for k in calibration_entries() if k[3] == "dense"}
    combo = next((g, e, p) for g in sorted(gpus) for e in sorted(engines)
                 for p in ("bf16", "fp8", "fp4") if (g, e, p) not in fitted)
    eff = efficiency_for(*combo, "dense")
    assert "composed from the class-wide" in eff.provenance
    assert eff != DEFAULT_EFFICIENCY
    # A GPU the fit never saw: the documented defaults.
    assert efficiency_for("mi300x", combo[1], combo[2], "dense") == DEFAULT_EFFICIENCY


def test_stored_fractions_are_capped_like_the_step_time() -> None:
    from fleetplan.perf.efficiency import FRACTION_CAPS

    for key in calibration_entries():
        eff = efficiency_for(*key)
        for field, cap in FRACTION_CAPS.items():
            assert getattr(eff, field) <= cap + 1e-12, (key, field)


def test_model_of_several_fitted_twins_takes_their_mean_log_factor(tmp_path: Path) -> None:
    """A private DeepSeek-V3-shaped model (a config.json the catalog does not list): DeepSeek-V3,
    -R1 and -V3.1 share that architecture and were each fitted; it gets the mean of their log
    factors, not whichever sorts first."""
    import json
    import math
    import shutil

    from fleetplan.catalog.hf_config import model_from_config
    from fleetplan.perf.calibration import calibration_factors
    from fleetplan.perf.efficiency import FRACTION_CAPS

    src = (Path(__file__).resolve().parents[2] / "src" / "fleetplan" / "catalog" / "data"
           / "sources" / "model_configs" / "deepseek-ai--DeepSeek-V3_config.json")
    d = tmp_path / "ds-sft"
    d.mkdir()
    shutil.copy(src, d / "config.json")
    assert json.loads((d / "config.json").read_text())["n_routed_experts"] == 256
    m = model_from_config(d / "config.json")
    table = calibration_factors()["moe"]["model"]
    twins = ["deepseek-r1", "deepseek-v3", "deepseek-v3.1"]
    assert all(t in table for t in twins)
    base = efficiency_for("b200", "trtllm", "fp8", "moe")
    e = efficiency_for("b200", "trtllm", "fp8", "moe", m)
    assert "models deepseek-r1 + deepseek-v3 + deepseek-v3.1 (mean" in e.provenance
    assert base != e
    log = sum(table[t]["bandwidth"] for t in twins) / 3
    want = min(_uncapped("moe", "b200", "trtllm", "fp8", "bandwidth") * math.exp(log),
               FRACTION_CAPS.get("bandwidth", math.inf))
    assert e.bandwidth == pytest.approx(want, rel=1e-12)


def test_fitted_and_composed_efficiencies_state_the_held_out_error() -> None:
    """Every calibrated efficiency ends its provenance with the class's cross-validated error
    that the calibration file records (what a plan built on it can expect); defaults do not."""
    import yaml

    from fleetplan.perf.calibration import calibration_factors

    doc = yaml.safe_load((Path(__file__).parents[2] / "src" / "fleetplan" / "perf" / "calibration"
                          / "measured_serving_points.yaml").read_text())
    held = doc["held_out_mape"]
    assert held["folds"] == 5 and "groups held out" in held["method"]
    for cls, (g, e, p) in (("dense", ("h100-sxm", "vllm", "fp8")),
                           ("moe", ("h200-sxm", "sglang", "fp8"))):
        want = (f"; expected error ({cls} groups held out, 5-fold CV): "
                f"TTFT {held[cls]['ttft_pct']}%, TPOT {held[cls]['tpot_pct']}% MAPE")
        assert (g, e, p, cls) in calibration_entries()
        assert efficiency_for(g, e, p, cls, "llama-3.1-70b").provenance.endswith(want)
        f = calibration_factors()[cls]
        assert (g, e, "int8", cls) not in calibration_entries() and g in f["gpu"]
        assert efficiency_for(g, e, "int8", cls).provenance.endswith(want)  # composed
    assert "expected error" not in efficiency_for("l4", "llama.cpp", "bf16", "dense").provenance
    # the measured-step fits (another file) state none
    steps = efficiency_for("h100-sxm", "transformers", "bf16", "dense")
    assert "gpu_steps.yaml" in steps.provenance and "expected error" not in steps.provenance


def test_engine_version_factor_multiplies_the_group_fit_and_is_capped() -> None:
    """The version level of the fit: with the engine release a row recorded, the stored log
    factor of that release multiplies the group's parameters (fractions capped) and the
    provenance names it; a release the fit never saw, or none given (a plan), leaves them."""
    import math

    from fleetplan.perf.calibration import calibration_factors
    from fleetplan.perf.efficiency import FRACTION_CAPS

    table = calibration_factors()["moe"]["version"]
    assert "sglang/0.5.9" in table and "trtllm/" in table  # a release; the unrecorded ones
    group = ("b200", "sglang", "fp8", "moe", "deepseek-r1")
    base = efficiency_for(*group)
    assert efficiency_for(*group, engine_version="0.0.0-never-seen") == base
    e = efficiency_for(*group, engine_version="0.5.9")
    assert "factor of engine version sglang 0.5.9" in e.provenance
    model_log = calibration_factors()["moe"]["model"]["deepseek-r1"]
    for k, log in table["sglang/0.5.9"].items():
        want = min(_uncapped("moe", "b200", "sglang", "fp8", k)
                   * math.exp(log + model_log.get(k, 0.0)), FRACTION_CAPS.get(k, math.inf))
        assert float(getattr(e, k)) == pytest.approx(want, rel=1e-12), k
    assert e != base
    unrecorded = efficiency_for("b200", "trtllm", "fp4", "moe", engine_version="")
    assert "trtllm rows of unrecorded version" in unrecorded.provenance


def test_disaggregated_pools_take_their_engines_mode_factor() -> None:
    """`disagg=True`: the engine x disaggregated-mode level of the fit replaces the aggregated
    one, for every group of the engine alike (each group's own levels kept), and the provenance
    says so."""
    import math

    from fleetplan.perf.calibration import calibration_factors
    from fleetplan.perf.efficiency import FRACTION_CAPS

    f = calibration_factors()["moe"]
    assert "trtllm/disagg" in f["mode"]
    for key in (("gb200", "trtllm", "fp4"), ("h200-sxm", "trtllm", "fp8")):
        agg = efficiency_for(*key, "moe")
        dis = efficiency_for(*key, "moe", disagg=True)
        assert agg != dis
        assert "mode trtllm/disagg" in dis.provenance and "disagg" not in agg.provenance
        for field in ("bandwidth", "compute_max", "step_overhead_s"):
            want = min(_uncapped("moe", *key, field, disagg=True),
                       FRACTION_CAPS.get(field, math.inf))
            assert getattr(dis, field) == pytest.approx(want, rel=1e-12), (key, field)
