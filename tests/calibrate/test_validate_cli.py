"""`fleetplan validate`: predictions written back, MAPE printed, bad input exits 2."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from fleetplan.calibrate import bundled_points_path
from fleetplan.cli import main


def _head(tmp_path: Path, n: int, edit: dict[str, str] | None = None,
          drop: str | None = None) -> Path:
    lines = bundled_points_path().read_text().splitlines()
    rows = list(csv.DictReader(lines[: n + 1]))
    cols = [c for c in rows[0] if c != drop]
    out = tmp_path / "points.csv"
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({**r, **(edit or {})} if i == n - 1 else r)
    return out


def _write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_validate_writes_predictions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _head(tmp_path, 20)
    out = tmp_path / "pred.csv"
    assert main(["validate", "--points", str(src), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 20
    assert {"pred_ttft_ms", "pred_tpot_ms", "reason", "provenance"} <= set(rows[0])
    for r in rows:
        assert (r["pred_ttft_ms"] != "") != (r["reason"] != "")
        assert (r["pred_ttft_ms"] != "") == (r["provenance"] != "")
        if r["pred_ttft_ms"]:
            assert float(r["pred_ttft_ms"]) > 0 and float(r["pred_tpot_ms"]) > 0
            # which model, which calibration, how well it is expected to hold
            assert r["provenance"].startswith("analytic closed-loop model")
            assert "efficiency:" in r["provenance"] and "expected error" in r["provenance"]
    assert "all" in capsys.readouterr().out


def test_unsupported_row_has_reason(tmp_path: Path) -> None:
    src = _head(tmp_path, 3, edit={"model_path": "acme/NoSuchModel-1B"})
    out = tmp_path / "pred.csv"
    assert main(["validate", "--points", str(src), "--out", str(out)]) == 0
    last = list(csv.DictReader(out.read_text().splitlines()))[-1]
    assert last["pred_ttft_ms"] == "" and "NoSuchModel" in last["reason"]


def test_summary_says_why_rows_were_not_supported_without_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --out the 'reason' column is nowhere to be seen: the summary lists the most
    common reasons with their row counts and first line."""
    src = _head(tmp_path, 3, edit={"model_path": "acme/NoSuchModel-1B"})
    assert main(["validate", "--points", str(src)]) == 0
    out = capsys.readouterr().out.replace("\n", " ")
    assert "2 of 3 rows predicted; 1 not supported" in out
    assert "1 row(s), first at line 4: " in out and "NoSuchModel" in out


