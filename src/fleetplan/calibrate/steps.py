"""Measured step times: read them, fit the step-time model's efficiencies to them, report error.

A *step* is one forward pass of an engine over a batch (`fleetplan.perf.step.StepBatch`). The
format is what `bench/gpu_measure.py` writes (`data/gpu_steps_h100.csv`, `gpu_steps_h200.csv`):
one row per measured step, with the GPU, engine, precision and catalog model, the layer count
the model ran with (large models are cut to fit one GPU), the batch in `StepBatch` terms and
the median time.

`fit_steps` fits, per (GPU, engine, precision), the `Efficiency` fields a single-GPU step
depends on (`STEP_FIELDS`: GEMM efficiency and its half-saturation size, HBM bandwidth,
attention efficiency, fixed per-step, per-layer and per-sequence costs) by least squares on
log(predicted / measured) of the roofline step time (`RooflineStepModel`), with a weak ridge
toward the documented defaults so that a field the data cannot see stays at its default.
`held_out` refits with each model's rows left out and predicts them. `write_step_calibration`
stores the fits as a calibration YAML beside the serving-point fits, which
`efficiency_for(gpu, engine, precision)` then returns with their provenance.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.optimize import least_squares

from fleetplan.calibrate.fit import mape
from fleetplan.calibrate.points import csv_records
from fleetplan.catalog import ModelSpec, get_engine, get_gpu, get_model, get_quant
from fleetplan.errors import InputFileError, UsageError
from fleetplan.perf.deployment import Deployment
from fleetplan.perf.efficiency import DEFAULT_EFFICIENCY, Efficiency
from fleetplan.perf.memory import kv_bytes_per_token, weights_bytes
from fleetplan.perf.roofline import RooflineStepModel
from fleetplan.perf.step import StepBatch

__all__ = [
    "STEP_FIELDS",
    "StepFit",
    "StepPoint",
    "bundled_steps_path",
    "bundled_steps_paths",
    "fit_steps",
    "held_out",
    "held_out_gpu",
    "predict_steps",
    "read_steps",
    "step_error_table",
    "write_step_calibration",
]

#: Efficiency fields a single-GPU step's time depends on (no collectives at TP = 1).
STEP_FIELDS = ("compute_max", "compute_half_tokens", "bandwidth", "attention", "kv_read",
               "step_overhead_s", "layer_overhead_s", "seq_overhead_s")
#: Fields whose default is 0, fitted on their own scale after the log factors, in [0, upper].
LINEAR_FIELDS = {"gqa_expansion": 4.0, "activation_passes": 40.0, "overhead_overlap": 1.0}
#: Ridge weight per log factor: 0.02 costs as much as a 2% miss on one row, so well-measured
#: fields move freely and unseen ones stay at their defaults.
RIDGE = 0.02

_INT_COLS = ("num_layers", "batch_size", "context_tokens", "prefill_tokens", "prefill_seqs",
             "prefill_kv_read_tokens", "decode_seqs", "decode_ctx_tokens")
_FLOAT_COLS = ("prefill_attn_pairs", "step_ms")
REQUIRED_COLUMNS = ("gpu", "engine", "model", "precision", "phase", *_INT_COLS, *_FLOAT_COLS)
PHASES = ("prefill", "decode")
#: Bounds of a measured step time (ms): no forward pass of a layer takes under a microsecond
#: (a kernel launch alone takes more), and none of one batch takes an hour.
STEP_MS_RANGE = (1e-3, 3.6e6)


@dataclass(frozen=True, slots=True)
class StepPoint:
    """One measured step. Times in seconds."""

    line: int  # 1-based line in the file (header = 1)
    gpu: str  # catalog names
    engine: str
    model: str
    num_layers: int
    precision: str
    phase: str  # "prefill" or "decode" (a label; the batch says what ran)
    batch_size: int
    context_tokens: int
    batch: StepBatch
    step_s: float
    measured: str = ""  # where and when (optional columns device_name, measured_at, versions)

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.gpu, self.engine, self.precision)


def bundled_steps_path(gpu: str = "h100") -> Path:
    """The step times measured by this project on one GPU (`data/gpu_steps_<gpu>.csv`)."""
    return Path(str(resources.files("fleetplan.calibrate").joinpath(f"data/gpu_steps_{gpu}.csv")))


def bundled_steps_paths() -> list[Path]:
    """Every bundled step-time file (H100 and H200)."""
    return [bundled_steps_path(g) for g in ("h100", "h200")]


def read_steps(path: Path) -> list[StepPoint]:
    """Read and check a step-time CSV; every problem names the file, line and field."""
    p = str(path)
    return [_point(r, p, line) for line, r in csv_records(path, REQUIRED_COLUMNS)]


def _point(r: dict[str, str], p: str, line: int) -> StepPoint:
    vals: dict[str, Any] = {}
    for c in _INT_COLS:
        v = (r.get(c) or "").strip()
        try:
            n = int(float(v))
        except (ValueError, OverflowError):  # 'abc', 'nan'; 'inf', '1e400'
            raise InputFileError(f"not a whole number: {v!r}", path=p, line=line,
                                 field=c) from None
        if n < 0 or float(v) != n:
            raise InputFileError(f"must be a whole number >= 0, got {v!r}", path=p, line=line,
                                 field=c)
        vals[c] = n
    for c in _FLOAT_COLS:
        v = (r.get(c) or "").strip()
        try:
            x = float(v)
        except ValueError:
            raise InputFileError(f"not a number: {v!r}", path=p, line=line, field=c) from None
        if not math.isfinite(x) or x < 0:
            raise InputFileError(f"must be finite and >= 0, got {v!r}", path=p, line=line,
                                 field=c)
        vals[c] = x
    if vals["step_ms"] <= 0:
        raise InputFileError("must be > 0", path=p, line=line, field="step_ms")
    lo, hi = STEP_MS_RANGE
    if not lo <= vals["step_ms"] <= hi:
        raise InputFileError(
            f"{vals['step_ms']:g} ms is not a measured step time: one forward pass takes "
            f"between {lo:g} ms (a microsecond) and {hi:g} ms (an hour)", path=p, line=line,
            field="step_ms")
    if vals["num_layers"] < 1:
        raise InputFileError("must be >= 1", path=p, line=line, field="num_layers")
    if vals["prefill_tokens"] + vals["decode_seqs"] == 0:
        raise InputFileError("the step has no tokens (prefill_tokens and decode_seqs are 0)",
                             path=p, line=line, field="prefill_tokens")
    if (vals["prefill_tokens"] > 0) != (vals["prefill_seqs"] > 0):
        raise InputFileError(
            f"prefill_tokens {vals['prefill_tokens']} with prefill_seqs "
            f"{vals['prefill_seqs']}: both are 0 or both are >= 1", path=p, line=line,
            field="prefill_seqs")
    if vals["prefill_seqs"] > vals["prefill_tokens"]:
        raise InputFileError(
            f"{vals['prefill_seqs']} prefill sequences with {vals['prefill_tokens']} prompt "
            "tokens: each sequence prefills at least one token", path=p, line=line,
            field="prefill_seqs")
    if vals["batch_size"] != vals["prefill_seqs"] + vals["decode_seqs"]:
        raise InputFileError(
            f"{vals['batch_size']} sequences, but the step holds prefill_seqs "
            f"{vals['prefill_seqs']} + decode_seqs {vals['decode_seqs']}", path=p, line=line,
            field="batch_size")
    if vals["context_tokens"] < 1:
        raise InputFileError("must be >= 1 (each sequence's context length)", path=p,
                             line=line, field="context_tokens")
    # each prefill chunk reads its own KV and any cached before it; a decode step attends
    # over at least the sequence's last token; no tokens without sequences
    for c, seqs, low, why in (
            ("prefill_kv_read_tokens", "prefill_seqs", vals["prefill_tokens"],
             "prompt tokens (each chunk reads its own KV)"),
            ("decode_ctx_tokens", "decode_seqs", vals["decode_seqs"],
             "decoding sequences (each attends over at least one token)")):
        if vals[seqs] == 0 and vals[c]:
            raise InputFileError(f"{vals[c]} tokens with {seqs} 0", path=p, line=line, field=c)
        if vals[c] < low:
            raise InputFileError(f"{vals[c]} tokens, fewer than the step's {low} {why}",
                                 path=p, line=line, field=c)
    if vals["prefill_tokens"] and vals["prefill_attn_pairs"] < vals["prefill_tokens"]:
        raise InputFileError(
            f"{vals['prefill_attn_pairs']:g} query-key pairs for {vals['prefill_tokens']} prompt "
            "tokens: each token attends at least to itself", path=p, line=line,
            field="prefill_attn_pairs")
    # causal attention of n tokens over a cached context: at most n (context + n) pairs
    pairs_max = vals["prefill_tokens"] * (vals["prefill_kv_read_tokens"]
                                          + vals["prefill_tokens"] + 1)
    if vals["prefill_attn_pairs"] > pairs_max:
        raise InputFileError(
            f"{vals['prefill_attn_pairs']:g} query-key pairs for {vals['prefill_tokens']} prompt "
            f"tokens; at most {pairs_max:,}", path=p, line=line, field="prefill_attn_pairs")
    phase = (r.get("phase") or "").strip()
    if phase not in PHASES:
        raise InputFileError(f"must be one of {', '.join(PHASES)}, got {phase!r}", path=p,
                             line=line, field="phase")
    names = {}
    for c, get in (("gpu", get_gpu), ("engine", get_engine), ("model", get_model),
                   ("precision", get_quant)):
        try:
            names[c] = get((r.get(c) or "").strip()).name
        except UsageError as e:
            raise InputFileError(str(e).split(": ", 1)[-1], path=p, line=line, field=c) from None
    model = get_model(names["model"])
    if vals["num_layers"] > model.num_layers:
        raise InputFileError(f"{model.name} has {model.num_layers} layers, got "
                             f"{vals['num_layers']}", path=p, line=line, field="num_layers")
    ctx_max = model.max_context_tokens
    if vals["context_tokens"] > ctx_max:
        raise InputFileError(f"{vals['context_tokens']:,} tokens, beyond {model.name}'s context "
                             f"of {ctx_max:,}", path=p, line=line, field="context_tokens")
    for c, seqs in (("prefill_kv_read_tokens", "prefill_seqs"),
                    ("decode_ctx_tokens", "decode_seqs")):
        if vals[c] > vals[seqs] * ctx_max:
            raise InputFileError(f"{vals[c]:,} tokens over {vals[seqs]} sequences, beyond "
                                 f"{model.name}'s context of {ctx_max:,} each", path=p,
                                 line=line, field=c)
    try:
        dep = _deployment(names["gpu"], names["engine"], names["precision"], names["model"],
                          vals["num_layers"])
    except UsageError as e:  # a model that cannot be cut to fewer layers
        raise InputFileError(str(e).split(": ", 1)[-1], path=p, line=line,
                             field="num_layers") from None
    problems = dep.problems()
    if problems:
        raise InputFileError("; ".join(problems), path=p, line=line, field="precision")
    # the step's weights and the KV of every token it reads must have been on the one GPU
    kv_tokens = vals["prefill_kv_read_tokens"] + vals["decode_ctx_tokens"]
    need = (weights_bytes(dep.model, dep.quant.weight_bytes)
            + kv_tokens * kv_bytes_per_token(dep.model, dep.kv_bytes_per_element))
    if need > dep.gpu.memory_bytes.value:
        field = ("decode_ctx_tokens" if vals["decode_ctx_tokens"] >= vals["prefill_kv_read_tokens"]
                 else "prefill_kv_read_tokens")
        raise InputFileError(
            f"the weights and the KV cache of {kv_tokens:,} tokens take {need / 2**30:,.0f} GiB, "
            f"more than the {dep.gpu.memory_bytes.value / 2**30:.0f} GiB of one {dep.gpu.name}: "
            "the step cannot have run", path=p, line=line, field=field)
    batch = StepBatch(vals["prefill_tokens"], vals["prefill_seqs"], vals["prefill_attn_pairs"],
                      vals["prefill_kv_read_tokens"], vals["decode_seqs"],
                      vals["decode_ctx_tokens"])
    meta = [(r.get(c) or "").strip() for c in ("device_name", "measured_at", "torch_version",
                                               "transformers_version")]
    measured = ", ".join(x for x in (meta[0], meta[1][:10],
                                     f"torch {meta[2]}" if meta[2] else "",
                                     f"transformers {meta[3]}" if meta[3] else "") if x)
    return StepPoint(line, names["gpu"], names["engine"], names["model"], vals["num_layers"],
                     names["precision"], phase, vals["batch_size"],
                     vals["context_tokens"], batch, vals["step_ms"] / 1e3, measured)


def with_layers(model: ModelSpec, layers: int) -> ModelSpec:
    """`model` cut to its first `layers` layers (a model of only full-attention layers)."""
    if layers == model.num_layers:
        return model
    a = model.attention
    if a.sliding_layers or a.linear_layers or model.moe is not None:
        raise UsageError(f"{model.name}: only dense models of full-attention layers can be cut "
                         f"to fewer layers", where="num_layers")
    return model.model_copy(update={
        "num_layers": layers, "attention": a.model_copy(update={"full_layers": layers})})


@functools.cache
def _deployment(gpu: str, engine: str, precision: str, model: str, layers: int) -> Deployment:
    """The single-GPU deployment a step ran on (default efficiencies; callers swap theirs in)."""
    return Deployment(with_layers(get_model(model), layers), get_gpu(gpu), get_quant(precision),
                      get_engine(engine))


def predict_steps(points: Sequence[StepPoint], eff: Efficiency | dict[tuple[str, str, str],
                  Efficiency]) -> np.ndarray:
    """Roofline step time (s) of each point under `eff` (one, or one per group)."""
    models: dict[tuple[Any, ...], RooflineStepModel] = {}
    out = np.empty(len(points))
    for i, p in enumerate(points):
        e = eff if isinstance(eff, Efficiency) else eff.get(p.group, DEFAULT_EFFICIENCY)
        key = (p.gpu, p.engine, p.precision, p.model, p.num_layers, id(e))
        if key not in models:
            models[key] = RooflineStepModel(_deployment(*key[:5]).with_efficiency(e))
        out[i] = models[key].step_time_s(p.batch)
    return out


@dataclass(frozen=True, slots=True)
class StepFit:
    """The fitted efficiency of one (GPU, engine, precision) group and its in-sample error."""

    group: tuple[str, str, str]
    efficiency: Efficiency
    rows: int
    mape_pct: float
    default_mape_pct: float


def _eff(theta: np.ndarray) -> Efficiency:
    """Efficiency of the parameter vector: log factors over the defaults of `STEP_FIELDS`, then
    the overlap share."""
    d = DEFAULT_EFFICIENCY
    vals = {f: getattr(d, f) * math.exp(t) for f, t in zip(STEP_FIELDS, theta, strict=False)}
    for j, f in enumerate(LINEAR_FIELDS):
        vals[f] = float(theta[len(STEP_FIELDS) + j])
    return replace(d, **vals)


def fit_steps(points: Sequence[StepPoint], max_nfev: int = 200,
              pool_gpus: bool = False) -> dict[tuple[str, str, str], StepFit]:
    """One fit per (GPU, engine, precision) group of `points`; with `pool_gpus`, one per
    (engine, precision) over every GPU's points, keyed ("*", engine, precision)."""
    out: dict[tuple[str, str, str], StepFit] = {}

    def key(p: StepPoint) -> tuple[str, str, str]:
        return ("*", p.engine, p.precision) if pool_gpus else p.group

    for group in sorted({key(p) for p in points}):
        pts = [p for p in points if key(p) == group]
        meas = np.array([p.step_s for p in pts])
        log_meas = np.log(meas)

        def resid(theta: np.ndarray, pts: list[StepPoint] = pts,
                  log_meas: np.ndarray = log_meas) -> np.ndarray:
            pred = predict_steps(pts, _eff(theta))
            return np.concatenate([np.log(pred) - log_meas, RIDGE * theta])

        # Fractions may not pass their caps (the step time would ignore the excess).
        caps = {"compute_max": 1.0, "bandwidth": 1.0, "attention": 1.0}
        hi = np.array([*(math.log(caps[f] / getattr(DEFAULT_EFFICIENCY, f)) if f in caps
                         else 6.0 for f in STEP_FIELDS), *LINEAR_FIELDS.values()])
        lo = np.array([-6.0] * len(STEP_FIELDS) + [0.0] * len(LINEAR_FIELDS))
        x0 = np.zeros(len(STEP_FIELDS) + len(LINEAR_FIELDS))
        res = least_squares(resid, x0, bounds=(lo, hi), max_nfev=max_nfev, x_scale=1.0)
        eff = _eff(res.x)
        out[group] = StepFit(group, eff, len(pts), mape(predict_steps(pts, eff), meas),
                             mape(predict_steps(pts, DEFAULT_EFFICIENCY), meas))
    return out


