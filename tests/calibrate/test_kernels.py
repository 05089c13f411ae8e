"""Measured GEMM kernels: reading, the roofline's linear-layer terms, the fit, the CLI."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from fleetplan.calibrate.fit import mape
from fleetplan.calibrate.kernels import (
    REQUIRED_COLUMNS,
    LayerTime,
    bundled_kernels_path,
    fit_attention,
    fit_kernels,
    hbm_fractions,
    held_out_model,
    layer_times,
    predict_attention,
    predict_layers,
    read_kernels,
)
from fleetplan.catalog import get_gpu, get_model
from fleetplan.errors import InputFileError
from fleetplan.perf.calibration import efficiency_for
from fleetplan.perf.efficiency import DEFAULT_EFFICIENCY, Efficiency
from fleetplan.perf.memory import embedding_params
from fleetplan.perf.params import active_param_count

BENCH = Path(__file__).parents[2] / "bench" / "gpu_kernels.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_kernels", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # torch is imported only when measuring
    return mod


@pytest.fixture(scope="module")
def bundled() -> tuple[list[Any], list[LayerTime]]:
    rows = read_kernels(bundled_kernels_path())
    return rows, layer_times(rows)


def test_layer_time_by_hand() -> None:
    """One Llama-3.1-70B TP 8 bf16 layer at M = 64 and M = 4,096 on an H200 (989.5 TFLOP/s,
    4.8 TB/s), defaults: compute 0.70 x M / (M + 48), bandwidth 0.80, 20 us per layer."""
    k_n = 8192 * 1280 + 1024 * 8192 + 8192 * 7168 + 3584 * 8192  # weights of one rank's layer
    small = LayerTime("h200-sxm", "bf16", "llama-3.1-70b", 8, 64, "r", 2.0 * 64 * k_n,
                      2.0 * k_n, 1e-3, 2)
    big = replace(small, m=4096, flops=2.0 * 4096 * k_n)
    got = predict_layers([small, big], DEFAULT_EFFICIENCY)
    # M = 64: weights 2 x 107.0 M params = 214 MB at 0.8 x 4.8 TB/s = 55.7 us (compute 23.7 us)
    assert got[0] == pytest.approx(2.0 * k_n / (0.8 * 4.8e12) + 20e-6, rel=1e-9)
    assert got[0] == pytest.approx(75.7e-6, rel=1e-3)
    # M = 4096: 876.2 GFLOP at 989.5 T x 0.70 x 4096 / 4144 = 1.280 ms
    eff = 0.70 * 4096 / (4096 + 48)
    assert got[1] == pytest.approx(2.0 * 4096 * k_n / (989.5e12 * eff) + 20e-6, rel=1e-9)
    assert got[1] == pytest.approx(1.2998e-3, rel=1e-3)


def test_fit_recovers_known_terms() -> None:
    """Layers timed by a known efficiency are fitted back to it (the ridge toward the defaults
    costs up to 2%)."""
    truth = Efficiency(compute_max=0.62, compute_half_tokens=30.0, bandwidth=0.71,
                       layer_overhead_s=35e-6)
    layers = []
    for tp, k_n in ((1, 9.0e8), (4, 2.2e8), (8, 1.1e8)):
        for m in (1, 8, 64, 256, 1024, 4096, 16384):
            x = LayerTime("h200-sxm", "fp8", f"m{tp}", tp, m, "r", 2.0 * m * k_n, k_n, 1.0, 2)
            layers.append(replace(x, time_s=float(predict_layers([x], truth)[0])))
    fit = fit_kernels(layers)[("h200-sxm", "fp8")]
    for f in ("compute_max", "compute_half_tokens", "bandwidth", "layer_overhead_s"):
        assert getattr(fit.efficiency, f) == pytest.approx(getattr(truth, f), rel=0.02), f
    assert fit.mape_pct < 0.5 and fit.default_mape_pct > 5


def test_bundled_measurement_fit_and_held_out_error(bundled: tuple[list[Any], list[LayerTime]]
                                                     ) -> None:
    """The H200 GEMMs (bench/gpu_kernels.py, 2026-11-29, two runs): the roofline's form holds
    them within 6% per precision, 7% for each model held out; the fitted terms are physical."""
    rows, layers = bundled
    assert len(rows) == 2953 and len(layers) == 720
    fits = fit_kernels(layers)
    assert set(fits) == {("h200-sxm", "bf16"), ("h200-sxm", "fp8")}
    for f in fits.values():
        assert f.mape_pct <= 6.0 and f.layers == 360
        e = f.efficiency
        assert 0.6 <= e.compute_max <= 0.8 and 10 <= e.compute_half_tokens <= 40
        assert 0.7 <= e.bandwidth <= 0.85 and 10e-6 <= e.layer_overhead_s <= 30e-6
    meas = np.array([x.time_s for x in layers])
    held = held_out_model(layers)
    assert np.isfinite(held).all() and mape(held, meas) <= 7.0
    # a large GEMM is compute-bound at about 0.7 of the datasheet peak
    big = [x for x in layers if x.m == 8192 and x.tp == 1 and x.precision == "bf16"]
    rate = [x.flops / x.time_s / get_gpu("h200-sxm").flops_per_s["bf16"].value for x in big]
    assert all(0.6 <= r <= 0.8 for r in rate)


def test_serving_fit_gemm_terms_agree_with_the_silicon(bundled: tuple[list[Any],
                                                                      list[LayerTime]]) -> None:
    """The serving-point fit never saw a kernel time, only TTFT and TPOT of whole runs; its
    H200 dense compute curve and bandwidth, with the GEMMs' own fixed time per layer, predict
    the measured GEMM layers within 9% (bf16 5.7-6.1%, fp8 7.6-7.9% on 2026-11-29)."""
    _, layers = bundled
    fits = fit_kernels(layers)
    for prec in ("bf16", "fp8"):
        sel = [x for x in layers if x.precision == prec]
        meas = np.array([x.time_s for x in sel])
        own = fits[("h200-sxm", prec)].efficiency.layer_overhead_s
        for engine in ("vllm", "sglang", "trtllm"):
            e = efficiency_for("h200-sxm", engine, prec, "dense")
            assert not e.provenance.startswith("defaults")
            assert mape(predict_layers(sel, replace(e, layer_overhead_s=own)), meas) <= 9.0


def test_hbm_rates(bundled: tuple[list[Any], list[LayerTime]]) -> None:
    rows, _ = bundled
    got = {(what, round(frac, 2)) for _, what, _, frac in hbm_fractions(rows)}
    assert got == {("copy", 0.58), ("read", 0.91)}


def test_script_shapes_are_the_catalog_models_layers() -> None:
    """bench/gpu_kernels.py times, per layer at TP 1, exactly the linear weights the roofline
    streams (the catalog's active parameters less embeddings and LM head), and the files it
    writes are what the reader takes."""
    mod = _script()
    assert set(REQUIRED_COLUMNS) | {"run"} <= set(mod.FIELDS)
    assert bundled_kernels_path().read_text().splitlines()[0].split(",") == mod.FIELDS
    for name, cfg_file in mod.MODEL_CONFIGS.items():
        cfg = json.loads((mod.CONFIGS / cfg_file).read_text())
        m = get_model(name)
        per_layer = sum(k * n for k, n in mod.gemm_shapes(cfg, 1).values())
        # beside the GEMMs: two norm vectors per layer and the final norm
        norms = 2 * m.hidden_size * m.num_layers + m.hidden_size
        assert per_layer * m.num_layers == active_param_count(m) - embedding_params(m) - norms
        # a TP rank holds 1/TP of the column- and row-parallel weights
        for tp in (2, 4, 8):
            sharded = sum(k * n for k, n in mod.gemm_shapes(cfg, tp).values())
            assert sharded == pytest.approx(per_layer / tp, rel=1e-9)
    for _, cat in mod.GPU_NAMES:
        assert get_gpu(cat).name == cat


def _write(tmp_path: Path, body: list[str]) -> Path:
    lines = bundled_kernels_path().read_text().splitlines()
    f = tmp_path / "k.csv"
    f.write_text("\n".join([lines[0], *body]) + "\n")
    return f


def _layer(lines: list[str], start: int) -> list[str]:
    return lines[start:start + 60:15]  # qkv, o, gate_up, down of one M (15 Ms per GEMM)


@pytest.mark.parametrize(
    ("edit", "line", "field", "needle"),
    [
        (lambda r: r.replace(",gemm,", ",kernel,", 1), 2, "kind", "must be one of gemm, hbm"),
        (lambda r: r.replace("h200-sxm", "h900", 1), 2, "gpu", "h900"),
        (lambda r: r.replace(",bf16,", ",fp3,", 1), 2, "precision", "fp3"),
        (lambda r: ",".join(v if i != 12 else "-1" for i, v in enumerate(r.split(","))), 2,
         "time_ms", "not a measured kernel time"),
        (lambda r: ",".join(v if i != 7 else "1.5" for i, v in enumerate(r.split(","))), 2,
         "m", "whole number"),
        (lambda r: ",".join(v if i != 10 else "7" for i, v in enumerate(r.split(","))), 2,
         "flops", "takes 2 M N K = 50,331,648"),
        (lambda r: r.replace(",gemm,", ",attn,", 1), 2, "gemm", "a prefill or a decode"),
        (lambda r: ",".join(v if i != 16 else "" for i, v in enumerate(r.split(","))), 2,
         "run", "name the measurement run"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path: Path, edit: Any, line: int, field: str,
                                           needle: str) -> None:
    lines = bundled_kernels_path().read_text().splitlines()
    body = _layer(lines, 2)
    f = _write(tmp_path, [edit(body[0]), *body[1:]])
    with pytest.raises(InputFileError) as e:
        layer_times(read_kernels(f))
    assert e.value.line == line and e.value.field == field and needle in str(e.value)
    assert str(f) in str(e.value)


def test_incomplete_or_doubled_layers_are_errors(tmp_path: Path) -> None:
    lines = bundled_kernels_path().read_text().splitlines()
    body = _layer(lines, 2)
    assert [r.split(",")[5] for r in body] == ["qkv", "o", "gate_up", "down"]
    assert len(layer_times(read_kernels(_write(tmp_path, body)))) == 1
    with pytest.raises(InputFileError) as e:
        layer_times(read_kernels(_write(tmp_path, body[:3])))
    assert e.value.line == 2 and "lacks its down GEMM" in str(e.value)
    with pytest.raises(InputFileError) as e:
        layer_times(read_kernels(_write(tmp_path, [*body, body[1]])))
    assert e.value.line == 6 and "o of llama-3.1-8b TP 1 bf16 at M 1 measured twice" in str(
        e.value)
    with pytest.raises(InputFileError) as e:
        read_kernels(_write(tmp_path, []))
    assert "no rows after the header" in str(e.value)


def test_cli(cli: Any, tmp_path: Path) -> None:
    r = cli("calibrate-kernels", "--out", str(tmp_path / "layers.csv"))
    assert r.code == 0, r.err
    assert "h200-sxm/bf16 (360 layers): compute_max 0." in r.out
    assert "h200-sxm HBM read: 4.39 TB/s, 0.915 of the datasheet peak" in r.out
    assert "GEMM terms MAPE %" in r.out
    out = (tmp_path / "layers.csv").read_text().splitlines()
    assert len(out) == 721 and out[0].startswith("gpu,precision,model,tp,m,run,")
    meas, fitted = zip(*((float(x.split(",")[8]), float(x.split(",")[9])) for x in out[1:]),
                       strict=True)
    assert mape(np.array(fitted), np.array(meas)) <= 6.0
    bad = tmp_path / "bad.csv"
    bad.write_text("gpu,kind\nh200-sxm,gemm\n")
    r = cli("calibrate-kernels", str(bad))
    assert r.code == 2 and "missing column(s)" in r.err and "Traceback" not in r.err


def test_attention_rows_by_hand_and_fit(bundled: tuple[list[Any], list[LayerTime]]) -> None:
    """Attention of one layer on one rank (PyTorch SDPA, bf16, H200, 2026-11-29): the roofline's
    attention terms (FLOPs at a fraction of the bf16 peak, KV bytes at a fraction of the HBM
    peak) plus a fixed time per call hold the 68 calls within 10%; the fitted fractions are
    physical; the serving fit's prefill attention (0.32 of peak) is slower than these kernels
    (docs/FIDELITY.md), its decode KV rate within 10% of them."""
    rows, _ = bundled
    attn = [r for r in rows if r.kind == "attn"]
    assert len(attn) == 68
    r = next(x for x in attn if (x.model, x.tp, x.gemm, x.m, x.n) ==
             ("llama-3.1-8b", 1, "prefill", 1, 8192))
    assert r.flops == 4 * 32 * 128 * 8192 * 8193 // 2  # causal pairs x 4 x heads x head_dim
    # 1.10e12 FLOPs at 0.5 x 989.5 TFLOP/s = 2.22 ms, + 10 us; its 4 MiB x 8 of KV is nothing
    assert predict_attention([r], 0.5, 0.9, 10e-6)[0] == pytest.approx(
        r.flops / (0.5 * 989.5e12) + 10e-6, rel=1e-12)
    f = fit_attention(rows)["h200-sxm"]
    assert f.rows == 68 and f.mape_pct <= 10.0
    assert 0.4 <= f.attention <= 0.65 and 0.85 <= f.kv_fraction <= 1.0
    assert 5e-6 <= f.fixed_s <= 20e-6
    meas = np.array([x.time_s for x in attn])
    dec = np.array([x.gemm == "decode" for x in attn])
    e = efficiency_for("h200-sxm", "vllm", "fp8", "dense")
    assert e.attention < f.attention
    pred = predict_attention(attn, e.attention, e.bandwidth * e.kv_read, f.fixed_s)
    assert mape(pred[dec], meas[dec]) <= 12.0


def test_implausible_rates_and_unknown_models_are_errors(tmp_path: Path) -> None:
    lines = bundled_kernels_path().read_text().splitlines()
    hbm = next(x for x in lines if ",hbm," in x)
    fields = hbm.split(",")
    fields[11] = str(10**15)  # a petabyte copied in 3 ms
    with pytest.raises(InputFileError) as e:
        read_kernels(_write(tmp_path, [",".join(fields)]))
    assert e.value.field == "bytes" and "beyond the 4.80 TB/s HBM peak" in str(e.value)
    body = [r.replace("llama-3.1-8b", "acme-9b") for r in _layer(lines, 2)]
    with pytest.raises(InputFileError) as e:
        read_kernels(_write(tmp_path, body))
    assert e.value.field == "model" and e.value.line == 2
