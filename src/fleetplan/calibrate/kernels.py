"""Measured GEMM and HBM kernel times: the roofline's linear-layer terms against the silicon.

The format is what `bench/gpu_kernels.py` writes (`data/gpu_kernels_h200.csv`): one row per
measured kernel. `gemm` rows time one GEMM of a transformer layer on one tensor-parallel rank
(`gemm` qkv, o, gate_up or down; an (M, K) activation by a (K, N) weight, M = tokens in the
step) in a precision; `hbm` rows time a streaming copy or read of a large buffer.

The roofline (`fleetplan.perf.roofline`) prices a step's linear layers as the slower of their
FLOPs at the GEMM efficiency `compute_max x M / (M + compute_half_tokens)` of the dense peak and
their weight bytes at `bandwidth` of the HBM peak, plus a fixed `layer_overhead_s` per layer.
`layer_times` sums the four GEMMs of each measured layer, and `fit_kernels` fits those four
fields per (GPU, precision) by least squares on log(predicted / measured), with a weak ridge
toward the documented defaults: what the GEMMs alone reach on this GPU, to set beside what the
serving fit (`perf/calibration/measured_serving_points.yaml`) made of whole engine steps.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from fleetplan.calibrate.fit import mape
from fleetplan.calibrate.points import csv_records
from fleetplan.catalog import get_gpu, get_model, get_quant
from fleetplan.errors import InputFileError, UsageError
from fleetplan.perf.efficiency import DEFAULT_EFFICIENCY, Efficiency

__all__ = [
    "ATTN_PHASES",
    "GEMMS",
    "KERNEL_FIELDS",
    "AttentionFit",
    "KernelFit",
    "KernelRow",
    "LayerTime",
    "bundled_kernels_path",
    "fit_attention",
    "fit_kernels",
    "hbm_fractions",
    "held_out_model",
    "layer_times",
    "predict_attention",
    "predict_layers",
    "read_kernels",
]

#: The GEMMs of one transformer layer on one TP rank (fused QKV, attention output, fused
#: gate/up, down projection).
GEMMS = ("qkv", "o", "gate_up", "down")
KINDS = ("gemm", "hbm", "attn")
#: The phases of `attn` rows (in the `gemm` column).
ATTN_PHASES = ("prefill", "decode")
#: Efficiency fields the linear layers' time depends on, fitted as log factors over defaults.
KERNEL_FIELDS = ("compute_max", "compute_half_tokens", "bandwidth", "layer_overhead_s")
#: Ridge weight per log factor (as `steps.RIDGE`: a 2% miss on one layer).
RIDGE = 0.02
REQUIRED_COLUMNS = ("gpu", "kind", "model", "tp", "gemm", "precision", "m", "n", "k", "flops",
                    "bytes", "time_ms")
#: Bounds of a measured kernel time (ms): a kernel takes at least a microsecond, none an hour.
TIME_MS_RANGE = (1e-3, 3.6e6)


@dataclass(frozen=True, slots=True)
class KernelRow:
    """One measured kernel. Times in seconds; `m`, `n`, `k`, `tp` are 0 on `hbm` rows. A `gemm`
    row is an (m, k) x (k, n) product; an `attn` row is one layer's attention on one rank
    (`gemm` prefill or decode) of `m` sequences over `n` tokens each with `k` query heads, its
    `bytes` the KV it reads."""

    path: str
    line: int  # 1-based line in the file (header = 1)
    gpu: str
    kind: str
    model: str
    tp: int
    gemm: str
    precision: str
    m: int
    n: int
    k: int
    bytes: int
    time_s: float
    run: str  # the measurement run (the file's name where it has no `run` column)
    flops: int  # a GEMM's 2 M N K; an attention row's as measured (`flops` column)


@dataclass(frozen=True, slots=True)
class LayerTime:
    """The four GEMMs of one layer on one TP rank at M tokens, summed."""

    gpu: str
    precision: str
    model: str
    tp: int
    m: int
    run: str
    flops: float
    weight_bytes: float
    time_s: float
    line: int  # the first of its rows


def bundled_kernels_path(gpu: str = "h200") -> Path:
    """The kernel times measured by this project on one GPU (`data/gpu_kernels_<gpu>.csv`)."""
    return Path(str(resources.files("fleetplan.calibrate").joinpath(
        f"data/gpu_kernels_{gpu}.csv")))


def read_kernels(path: Path) -> list[KernelRow]:
    """Read and check a kernel-time CSV; every problem names the file, line and field."""
    p = str(path)
    return [_row(r, p, line) for line, r in csv_records(path, REQUIRED_COLUMNS)]


def _whole(r: dict[str, str], c: str, p: str, line: int, low: int) -> int:
    v = (r.get(c) or "").strip()
    try:
        n = int(float(v))
    except (ValueError, OverflowError):
        raise InputFileError(f"not a whole number: {v!r}", path=p, line=line, field=c) from None
    if float(v) != n or n < low:
        raise InputFileError(f"must be a whole number >= {low}, got {v!r}", path=p, line=line,
                             field=c)
    return n


def _row(r: dict[str, str], p: str, line: int) -> KernelRow:
    kind = (r.get("kind") or "").strip()
    if kind not in KINDS:
        raise InputFileError(f"must be one of {', '.join(KINDS)}, got {kind!r}", path=p,
                             line=line, field="kind")
    try:
        gpu = get_gpu((r.get("gpu") or "").strip()).name
    except UsageError as e:
        raise InputFileError(str(e).split(": ", 1)[-1], path=p, line=line, field="gpu") from None
    v = (r.get("time_ms") or "").strip()
    try:
        ms = float(v)
    except ValueError:
        raise InputFileError(f"not a number: {v!r}", path=p, line=line, field="time_ms") from None
    lo, hi = TIME_MS_RANGE
    if not (math.isfinite(ms) and lo <= ms <= hi):
        raise InputFileError(f"{v!r} is not a measured kernel time: between {lo:g} ms (a "
                             f"microsecond) and {hi:g} ms (an hour)", path=p, line=line,
                             field="time_ms")
    nbytes = _whole(r, "bytes", p, line, 1)
    run = (r.get("run") or "").strip() if "run" in r else Path(p).name
    if not run:
        raise InputFileError("empty: name the measurement run the row belongs to", path=p,
                             line=line, field="run")
    gemm = (r.get("gemm") or "").strip()
    if kind == "hbm":
        if gemm not in ("copy", "read"):
            raise InputFileError(f"an hbm row is a copy or a read, got {gemm!r}", path=p,
                                 line=line, field="gemm")
        peak = get_gpu(gpu).hbm_bytes_per_s.value
        if nbytes / (ms / 1e3) > peak:
            raise InputFileError(
                f"{nbytes:,} bytes in {ms:g} ms is {nbytes / ms / 1e9:,.2f} TB/s, beyond the "
                f"{peak / 1e12:.2f} TB/s HBM peak of {gpu}: not a measured rate", path=p,
                line=line, field="bytes")
        return KernelRow(p, line, gpu, kind, "", 0, gemm, "", 0, 0, 0, nbytes, ms / 1e3, run,
                         0)
    if kind == "attn" and gemm not in ATTN_PHASES:
        raise InputFileError(f"an attn row is a prefill or a decode, got {gemm!r}", path=p,
                             line=line, field="gemm")
    if kind == "gemm" and gemm not in GEMMS:
        raise InputFileError(f"must be one of {', '.join(GEMMS)}, got {gemm!r}", path=p,
                             line=line, field="gemm")
    try:
        quant = get_quant((r.get("precision") or "").strip())
    except UsageError as e:
        raise InputFileError(str(e).split(": ", 1)[-1], path=p, line=line,
                             field="precision") from None
    if quant.compute_dtype not in get_gpu(gpu).flops_per_s:
        raise InputFileError(f"{gpu} has no {quant.compute_dtype} peak in the catalog", path=p,
                             line=line, field="precision")
    try:
        model = get_model((r.get("model") or "").strip()).name
    except UsageError as e:
        raise InputFileError(str(e).split(": ", 1)[-1] + " (a row names the catalog model "
                             "whose layer it is)", path=p, line=line, field="model") from None
    m, n, k = (_whole(r, c, p, line, 1) for c in ("m", "n", "k"))
    tp = _whole(r, "tp", p, line, 1)
    flops = _whole(r, "flops", p, line, 1)
    if kind == "gemm" and flops != 2 * m * n * k:
        raise InputFileError(f"{flops:,} FLOPs for an ({m}, {k}) x ({k}, {n}) product, which "
                             f"takes 2 M N K = {2 * m * n * k:,}", path=p, line=line,
                             field="flops")
    return KernelRow(p, line, gpu, kind, model, tp, gemm, quant.name, m, n, k, nbytes, ms / 1e3,
                     run, flops)


def layer_times(rows: Sequence[KernelRow]) -> list[LayerTime]:
    """The four GEMMs of each (GPU, precision, model, TP, M, run) summed into one layer; a
    layer missing a GEMM, or with one measured twice, is an error naming the line."""
    groups: dict[tuple[Any, ...], dict[str, KernelRow]] = defaultdict(dict)
    for r in rows:
        if r.kind != "gemm":
            continue
        g = groups[(r.gpu, r.precision, r.model, r.tp, r.m, r.run)]
        if r.gemm in g:
            raise InputFileError(
                f"{r.gemm} of {r.model} TP {r.tp} {r.precision} at M {r.m} measured twice in "
                f"run {r.run!r} (line {g[r.gemm].line} of {Path(g[r.gemm].path).name}); give "
                "each run its own `run` value", path=r.path, line=r.line, field="gemm")
        g[r.gemm] = r
    out = []
    for key, g in groups.items():
        first = min(g.values(), key=lambda r: r.line)
        lack = [x for x in GEMMS if x not in g]
        if lack:
            raise InputFileError(
                f"the layer of {key[2]} TP {key[3]} {key[1]} at M {key[4]} lacks its "
                f"{', '.join(lack)} GEMM(s): a layer is timed as its four GEMMs, the rows that "
                "share gpu, model, tp, precision, m and run (a typo in one of those splits a "
                "layer)",
                path=first.path, line=first.line, field="gemm")
        wb = get_quant(key[1]).weight_bytes
        rs = g.values()
        out.append(LayerTime(first.gpu, first.precision, first.model, first.tp, first.m,
                             first.run, flops=float(sum(2 * r.m * r.n * r.k for r in rs)),
                             weight_bytes=float(sum(r.n * r.k for r in rs) * wb),
                             time_s=sum(r.time_s for r in rs), line=first.line))
    return sorted(out, key=lambda x: (x.run, x.line))


def _peaks(gpu: str, precision: str) -> tuple[float, float]:
    g = get_gpu(gpu)
    return (g.flops_per_s[get_quant(precision).compute_dtype].value, g.hbm_bytes_per_s.value)


def predict_layers(layers: Sequence[LayerTime], eff: Efficiency) -> np.ndarray:
    """The roofline's linear-layer time (s) of each layer under `eff`: the slower of FLOPs at
    the GEMM efficiency for M tokens and weight bytes at the streaming bandwidth, plus the fixed
    time of a layer."""
    out = np.empty(len(layers))
    for i, x in enumerate(layers):
        flops_peak, bw_peak = _peaks(x.gpu, x.precision)
        t_c = x.flops / (flops_peak * eff.compute_at(x.m))
        t_m = x.weight_bytes / (bw_peak * min(eff.bandwidth, 1.0))
        out[i] = max(t_c, t_m) + eff.layer_overhead_s
    return out


@dataclass(frozen=True, slots=True)
class KernelFit:
    """The fitted linear-layer terms of one (GPU, precision) and their in-sample error."""

    group: tuple[str, str]
    efficiency: Efficiency
    layers: int
    mape_pct: float
    default_mape_pct: float


def _eff(theta: np.ndarray) -> Efficiency:
    d = DEFAULT_EFFICIENCY
    return replace(d, **{f: getattr(d, f) * math.exp(t)
                         for f, t in zip(KERNEL_FIELDS, theta, strict=True)},
                   provenance="fleetplan.calibrate.kernels.fit_kernels")


def fit_kernels(layers: Sequence[LayerTime]) -> dict[tuple[str, str], KernelFit]:
    """One fit of `KERNEL_FIELDS` per (GPU, precision) of `layers`."""
    out = {}
    for group in sorted({(x.gpu, x.precision) for x in layers}):
        sel = [x for x in layers if (x.gpu, x.precision) == group]
        log_meas = np.log([x.time_s for x in sel])

        def resid(theta: np.ndarray, sel: list[LayerTime] = sel,
                  log_meas: np.ndarray = log_meas) -> np.ndarray:
            return np.concatenate([np.log(predict_layers(sel, _eff(theta))) - log_meas,
                                   RIDGE * theta])

        hi = np.array([math.log(1.0 / getattr(DEFAULT_EFFICIENCY, f))
                       if f in ("compute_max", "bandwidth") else 6.0 for f in KERNEL_FIELDS])
        res = least_squares(resid, np.zeros(len(KERNEL_FIELDS)), bounds=(-6.0, hi))
        eff = _eff(res.x)
        meas = np.exp(log_meas)
        out[group] = KernelFit(group, eff, len(sel), mape(predict_layers(sel, eff), meas),
                               mape(predict_layers(sel, DEFAULT_EFFICIENCY), meas))
    return out


def held_out_model(layers: Sequence[LayerTime]) -> np.ndarray:
    """Each layer predicted by a fit to the other models' layers of its GPU and precision;
    NaN where its group has no other model."""
    out = np.full(len(layers), np.nan)
    for model in sorted({x.model for x in layers}):
        fits = fit_kernels([x for x in layers if x.model != model])
        for i, x in enumerate(layers):
            f = fits.get((x.gpu, x.precision))
            if x.model == model and f is not None:
                out[i] = predict_layers([x], f.efficiency)[0]
    return out


def hbm_fractions(rows: Sequence[KernelRow]) -> list[tuple[str, str, float, float]]:
    """(GPU, copy or read, bytes/s, fraction of the datasheet HBM peak) of each `hbm` row."""
    out = []
    for r in rows:
        if r.kind == "hbm":
            rate = r.bytes / r.time_s
            out.append((r.gpu, r.gemm, rate, rate / get_gpu(r.gpu).hbm_bytes_per_s.value))
    return out


@dataclass(frozen=True, slots=True)
class AttentionFit:
    """What one GPU's attention kernels reach: `attention` of the bf16 peak on causal prefill,
    `kv_fraction` of the HBM peak reading KV in decode, and a fixed time per call."""

    gpu: str
    attention: float
    kv_fraction: float
    fixed_s: float
    rows: int
    mape_pct: float


def predict_attention(rows: Sequence[KernelRow], attention: float, kv_fraction: float,
                      fixed_s: float) -> np.ndarray:
    """The roofline's attention time (s) of each `attn` row: the slower of its FLOPs at
    `attention` of the bf16 peak and its KV bytes at `kv_fraction` of the HBM peak (as
    `perf.roofline` prices a step's attention), plus a fixed time per call."""
    out = np.empty(len(rows))
    for i, r in enumerate(rows):
        g = get_gpu(r.gpu)
        out[i] = max(r.flops / (g.flops_per_s["bf16"].value * attention),
                     r.bytes / (g.hbm_bytes_per_s.value * kv_fraction)) + fixed_s
    return out


def fit_attention(rows: Sequence[KernelRow]) -> dict[str, AttentionFit]:
    """One fit of (attention, kv_fraction, fixed time) per GPU over its `attn` rows, by least
    squares on log(predicted / measured), fractions in (0, 1]."""
    out = {}
    for gpu in sorted({r.gpu for r in rows if r.kind == "attn"}):
        sel = [r for r in rows if r.kind == "attn" and r.gpu == gpu]
        log_meas = np.log([r.time_s for r in sel])

        def resid(x: np.ndarray, sel: list[KernelRow] = sel,
                  log_meas: np.ndarray = log_meas) -> np.ndarray:
            r: np.ndarray = np.log(predict_attention(sel, *np.exp(x))) - log_meas
            return r

        x0 = np.log([DEFAULT_EFFICIENCY.attention, DEFAULT_EFFICIENCY.bandwidth, 10e-6])
        res = least_squares(resid, x0, bounds=([-6.0, -6.0, -20.0], [0.0, 0.0, -4.0]))
        a, kv, c = (float(v) for v in np.exp(res.x))
        pred = predict_attention(sel, a, kv, c)
        out[gpu] = AttentionFit(gpu, a, kv, c, len(sel), mape(pred, np.exp(log_meas)))
    return out