def held_out(points: Sequence[StepPoint], max_nfev: int = 200) -> np.ndarray:
    """Each point predicted by a fit to the other models' points of its group (leave one model
    out); NaN where its group has no other model."""
    out = np.full(len(points), np.nan)
    for model in sorted({p.model for p in points}):
        train = [p for p in points if p.model != model]
        test_idx = [i for i, p in enumerate(points) if p.model == model]
        fits = fit_steps(train, max_nfev) if train else {}
        for i in test_idx:
            f = fits.get(points[i].group)
            if f is not None:
                out[i] = predict_steps([points[i]], f.efficiency)[0]
    return out


def held_out_gpu(points: Sequence[StepPoint], max_nfev: int = 200) -> np.ndarray:
    """Each point predicted by one fit to the other GPUs' points of its engine and precision,
    with its own GPU's datasheet peaks (leave one GPU out); NaN where no other GPU was
    measured."""
    out = np.full(len(points), np.nan)
    for gpu in sorted({p.gpu for p in points}):
        train = [p for p in points if p.gpu != gpu]
        fits = fit_steps(train, max_nfev, pool_gpus=True) if train else {}
        for i, p in enumerate(points):
            f = fits.get(("*", p.engine, p.precision))
            if p.gpu == gpu and f is not None:
                out[i] = predict_steps([p], f.efficiency)[0]
    return out


