"""`fleetplan calibrate-steps`: fit the step-time model to measured step times.

Reads step-time CSVs (the format `bench/gpu_measure.py` writes; default: the bundled H100 and
H200 measurements), fits the efficiency parameters of each (GPU, engine, precision) in it
(`fleetplan.calibrate.steps`), and prints the error of the documented defaults, of the fit, of a
fit with each model's rows held out, and of a fit to the other GPUs' rows (each GPU held out,
with its own datasheet peaks), by (GPU, model, layers, phase). `--yaml` writes the fits as a
calibration file that the performance model loads when it is placed in
`fleetplan/perf/calibration/`; `--out` writes every row back with `pred_step_ms`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from fleetplan.calibrate.points import csv_records
from fleetplan.calibrate.steps import (
    bundled_steps_paths,
    fit_steps,
    held_out,
    held_out_gpu,
    predict_steps,
    read_steps,
    step_error_table,
    write_step_calibration,
)
from fleetplan.cli._app import app, check_writable, console, write_text, writing
from fleetplan.errors import InputFileError
from fleetplan.perf.efficiency import DEFAULT_EFFICIENCY

__all__ = ["calibrate_steps"]

#: fewer steps of one phase than this and the fit cannot separate compute, bandwidth and overhead
MIN_PHASE_ROWS = 8
#: the fitted fields shown, with their units
_SHOWN = (("compute_max", ""), ("compute_half_tokens", " tokens"), ("bandwidth", ""),
          ("attention", ""), ("kv_read", ""), ("gqa_expansion", ""), ("activation_passes", ""),
          ("step_overhead_s", " s"), ("layer_overhead_s", " s"), ("seq_overhead_s", " s"),
          ("overhead_overlap", ""))


@app.command("calibrate-steps")
def calibrate_steps(
    steps: Annotated[
        list[Path] | None,
        typer.Argument(help="step-time CSVs (bench/gpu_measure.py; default: the bundled H100 "
                       "and H200 measurements)"),
    ] = None,
    yaml_out: Annotated[
        Path | None, typer.Option("--yaml", help="write the fits as a calibration YAML here")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="write every row with pred_step_ms here")
    ] = None,
) -> None:
    """Fit step-time efficiencies to measured steps; print the error before and after."""
    check_writable(yaml_out, "--yaml", (".yaml", ".yml"))
    check_writable(out, "--out")
    paths = steps or bundled_steps_paths()
    points = [p for path in paths for p in read_steps(path)]
    raws = [(path, [row for _, row in csv_records(path, ())]) for path in paths
            ] if out is not None else []  # every row as read_steps read it, for --out
    for path, rows in raws:
        if "pred_step_ms" in rows[0]:  # --out would overwrite the input's values
            raise InputFileError(
                "column 'pred_step_ms' is the one --out writes: it would overwrite the "
                "input's values; rename or drop it", path=str(path), line=1,
                field="pred_step_ms")
    names = ", ".join(p.name for p in paths)
    fits = fit_steps(points)
    fitted = predict_steps(points, {g: f.efficiency for g, f in fits.items()})
    held = held_out(points)
    held_gpu = held_out_gpu(points)
    defaults = predict_steps(points, DEFAULT_EFFICIENCY)
    table = Table(title=f"Step-time error on {names} (MAPE, %)")
    for col in ("gpu", "model", "layers", "phase", "rows", "defaults", "fitted",
                "model held out", "GPU held out"):
        table.add_column(col, justify="left" if col in ("gpu", "model", "phase") else "right")
    for r in step_error_table(points, {"d": defaults, "f": fitted, "h": held, "g": held_gpu},
                              by=("gpu", "model", "num_layers", "phase")):
        table.add_row(escape(str(r["gpu"])), escape(str(r["model"])), str(r["num_layers"]),
                      str(r["phase"]),
                      str(r["rows"]), *(f"{r[k]:.1f}" for k in "dfhg"))
    console.print(table)
    for (gpu, engine, precision), f in fits.items():
        params = ", ".join(f"{k} {getattr(f.efficiency, k):.4g}{unit}" for k, unit in _SHOWN)
        console.print(escape(f"{gpu}/{engine}/{precision} ({f.rows} rows): {params}"))
        grp = [p for p in points if p.group == (gpu, engine, precision)]
        n_pre = sum(1 for p in grp if p.batch.prefill_tokens > 0)
        n_dec = len(grp) - n_pre
        if n_pre < MIN_PHASE_ROWS or n_dec < MIN_PHASE_ROWS:
            console.print(
                f"[yellow]warning:[/] the {escape(f'{gpu}/{engine}/{precision}')} fit rests on "
                f"{n_pre} "
                f"prefill and {n_dec} decode steps (fewer than {MIN_PHASE_ROWS} of one phase): "
                "fields those steps cannot tell apart trade off against each other; measure "
                "both phases over batch sizes and contexts (bench/gpu_measure.py's grid)",
                highlight=False)
    if yaml_out is not None:
        writing(yaml_out, "--yaml", lambda: write_step_calibration(
            yaml_out, points, fits, source=f"{names} (measured step times, bench/gpu_measure.py)",
            held=held))
        console.print(f"wrote {yaml_out}")
    if out is not None:
        rows = [r for _, file_rows in raws for r in file_rows]
        buf = io.StringIO()
        cols = [*dict.fromkeys(k for r in rows for k in r), "pred_step_ms"]
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for raw, pred in zip(rows, fitted, strict=True):
            w.writerow({**raw, "pred_step_ms": f"{pred * 1e3:.4f}" if np.isfinite(pred) else ""})
        write_text(out, buf.getvalue(), "--out")
        console.print(f"wrote {out}")

