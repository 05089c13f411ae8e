"""Measured step times: reading, the step-time fit and its error, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fleetplan.calibrate.steps import (
    STEP_FIELDS,
    bundled_steps_path,
    bundled_steps_paths,
    fit_steps,
    held_out,
    held_out_gpu,
    predict_steps,
    read_steps,
    step_error_table,
    with_layers,
)
from fleetplan.catalog import get_gpu, get_model
from fleetplan.errors import InputFileError, UsageError
from fleetplan.perf.calibration import efficiency_for
from fleetplan.perf.efficiency import DEFAULT_EFFICIENCY
from fleetplan.perf.params import param_count
from tests.conftest import check_golden

GOLDEN = Path(__file__).parents[1] / "cli" / "golden"
GROUP = ("h100-sxm", "transformers", "bf16")
H200 = ("h200-sxm", "transformers", "bf16")


@pytest.fixture(scope="module")
def points() -> list[Any]:
    return [p for path in bundled_steps_paths() for p in read_steps(path)]


@pytest.fixture(scope="module")
def fits(points: list[Any]) -> dict[Any, Any]:
    return fit_steps(points)


def test_bundled_steps_read(points: list[Any]) -> None:
    assert len(points) == 136 + 166
    assert {p.group for p in points} == {GROUP, H200}
    assert {(p.model, p.num_layers) for p in points} == {
        ("llama-3.1-8b", 32), ("llama-3.1-70b", 12), ("llama-3.1-405b", 4)}
    p = next(p for p in points if p.phase == "decode" and p.batch_size == 32)
    assert p.batch.decode_ctx_tokens == 32 * p.context_tokens and p.batch.prefill_tokens == 0


def test_fit_error_within_stated_tolerance(points: list[Any], fits: dict[Any, Any]) -> None:
    """The fits to 136 H100 and 166 H200 steps (two H200 runs, 2026-11-27 and 2026-11-29):
    in-sample MAPE <= 8% each, each model predicted by a fit to the other two <= 12% overall
    (docs/FIDELITY.md: 5.4% and 9.0%), the defaults >= 40%."""
    for g in (GROUP, H200):
        assert fits[g].mape_pct <= 8.0
        assert fits[g].default_mape_pct >= 40.0
    mape_pct, big_err = _held_errors(held_out(points), points)
    assert mape_pct <= 12.0
    # GPU-bound prefill steps (>= 100 ms) of a held-out model within 20% each (largest miss
    # 15.7%: Llama-3.1-8B at 16k tokens, whose unfused elementwise share the other two models,
    # twice and four times as wide, pin down less well)
    assert np.all(big_err <= 0.20)


def _held_errors(held: np.ndarray, points: list[Any]) -> tuple[float, np.ndarray]:
    """(MAPE % over all steps, relative errors of the GPU-bound prefill steps >= 100 ms) of
    held-out predictions, which must all exist."""
    meas = np.array([p.step_s for p in points])
    assert np.isfinite(held).all()
    big = np.array([p.phase == "prefill" and p.step_s >= 0.1 for p in points])
    return float(np.mean(np.abs(held / meas - 1.0))) * 100, np.abs(held[big] / meas[big] - 1.0)


def test_fit_transfers_across_gpus(points: list[Any]) -> None:
    """Each GPU predicted by the other GPU's fit with its own datasheet peaks: MAPE <= 16%
    overall (FIDELITY: 14.0%; small decode steps are bound by each machine's host), GPU-bound
    prefill steps (>= 100 ms) within 12% each (largest miss 9.3%)."""
    mape_pct, big_err = _held_errors(held_out_gpu(points), points)
    assert mape_pct <= 16.0
    assert np.all(big_err <= 0.12)


def test_stored_calibration_is_this_fit(fits: dict[Any, Any]) -> None:
    """perf/calibration/gpu_steps.yaml holds the fit of the bundled steps (rerun
    `fleetplan calibrate-steps --yaml ...` after changing either), and the performance model
    loads it for the group, without the serving fit's model factors."""
    stored = efficiency_for(*GROUP, "dense", "llama-3.1-8b")
    assert "gpu_steps.yaml" in stored.provenance and "factor of model" not in stored.provenance
    for g in (GROUP, H200):
        stored = efficiency_for(*g, "dense", "llama-3.1-8b")
        for k in (*STEP_FIELDS, "gqa_expansion", "activation_passes", "overhead_overlap"):
            assert getattr(stored, k) == pytest.approx(getattr(fits[g].efficiency, k), rel=1e-4)


def test_fitted_structure_is_physical(fits: dict[Any, Any]) -> None:
    """Eager transformers: the host's fixed costs are mostly hidden behind GPU work, decode
    attention moves several times the KV bytes (repeat_kv), per-layer costs dominate."""
    for g in (GROUP, H200):
        e = fits[g].efficiency
        assert 0.5 <= e.overhead_overlap <= 1.0
        assert (1 + e.gqa_expansion * 4) / e.kv_read > 4  # 8B: 32 query heads over 8 KV heads
        assert e.layer_overhead_s * 32 > e.step_overhead_s
        assert 0.4 <= e.compute_max <= 0.9


def test_with_layers_cuts_the_model() -> None:
    m = get_model("llama-3.1-70b")
    cut = with_layers(m, 10)
    per_layer = (param_count(m) - param_count(cut)) / 70
    assert param_count(with_layers(m, 20)) - param_count(cut) == pytest.approx(10 * per_layer)
    assert with_layers(m, 80) is m
    with pytest.raises(UsageError, match="full-attention"):
        with_layers(get_model("deepseek-v3"), 4)


def test_error_table_overall_row(points: list[Any]) -> None:
    pred = predict_steps(points, DEFAULT_EFFICIENCY)
    rows = step_error_table(points, {"d": pred}, by=("phase",))
    assert [r["phase"] for r in rows] == ["decode", "prefill", "all"]
    assert sum(r["rows"] for r in rows[:-1]) == rows[-1]["rows"] == len(points)


def _write(tmp_path: Path, edit: Any) -> Path:
    lines = bundled_steps_path().read_text().splitlines()[:4]
    lines = edit(lines)
    p = tmp_path / "steps.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.parametrize(
    ("edit", "line", "field"),
    [
        (lambda ls: [ls[0].replace("step_ms,", "time,"), *ls[1:]], 1, None),
        (lambda ls: [ls[0], ls[1], ls[2].replace(",transformers,llama-3.1-8b,32,",
                                                 ",transformers,llama-3.1-8b,33,")], 3,
         "num_layers"),
        (lambda ls: [ls[0], ls[1].replace("llama-3.1-8b", "llama-9")], 2, "model"),
        (lambda ls: [ls[0], ls[1].replace("h100-sxm", "h999", 1)], 2, "gpu"),
        (lambda ls: [ls[0], ls[1], ls[2], _set(ls[0], ls[3], "step_ms", "fast")], 4, "step_ms"),
        (lambda ls: [ls[0], _set(ls[0], _set(ls[0], ls[1], "prefill_tokens", "0"),
                                 "decode_seqs", "0")], 2, "prefill_tokens"),
        (lambda ls: [ls[0], _set(ls[0], ls[1], "batch_size", "1.5")], 2, "batch_size"),
        (lambda ls: [ls[0], ls[1].replace(",bf16,", ",fp4,")], 2, "precision"),
        # after two blank lines the bad row is on file line 5, not the third record's 4
        (lambda ls: [ls[0], ls[1], "", "", _set(ls[0], ls[2], "step_ms", "abc")], 5, "step_ms"),
        (lambda ls: [ls[0], _set(ls[0], ls[1], "num_layers", "1e400")], 2, "num_layers"),
        (lambda ls: [ls[0], _set(ls[0], ls[1], "num_layers", "inf")], 2, "num_layers"),
        (lambda ls: [ls[0], _set(ls[0], ls[1], "phase", "mixed")], 2, "phase"),
        (lambda ls: [ls[0], _set(ls[0], ls[1], "phase", "")], 2, "phase"),
        (lambda ls: [ls[0], _set(ls[0], ls[1], "prefill_seqs", "0")], 2, "prefill_seqs"),
        (lambda ls: [ls[0], _set(ls[0], ls[1], "prefill_attn_pairs", "1e300")], 2,
         "prefill_attn_pairs"),
        (lambda ls: [ls[0], ls[1] + ",EXTRA"], 2, None),
    ],
)
def test_bad_rows_name_file_line_field(tmp_path: Path, edit: Any, line: int,
                                       field: str | None) -> None:
    p = _write(tmp_path, edit)
    with pytest.raises(InputFileError) as ei:
        read_steps(p)
    assert ei.value.path == str(p) and ei.value.line == line and ei.value.field == field