def step_error_table(points: Sequence[StepPoint], preds: dict[str, np.ndarray],
                     by: tuple[str, ...] = ("model", "num_layers", "phase")
                     ) -> list[dict[str, Any]]:
    """MAPE (%) of each prediction column by the `by` fields of the points, and overall."""
    meas = np.array([p.step_s for p in points])
    keys = [tuple(getattr(p, b) for b in by) for p in points]
    table = []
    for k in [*sorted(set(keys)), None]:
        sel = np.array([k is None or kk == k for kk in keys])
        row: dict[str, Any] = dict(zip(by, k, strict=True)) if k else dict.fromkeys(by, "all")
        row["rows"] = int(sel.sum())
        for name, pred in preds.items():
            ok = sel & np.isfinite(pred)
            row[name] = mape(pred[ok], meas[ok]) if ok.any() else float("nan")
        table.append(row)
    return table


def write_step_calibration(path: Path, points: Sequence[StepPoint],
                           fits: dict[tuple[str, str, str], StepFit], source: str,
                           held: np.ndarray | None = None) -> None:
    """Store the fits as a calibration YAML that `fleetplan.perf.calibration` loads."""
    meas = np.array([p.step_s for p in points])
    entries = []
    for g, f in sorted(fits.items()):
        sel = np.array([p.group == g for p in points])
        err: dict[str, float] = {"step_pct": round(f.mape_pct, 2),
                                 "defaults_step_pct": round(f.default_mape_pct, 2)}
        if held is not None and np.isfinite(held[sel]).any():
            ok = sel & np.isfinite(held)
            err["held_out_model_step_pct"] = round(mape(held[ok], meas[ok]), 2)
        entries.append({
            "gpu": g[0], "engine": g[1], "precision": g[2], "model_class": "dense",
            "rows": f.rows, "models": sorted({f"{p.model} x{p.num_layers} layers"
                                              for p in points if p.group == g}),
            "measured": sorted({p.measured for p in points if p.group == g and p.measured}),
            "mape": err,
            "params": {k: float(f"{getattr(f.efficiency, k):.6g}")
                       for k in f.efficiency.as_dict() if k != "provenance"},
        })
    doc = {
        "fit_date": dt.date.today().isoformat(),
        "source": source,
        "method": "fleetplan.calibrate.steps.fit_steps: least squares on log(roofline step time "
                  f"/ measured) over {', '.join(STEP_FIELDS)} (log factors) and "
                  f"{', '.join(LINEAR_FIELDS)} (from 0), ridge {RIDGE} per log factor toward "
                  "the defaults; other fields at their defaults; held-out error: each model's "
                  "rows predicted by a fit to the other models' rows",
        "rows_used": len(points),
        "fits": entries,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=100))
