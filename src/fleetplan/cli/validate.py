"""`fleetplan validate`: predict measured serving points and report the error.

Reads rows in the calibration CSV format (aiconfigurator's silicon table), predicts each row's
mean TTFT and TPOT with the calibrated performance model, writes every row back with
`pred_ttft_ms`, `pred_tpot_ms`, `reason` (why a row is not supported; empty otherwise) and
`provenance` (the predictor, the efficiencies' own provenance: which calibration group or
composed levels or defaults, with the expected error, and the readings the row went through),
and
prints MAPE by (model, system, backend) (`--by` any of class, model, system, backend,
precision, mode) and overall, and what the file's repeated
configurations allow (`fleetplan.calibrate.repeats`: rows recorded alike but measured
differently, and the least MAPE any predictor of the recorded columns reaches on them).

`--predictor analytic` (default): the analytic closed-loop model the calibration fits (fast).
`--predictor sim`: each row's benchmark simulated by `fleetplan.sim`
(`fleetplan.calibrate.simpredict`; ~0.2 s per row on average, minutes for the bundled file);
rows the simulator cannot run get an empty prediction and a reason.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from fleetplan.calibrate import error_table, predict_stored, prepare, read_points
from fleetplan.calibrate.points import ServingPoint, bundled_points_path
from fleetplan.calibrate.repeats import repeatability, same_run_other_name
from fleetplan.calibrate.runner import point_readings, reading_notes, readings
from fleetplan.calibrate.simpredict import predict_points
from fleetplan.cli._app import app, check_writable, console, err_console, write_text
from fleetplan.errors import InputFileError, UsageError

__all__ = ["GROUP_KEYS", "OUTPUT_COLUMNS", "validate"]

#: Columns `--out` adds to every input row.
OUTPUT_COLUMNS = ("pred_ttft_ms", "pred_tpot_ms", "reason", "provenance")
#: Columns the error table can be grouped by (`--by`).
GROUP_KEYS = ("class", "model", "system", "backend", "precision", "mode")


@app.command()
def validate(
    points: Annotated[
        Path | None,
        typer.Option("--points", help="CSV of measured points (default: the bundled 3,366)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="write every row with its predictions here")
    ] = None,
    predictor: Annotated[
        str,
        typer.Option(
            "--predictor",
            help="analytic: the fitted closed-loop model (fast); sim: "
            "simulate each row's benchmark (minutes for the bundled points)",
        ),
    ] = "analytic",
    by: Annotated[
        str,
        typer.Option("--by", help="group the error table by these, comma-separated: "
                     f"{', '.join(GROUP_KEYS)}"),
    ] = "model,system,backend",
) -> None:
    """Predict measured points with the calibrated model; print MAPE by group and overall."""
    check_writable(out, "--out")
    if predictor not in ("analytic", "sim"):
        raise UsageError(f"must be 'analytic' or 'sim', got {predictor!r}", where="--predictor")
    keys = tuple(k.strip() for k in by.split(",") if k.strip())
    bad = [k for k in keys if k not in GROUP_KEYS]
    if not keys or bad:
        raise UsageError(f"unknown group key(s) {', '.join(bad) or '(none given)'}; choose from "
                         f"{', '.join(GROUP_KEYS)}", where="--by")
    path = points or bundled_points_path()
    header, raws, pts = read_points(path)
    clash = [c for c in OUTPUT_COLUMNS if c in header]
    if out is not None and clash:  # the input's values would be overwritten in --out
        raise InputFileError(
            f"column {clash[0]!r} is one that validate writes ({', '.join(OUTPUT_COLUMNS)}): "
            "--out would overwrite the input's values; rename or drop it (to validate an "
            "earlier --out file again, drop its prediction columns)", path=str(path), line=1,
            field=clash[0])
    prep = prepare(pts)
    ttft, tpot, prov = predict_stored(prep)
    reasons = list(prep.reasons)
    if predictor == "sim":
        with Progress(
            TextColumn("simulating measured points"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        ) as bar:
            task = bar.add_task("sim", total=len(prep.sup))
            preds = predict_points(
                prep.sup, progress=lambda i, _: bar.update(task, completed=i + 1)
            )
        ttft = np.array([np.nan if q.ttft_s is None else q.ttft_s for q in preds])
        tpot = np.array([np.nan if q.tpot_s is None else q.tpot_s for q in preds])
        for i, q in zip(prep.ok, preds, strict=True):
            if q.reason is not None:
                reasons[i] = f"simulator: {q.reason}"
    pred_t = [""] * len(pts)
    pred_o = [""] * len(pts)
    source = [""] * len(pts)
    how = ("simulator (fleetplan.sim through calibrate.simpredict)" if predictor == "sim"
           else "analytic closed-loop model (calibrate.closedloop)")
    per = point_readings(prep)
    sup = prep.sup  # a list built on each access
    for j, i in enumerate(prep.ok):
        if not (np.isfinite(ttft[j]) and np.isfinite(tpot[j])):
            continue
        pred_t[i] = f"{ttft[j] * 1e3:.4f}"
        pred_o[i] = f"{tpot[j] * 1e3:.4f}"
        notes = reading_notes(sup[j], per[j])
        source[i] = f"{how}; efficiency: {prov[j]}" + (f"; readings: {notes}" if notes else "")
    if out is not None:
        buf = io.StringIO()
        cols = [*header, *OUTPUT_COLUMNS]
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for i, raw in enumerate(raws):
            w.writerow(
                {
                    **raw,
                    "pred_ttft_ms": pred_t[i],
                    "pred_tpot_ms": pred_o[i],
                    "reason": reasons[i] or "",
                    "provenance": source[i],
                }
            )
        write_text(out, buf.getvalue(), "--out")
    table = Table(title=f"Prediction error on {path.name} ({predictor}, MAPE, %)")
    for col in (*keys, "rows", "TTFT", "TPOT"):
        table.add_column(col, justify="right" if col in ("rows", "TTFT", "TPOT") else "left")
    for r in error_table(prep, ttft, tpot, keys):
        table.add_row(*(escape(str(r[k])) for k in keys), str(r["rows"]), _pct(r["ttft_mape"]),
                      _pct(r["tpot_mape"]))
    console.print(table)
    if not any(q.ttft_s is not None and q.tpot_s is not None for q in pts):
        console.print("No row has both measurements (silicon_ttft_ms, silicon_tpot_ms): "
                      "predictions only, no error to report.")
    predicted = int((np.isfinite(ttft) & np.isfinite(tpot)).sum())
    unsupported = len(pts) - predicted
    defaults = sum(p.startswith("defaults") for p in prov)
    composed = sum("composed from" in p for p in prov)
    console.print(
        f"{predicted} of {len(pts)} rows predicted; {unsupported} not supported"
        + (" (the 'reason' column of --out says why, row by row)" if unsupported else "")
        + f"; {composed} predicted with efficiencies composed from the fitted GPU, "
        f"engine and precision levels (no fit for their group); {defaults} with default "
        "efficiencies (no calibration fit for their GPU/engine).",
        markup=False,
    )
    for text, n, line in _top_reasons(pts, reasons):
        console.print(f"  {n} row(s), first at line {line}: {text}", markup=False)
    counts = readings(prep)
    if any(counts.values()):
        console.print(
            f"Readings of layout fields (docs/FIDELITY.md): {counts['unrecorded_disagg_pools']} "
            "disaggregated rows without worker counts (prefill pool sized to its load, each "
            "decode worker at most the sequences its KV pools hold); "
            f"{counts['tp_read_as_attention_dp']} rows whose TP cannot split the attention heads "
            "(read as that many attention-DP ranks)."
        )
    if counts["recipe_settings"]:
        console.print(
            f"Settings from benchmark recipes (calibrate/data/recipes.yaml): "
            f"{counts['recipe_settings']} rows whose unrecorded engine or client settings (e.g. "
            "TensorRT-LLM batch waiting, SGLang's scheduler receive interval, the client's random "
            "range ratio) were taken from the public recipe that produced such runs."
        )
    if counts["random_lengths"]:
        console.print(
            f"Random request lengths: {counts['random_lengths']} rows whose benchmark drew each "
            "request's ISL and OSL from [int(r x L), L] (range ratio r) are predicted at the "
            "mean lengths.",
            markup=False,  # the brackets are text, not console markup
        )
    if counts["dp_product_layout"]:
        console.print(
            f"Suspect layouts: {counts['dp_product_layout']} aggregated rows record attention "
            "DP as moe_tp x moe_ep beyond one scale-up domain (e.g. 64 = 8 x 8 on an 8-GPU "
            "system), as one InferenceMAX export writes single-node DP 8 / EP 8 runs; they are "
            "predicted as recorded and their provenance says so (docs/FIDELITY.md)."
        )
    runs, rows, names = same_run_other_name(pts)
    if runs:
        console.print(
            f"Same run, other name: {runs} measured runs appear under more than one model name "
            f"({rows} rows; {'; '.join(' = '.join(n) for n in names[:3])}): one measurement "
            "each, so the calibration's cross-validation holds checkpoints of one network out "
            "together (docs/FIDELITY.md).",
            markup=False,
        )
    rep = repeatability(pts)
    if rep.sets:
        console.print(
            f"Repeats: {rep.sets} recorded configurations were measured more than once with "
            f"different results ({rep.rows} rows; each against its repeats' mean: TTFT "
            f"{rep.mean_of_others_ttft_pct:.1f}% / TPOT {rep.mean_of_others_tpot_pct:.1f}%); "
            f"no predictor of the recorded columns gets below TTFT "
            f"{rep.floor_ttft_in_sets_pct:.1f}% / TPOT {rep.floor_tpot_in_sets_pct:.1f}% MAPE on "
            f"them, which adds at least {rep.floor_ttft_pct:.2f} / {rep.floor_tpot_pct:.2f} "
            f"points to the MAPE over all {rep.points} measured rows."
        )
    if out is not None:
        console.print(f"wrote {out}")


def _top_reasons(pts: list[ServingPoint], reasons: list[str | None], k: int = 5
                 ) -> list[tuple[str, int, int]]:
    """The `k` most common reasons rows were not supported: (reason, rows, first row's line)."""
    seen: dict[str, list[int]] = {}
    for p, why in zip(pts, reasons, strict=True):
        if why:
            seen.setdefault(why, []).append(p.line)
    ranked = sorted(seen.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))
    return [(why, len(lines), lines[0]) for why, lines in ranked[:k]]


def _pct(v: object) -> str:
    """A MAPE cell: one decimal, or '-' where no row had both measurements."""
    x = float(v)  # type: ignore[arg-type]
    return f"{x:.1f}" if np.isfinite(x) else "-"