def test_quoted_header_and_blank_lines_read(tmp_path: Path) -> None:
    """A header whose names are quoted is CSV like any other; blank lines hold no rows."""
    p = _write(tmp_path, lambda ls: [",".join(f'"{c}"' for c in ls[0].split(",")), "", *ls[1:],
                                     ""])
    assert len(read_steps(p)) == 3


def _set(header: str, row: str, col: str, value: str) -> str:
    cols, vals = header.split(","), row.split(",")
    vals[cols.index(col)] = value
    return ",".join(vals)


def test_cli_calibrate_steps_golden(cli: Any, tmp_path: Path) -> None:
    yaml_out, pred = tmp_path / "fit.yaml", tmp_path / "pred.csv"
    r = cli("calibrate-steps", "--yaml", str(yaml_out), "--out", str(pred))
    assert r.code == 0, r.err
    check_golden(GOLDEN / "calibrate_steps_h100.txt",
                 r.out.replace(str(yaml_out), "FIT.yaml").replace(str(pred), "PRED.csv"))
    rows = pred.read_text().splitlines()
    assert rows[0].endswith(",pred_step_ms") and len(rows) == 1 + 136 + 166
    assert "transformers" in yaml_out.read_text()


def test_cli_calibrate_steps_bad_file(cli: Any, tmp_path: Path) -> None:
    r = cli("calibrate-steps", str(tmp_path / "none.csv"))
    assert r.code == 2 and "none.csv" in r.err and "Traceback" not in r.err


