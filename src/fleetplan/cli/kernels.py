"""`fleetplan calibrate-kernels`: the roofline's linear-layer terms against measured GEMMs.

Reads kernel-time CSVs (the format `bench/gpu_kernels.py` writes; default: the bundled H200
measurement), sums each layer's four GEMMs, fits the GEMM efficiency curve, the weight-streaming
bandwidth and the fixed time of a layer per (GPU, precision) (`fleetplan.calibrate.kernels`), and
prints the error of the documented defaults, of the fit and of a fit with each model held out,
by (GPU, precision, model, TP); then the HBM streaming rates, and what the serving-point
calibration's dense efficiencies of each serving engine make of the same layers. `--out` writes
every layer with its measured and fitted time.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from fleetplan.calibrate.fit import mape
from fleetplan.calibrate.kernels import (
    ATTN_PHASES,
    KernelRow,
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
from fleetplan.cli._app import app, check_writable, console, write_text
from fleetplan.errors import InputFileError
from fleetplan.perf.calibration import efficiency_for
from fleetplan.perf.efficiency import DEFAULT_EFFICIENCY

__all__ = ["calibrate_kernels"]

#: serving engines whose calibrated efficiencies are set beside the kernel fit
SERVING_ENGINES = ("vllm", "sglang", "trtllm")


@app.command("calibrate-kernels")
def calibrate_kernels(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="kernel-time CSVs (bench/gpu_kernels.py; default: the bundled "
                       "H200 measurement)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="write every layer with its measured and "
                                  "fitted time here")
    ] = None,
) -> None:
    """Fit the roofline's GEMM terms to measured GEMMs; set them beside the serving fit."""
    check_writable(out, "--out")
    paths = files or [bundled_kernels_path()]
    rows = [r for p in paths for r in read_kernels(p)]
    layers = layer_times(rows)
    if not layers:
        raise InputFileError("no gemm rows: nothing to fit (the file holds no GEMM times)",
                             path=str(paths[0]), line=1, field="kind")
    fits = fit_kernels(layers)
    meas = np.array([x.time_s for x in layers])
    fitted = np.array([predict_layers([x], fits[(x.gpu, x.precision)].efficiency)[0]
                       for x in layers])
    defaults = predict_layers(layers, DEFAULT_EFFICIENCY)
    held = held_out_model(layers)
    names = ", ".join(p.name for p in paths)
    table = Table(title=f"Linear-layer time (4 GEMMs) error on {names} (MAPE, %)")
    for col in ("gpu", "precision", "model", "TP", "layers", "defaults", "fitted",
                "model held out"):
        table.add_column(col, justify="left" if col in ("gpu", "precision", "model") else "right")
    keys = [(x.gpu, x.precision, x.model, x.tp) for x in layers]
    for k in [*sorted(set(keys)), None]:
        sel = np.array([k is None or kk == k for kk in keys])
        ok = sel & np.isfinite(held)
        cells = [str(v) for v in k] if k else ["all", "", "", ""]
        table.add_row(*map(escape, cells), str(int(sel.sum())),
                      f"{mape(defaults[sel], meas[sel]):.1f}",
                      f"{mape(fitted[sel], meas[sel]):.1f}",
                      f"{mape(held[ok], meas[ok]):.1f}" if ok.any() else "-")
    console.print(table)
    for (gpu, prec), f in fits.items():
        e = f.efficiency
        console.print(escape(
            f"{gpu}/{prec} ({f.layers} layers): compute_max {e.compute_max:.3f}, "
            f"compute_half_tokens {e.compute_half_tokens:.1f} tokens, bandwidth "
            f"{e.bandwidth:.3f}, layer_overhead_s {e.layer_overhead_s * 1e6:.1f} us; "
            f"MAPE {f.mape_pct:.1f}% (defaults {f.default_mape_pct:.1f}%)"), highlight=False)
    for gpu, what, rate, frac in hbm_fractions(rows):
        console.print(f"{escape(gpu)} HBM {what}: {rate / 1e12:.2f} TB/s, {frac:.3f} of the "
                      "datasheet peak", highlight=False)
    serving = Table(title="The serving-point calibration's dense efficiencies on the same layers")
    for col in ("gpu", "precision", "engine", "compute_max", "half tokens", "bandwidth",
                "layer us", "MAPE %", "GEMM terms MAPE %", "from"):
        serving.add_column(col, justify="left" if col in ("gpu", "precision", "engine", "from")
                           else "right")
    for gpu, prec in fits:
        grp = [x for x in layers if (x.gpu, x.precision) == (gpu, prec)]
        m = np.array([x.time_s for x in grp])
        for engine in SERVING_ENGINES:
            e = efficiency_for(gpu, engine, prec, "dense")
            # its compute curve and bandwidth with the GEMMs' own fixed time per layer
            gemm_terms = replace(e, layer_overhead_s=fits[(gpu, prec)].efficiency.layer_overhead_s)
            src = ("defaults" if e.provenance.startswith("defaults") else
                   "composed" if "no fit for" in e.provenance else "fitted")
            serving.add_row(escape(gpu), escape(prec), engine, f"{e.compute_max:.3f}",
                            f"{e.compute_half_tokens:.1f}", f"{e.bandwidth:.3f}",
                            f"{e.layer_overhead_s * 1e6:.1f}",
                            f"{mape(predict_layers(grp, e), m):.1f}",
                            f"{mape(predict_layers(grp, gemm_terms), m):.1f}", src)
    console.print(serving)
    console.print("(the serving fit's layer time covers every kernel of a layer, attention and "
                  "norms too, and its bandwidth every byte a step streams; \"GEMM terms\": its "
                  "compute curve and bandwidth with the fixed time per layer of the GEMMs' fit)",
                  highlight=False)
    _attention(rows)
    if out is not None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["gpu", "precision", "model", "tp", "m", "run", "flops", "weight_bytes",
                    "measured_ms", "fitted_ms", "held_out_ms"])
        for x, fi, he in zip(layers, fitted, held, strict=True):
            w.writerow([x.gpu, x.precision, x.model, x.tp, x.m, x.run, f"{x.flops:.0f}",
                        f"{x.weight_bytes:.0f}", f"{x.time_s * 1e3:.5f}", f"{fi * 1e3:.5f}",
                        f"{he * 1e3:.5f}" if np.isfinite(he) else ""])
        write_text(out, buf.getvalue(), "--out")
        console.print(f"wrote {out}")