@pytest.mark.parametrize(
    ("edit", "drop", "needle"),
    [
        ({"isl": "lots"}, None, "line 4, field 'isl'"),
        ({"silicon_ttft_ms": "fast"}, None, "field 'silicon_ttft_ms'"),
        (None, "osl", "missing column(s) osl"),
        ({"mode": "hybrid"}, None, "field 'mode'"),
        ({"mode": " "}, None, "line 4, field 'mode': must be 'agg' or 'disagg', got '' (empty)"),
    ],
)
def test_bad_input_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          edit: dict[str, str] | None, drop: str | None, needle: str) -> None:
    src = _head(tmp_path, 3, edit=edit, drop=drop)
    assert main(["validate", "--points", str(src)]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert needle in err and "points.csv" in err


def test_group_without_fit_is_predicted_from_composed_levels(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # MiniMax-M2.5 in BF16 on B300 with vLLM: no fitted group (the data has FP8/FP4), but B300
    # and vLLM were both fitted for MoE models.
    src = _head(tmp_path, 3, edit={"precision": "bf16", "gemm_quant_mode": "",
                                   "moe_quant_mode": ""})
    out = tmp_path / "pred.csv"
    assert main(["validate", "--points", str(src), "--out", str(out)]) == 0
    last = list(csv.DictReader(out.read_text().splitlines()))[-1]
    assert float(last["pred_tpot_ms"]) > 0
    text = " ".join(capsys.readouterr().out.split())
    assert ("1 predicted with efficiencies composed from the fitted GPU, engine and "
            "precision") in text
    assert "0 with default efficiencies" in text


def test_repeated_configuration_reports_its_floor(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = bundled_points_path().read_text().splitlines()
    first = next(csv.DictReader(lines[:2]))
    again = {**first, "id": first["id"] + "_rerun",
             "silicon_ttft_ms": str(2 * float(first["silicon_ttft_ms"]))}
    src = tmp_path / "points.csv"
    with src.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(first))
        w.writeheader()
        w.writerows([first, again])
    assert main(["validate", "--points", str(src)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    # t and 2t: the best single prediction is t, |t/2t - 1| = 0.5 over 2 rows -> 25%
    assert "1 recorded configurations were measured more than once" in out
    assert "gets below TTFT 25.0% / TPOT 0.0% MAPE" in out


def _last_prediction(tmp_path: Path, model_path: str | None) -> dict[str, str]:
    src = _head(tmp_path, 3, edit=None if model_path is None else {"model_path": model_path})
    out = tmp_path / "pred.csv"
    assert main(["validate", "--points", str(src), "--out", str(out)]) == 0
    return list(csv.DictReader(out.read_text().splitlines()))[-1]


def test_checkpoint_of_a_fitted_architecture_is_predicted_like_it(tmp_path: Path) -> None:
    """The first rows are MiniMax-M2.5 (fitted). Named as a later release of the same network
    (MiniMax-M2.7, NVIDIA's checkpoint name) the row resolves through the suffix-stripping
    lookup, takes M2.5's model factor and gets the same prediction; a model of another
    architecture (Qwen3-30B-A3B, never measured) is predicted too, differently."""
    base = _last_prediction(tmp_path, None)
    twin = _last_prediction(tmp_path, "nvidia/MiniMax-M2.7-NVFP4")
    other = _last_prediction(tmp_path, "Qwen/Qwen3-30B-A3B-Instruct-2507")
    assert twin["reason"] == "" and other["reason"] == ""
    assert twin["pred_ttft_ms"] == base["pred_ttft_ms"]
    assert twin["pred_tpot_ms"] == base["pred_tpot_ms"]
    assert float(other["pred_tpot_ms"]) > 0
    assert other["pred_tpot_ms"] != base["pred_tpot_ms"]


def read_points_conc(row: dict[str, str]) -> int:
    import re

    m = re.search(r"silicon_concurrency=(\d+)", row["silicon_data_source"])
    assert m is not None
    return int(m.group(1))


def test_points_file_with_bom_crlf_and_quoted_newline(tmp_path: Path) -> None:
    """A spreadsheet export: UTF-8 byte-order mark, CRLF line ends, a quoted field spanning two
    lines. Read as data; an error on the row after it names that row's physical line."""
    from fleetplan.calibrate import read_points
    from fleetplan.errors import InputFileError

    lines = bundled_points_path().read_text().splitlines()
    rows = list(csv.DictReader(lines[:3]))
    want = [read_points_conc(r) for r in rows]
    rows[0]["silicon_data_source"] = "first line\nsecond line; " + rows[0]["silicon_data_source"]
    src = tmp_path / "points.csv"
    with src.open("w", newline="", encoding="utf-8-sig") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\r\n")
        w.writeheader()
        w.writerows(rows)
    header, _, points = read_points(src)
    assert header[0] == "id" and len(points) == 2
    assert points[0].id == rows[0]["id"]
    assert [p.concurrency for p in points] == want
    rows[1]["isl"] = "lots"
    with src.open("w", newline="", encoding="utf-8-sig") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\r\n")
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(InputFileError, match="line 4, field 'isl'"):
        read_points(src)


@pytest.mark.parametrize(
    ("precision", "gemm", "want"),
    [("fp8_block", "", "fp8"), ("", "fp8_block", "fp8"), ("NVFP4", "", "fp4"),
     ("", "w4a16_mxfp4", "fp4"), ("", "sq", "int8"), ("", "", "bf16"), ("", "bfloat16", "bf16"),
     ("int8_wo", "", "int8_wo")],
)
def test_quant_mode_names_map_to_precisions(precision: str, gemm: str, want: str) -> None:
    """aiconfigurator's quantization-mode names in `precision` or `gemm_quant_mode` read as
    the file's precision names; a mode without a catalog format stays as written."""
    from fleetplan.calibrate.points import _precision

    assert _precision({"precision": precision, "gemm_quant_mode": gemm}) == want


def test_unknown_system_is_a_reason_not_a_lookalike(tmp_path: Path) -> None:
    """A system the catalog does not list (an A100 PCIe card) is not read as the SXM part its
    name starts like: the row gets a reason naming it."""
    src = _head(tmp_path, 3, edit={"system": "a100_pcie"})
    out = tmp_path / "pred.csv"
    assert main(["validate", "--points", str(src), "--out", str(out)]) == 0
    last = list(csv.DictReader(out.read_text().splitlines()))[-1]
    assert last["pred_ttft_ms"] == "" and "unknown gpu 'a100_pcie'" in last["reason"]


@pytest.mark.parametrize("given", ["-4", "0", "x7", ""])
def test_bad_concurrency_is_an_error_not_the_batch_size(
        tmp_path: Path, given: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`silicon_concurrency=` that is not a whole number >= 1 names the line and field; it
    is not silently replaced by `batch_size` (the regex used to skip '-4' and read 128)."""
    src = _head(tmp_path, 3)
    rows = list(csv.DictReader(src.read_text().splitlines()))
    rows[1]["silicon_data_source"] = f"my-run; silicon_concurrency={given}; x=1"
    _write_rows(src, rows)
    assert main(["validate", "--points", str(src)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "line 3, field 'silicon_data_source'" in err
    assert f"got {given!r}" in err


def test_points_without_measurements_are_predicted_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rows to be predicted (no measurement columns): every row gets its predictions, and the
    error table says there is nothing to compare instead of printing nan."""
    src = _head(tmp_path, 3, drop="silicon_ttft_ms")
    out = tmp_path / "pred.csv"
    assert main(["validate", "--points", str(src), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert all(float(r["pred_ttft_ms"]) > 0 and float(r["pred_tpot_ms"]) > 0 for r in rows)
    text = " ".join(capsys.readouterr().out.split())
    assert "nan" not in text and "predictions only, no error to report" in text


def test_error_table_grouped_by_chosen_columns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _head(tmp_path, 5)
    assert main(["validate", "--points", str(src), "--by", "class,precision"]) == 0
    text = capsys.readouterr().out
    assert "class" in text and "precision" in text and "moe" in text and "fp8" in text
    assert "backend" not in text.split("rows")[0]  # the default grouping is replaced
    assert main(["validate", "--points", str(src), "--by", "model,colour"]) == 2
    assert "unknown group key(s) colour" in " ".join(capsys.readouterr().err.split())


def test_validate_says_which_rows_it_read_through_unrecorded_fields(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two DeepSeek-R1 GB200 rows: a disaggregated one without worker counts and an aggregated
    one recorded as TP 36 (128 heads cannot split 36 ways), plus a Llama-3.1-70B row (the first
    is a TensorRT-LLM 1k/1k TP < 8 one: batch waiting from the InferenceMAX recipe)."""
    lines = bundled_points_path().read_text().splitlines()
    rows = list(csv.DictReader(lines))
    dis = next(r for r in rows if "DeepSeek-R1" in r["model_path"] and r["mode"] == "disagg"
               and not r["prefill_num_workers"].strip())
    tp36 = next(r for r in rows if "DeepSeek-R1" in r["model_path"] and r["mode"] == "agg"
                and r["system"] == "gb200" and r["tp_size"] == "36")
    llama = next(r for r in rows if r["model_path"] == "meta-llama/Llama-3.1-70B")
    assert llama["backend"] == "trtllm" and llama["isl"] == llama["osl"] == "1024"
    assert int(llama["tp_size"]) < 8
    src = tmp_path / "points.csv"
    with src.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([dis, tp36, llama])
    pred = tmp_path / "pred.csv"
    assert main(["validate", "--points", str(src), "--out", str(pred)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "1 disaggregated rows without worker counts" in out
    prov = [r["provenance"] for r in csv.DictReader(pred.read_text().splitlines())]
    assert "prefill pool sized to its load" in prov[0]
    assert "attention-DP ranks" in prov[1] and "prefill pool" not in prov[1]
    assert "recipe inferencemax-llama70b-trtllm-1k1k" in prov[2]
    assert "1 rows whose TP cannot split the attention heads" in out
    # all three are InferenceMAX runs: the client's range ratio from the recipe, every row
    assert "Settings from benchmark recipes" in out and "3 rows whose unrecorded" in out
    assert "Random request lengths: 3 rows" in out
    assert "ISL and OSL from [int(r x L), L] (range ratio r)" in " ".join(out.split())
    assert "lengths drawn uniformly from [819, 1024] / [819, 1024] (range ratio 0.8): " \
        "predicted at the mean ISL / OSL 922 / 922" in prov[2]


def test_validate_flags_attention_dp_layouts_written_as_a_product(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A DeepSeek-R1 B200 row recorded as attention DP 64 with moe_tp = moe_ep = 8 (more GPUs
    than one 8-GPU system; the earlier export of the same run says DP 8, EP 8) is predicted as
    recorded, and validate says so in its provenance and summary; the same row at DP 8, EP 8
    (moe_tp 1) is not flagged."""
    rows = list(csv.DictReader(bundled_points_path().read_text().splitlines()))
    dp64 = next(r for r in rows if "DeepSeek-R1" in r["model_path"] and r["mode"] == "agg"
                and r["system"] == "b200_sxm" and r["attention_dp_size"] == "64"
                and r["moe_tp_size"] == r["moe_ep_size"] == "8")
    dp8 = {**dp64, "attention_dp_size": "8", "moe_tp_size": "1", "id": dp64["id"] + "_dp8",
           "batch_size": str(int(float(dp64["batch_size"])) * 8)}
    src = _write_rows(tmp_path / "points.csv", [dp64, dp8])
    pred = tmp_path / "pred.csv"
    assert main(["validate", "--points", str(src), "--out", str(pred)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Suspect layouts: 1 aggregated rows record attention DP as moe_tp x moe_ep" in out
    prov = [r["provenance"] for r in csv.DictReader(pred.read_text().splitlines())]
    assert "recorded attention DP 64 = moe_tp x moe_ep (8 x 8)" in prov[0]
    assert "may be for the wrong layout" in prov[0]
    assert "moe_tp x moe_ep" not in prov[1]


def test_validate_names_a_run_recorded_under_two_model_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The bundled file exports some DeepSeek-R1 runs a second time as DeepSeek-V3 (same
    lengths, concurrency and measurements): validate says so for any points file."""
    rows = list(csv.DictReader(bundled_points_path().read_text().splitlines()))
    seen: dict[tuple[str, ...], dict[str, str]] = {}
    pair = None
    for r in rows:
        key = (r["system"], r["backend"], r["isl"], r["osl"], r["batch_size"],
               r["silicon_ttft_ms"], r["silicon_tpot_ms"])
        if key in seen and seen[key]["model_path"] != r["model_path"]:
            pair = [seen[key], r]
            break
        seen.setdefault(key, r)
    assert pair is not None
    src = _write_rows(tmp_path / "twins.csv", pair)
    assert main(["validate", "--points", str(src)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Same run, other name: 1 measured runs appear under more than one model name (2 rows;" \
        in out
    assert " = ".join(sorted(r["model_path"] for r in pair)) in out


@pytest.mark.parametrize(
    ("edit", "field"),
    [({"tp_size": "-4"}, "tp_size"), ({"tp_size": "0"}, "tp_size"), ({"pp_size": "-2"}, "pp_size"),
     ({"attention_dp_size": "-3"}, "attention_dp_size"), ({"moe_ep_size": "-8"}, "moe_ep_size"),
     ({"batch_size": "-4"}, "batch_size")],
)
def test_negative_layout_fields_are_errors(tmp_path: Path, edit: dict[str, str], field: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Negative layout values (and a zero TP) were read as 1 and predicted without a word; 0 in
    attention DP, MoE TP and EP stays the source's "not used" (the bundled file writes it)."""
    assert main(["validate", "--points", str(_head(tmp_path, 3, edit=edit))]) == 2
    assert f"line 4, field '{field}'" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize(
    ("edit", "words"),
    [({"isl": "200000", "osl": "200000"}, "ISL + OSL = 400,000 tokens, beyond"),
     ({"osl": "1"}, "OSL 1: the benchmark's TPOT"),
     ({"tp_size": "1", "pp_size": "100"}, "pp_size 100 exceeds")],
)
def test_rows_that_cannot_run_get_a_reason(tmp_path: Path, edit: dict[str, str],
                                           words: str) -> None:
    """A request beyond the model's context was predicted at 24,000 s, one output token at a
    400 ms TPOT; reasons name the file's fields, not the planner's flags."""
    out = tmp_path / "pred.csv"
    assert main(["validate", "--points", str(_head(tmp_path, 3, edit=edit)), "--out",
                 str(out)]) == 0
    last = list(csv.DictReader(out.read_text().splitlines()))[-1]
    assert last["pred_ttft_ms"] == "" and words in last["reason"]


def test_simulator_refuses_rows_beyond_its_client_cap() -> None:
    """1e9 clients made the simulator predictor grow past 24 GB; now a reason."""
    from dataclasses import replace

    from fleetplan.calibrate import read_points
    from fleetplan.calibrate.simpredict import MAX_SIM_CLIENTS, predict_point

    p = read_points(bundled_points_path())[2][0]
    pred = predict_point(replace(p, concurrency=MAX_SIM_CLIENTS + 1))
    assert pred.ttft_s is None and "at most 100,000" in (pred.reason or "")