def test_gpu_measure_writes_the_columns_the_reader_needs() -> None:
    """bench/gpu_measure.py (run on GPU machines only) and read_steps agree on the format."""
    import importlib.util

    from fleetplan.calibrate.steps import REQUIRED_COLUMNS

    path = Path(__file__).parents[2] / "bench" / "gpu_measure.py"
    spec = importlib.util.spec_from_file_location("gpu_measure", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # torch and transformers are imported only when measuring
    assert set(REQUIRED_COLUMNS) <= set(mod.FIELDS)
    header = bundled_steps_path().read_text().splitlines()[0].split(",")
    assert header == mod.FIELDS
    # every catalog name the script records resolves
    for name in mod.MODEL_CONFIGS:
        assert get_model(name).name == name
    for _, cat in mod.GPU_NAMES:
        assert get_gpu(cat).name == cat


def test_cli_warns_when_a_phase_is_barely_measured(cli: Any, tmp_path: Path) -> None:
    lines = bundled_steps_path().read_text().splitlines()
    f = tmp_path / "few.csv"
    f.write_text("\n".join(lines[:4]) + "\n")  # three prefill steps, no decode step
    r = cli("calibrate-steps", str(f))
    assert r.code == 0, r.err
    assert "warning:" in r.out and "3 prefill and 0 decode" in r.out
    r = cli("calibrate-steps")
    assert "warning:" not in r.out