def _attention(rows: list[KernelRow]) -> None:
    """The attention rows' fit per GPU, and the serving fit's attention terms on them."""
    fits = fit_attention(rows)
    for gpu, f in fits.items():
        sel = [r for r in rows if r.kind == "attn" and r.gpu == gpu]
        meas = np.array([r.time_s for r in sel])
        console.print(escape(
            f"{gpu} attention ({f.rows} calls, one layer on one rank): prefill reaches "
            f"{f.attention:.3f} of the bf16 peak, decode reads KV at {f.kv_fraction:.3f} of the "
            f"HBM peak, {f.fixed_s * 1e6:.1f} us per call; MAPE {f.mape_pct:.1f}%"),
            highlight=False)
        for engine in SERVING_ENGINES:
            e = efficiency_for(gpu, engine, "fp8", "dense")
            pred = predict_attention(sel, e.attention, e.bandwidth * e.kv_read, f.fixed_s)
            parts = []
            for phase in ATTN_PHASES:
                s = np.array([r.gemm == phase for r in sel])
                if s.any():
                    parts.append(f"{phase} MAPE {mape(pred[s], meas[s]):.1f}% (median "
                                 f"{float(np.median(pred[s] / meas[s])):.2f}x)")
            console.print(escape(
                f"  serving fit, {engine} fp8 dense: attention {e.attention:.3f}, KV read "
                f"{e.bandwidth * e.kv_read:.3f}: " + ", ".join(parts)), highlight=False)
