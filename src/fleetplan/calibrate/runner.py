"""Calibrate, cross-validate and predict measured points; read and write the fitted data.

- `prepare(points)`: resolve every point (or the reason it is unsupported) and build the arrays
  of the analytic closed-loop model.
- `calibrate(prepared)`: fit on every supported point with measurements.
- `cross_validate(prepared, k)`: k folds holding out whole (model, system, backend, precision)
  groups, checkpoints of one network read as one model (`Prepared.cv_groups`); every point is
  predicted by a fit that never saw its group.
- `predict_stored(prepared)`: predictions from the stored calibration YAML (`efficiency_for`
  per group, with its fallback to defaults) - what `fleetplan validate` prints.
- `write_calibration(...)`: the YAML `fleetplan.perf.calibration` loads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fleetplan.calibrate.closedloop import (
    FIT_FIELDS,
    LoopInputs,
    build_inputs,
    dp_if_unsplit,
    predict,
)
from fleetplan.calibrate.features import Resolved, model_is_moe, resolve
from fleetplan.calibrate.fit import (
    MODEL_REG_SCALE,
    FitResult,
    Levels,
    cv_folds,
    fit,
    mape,
    value_or_mean,
)
from fleetplan.calibrate.points import ServingPoint
from fleetplan.errors import FleetplanError
from fleetplan.perf.calibration import calibration_entries, efficiency_for, same_architecture
from fleetplan.sim.load import drawn_length_range

__all__ = [
    "CALIBRATION_FILE",
    "READINGS",
    "REG_SCALE",
    "TTFT_LOSS",
    "ClassFits",
    "Prepared",
    "borrow_engine_params",
    "calibrate",
    "cross_validate",
    "dp_product_layout",
    "error_contributions",
    "error_table",
    "point_readings",
    "predict_fits",
    "predict_stored",
    "prepare",
    "reading_notes",
    "readings",
    "stored_benchmark_params",
    "write_calibration",
]

CALIBRATION_FILE = "measured_serving_points.yaml"
DENSE, MOE = "dense", "moe"


@dataclass
class Prepared:
    """Supported points with their inputs; `reasons[i]` is why point i is not supported."""

    points: list[ServingPoint]
    reasons: list[str | None]
    ok: np.ndarray  # indices of supported points
    resolved: list[Resolved]  # one per supported point
    inputs: LoopInputs
    levels: Levels

    @property
    def sup(self) -> list[ServingPoint]:
        return [self.points[i] for i in self.ok]

    def measured(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mask over supported points with both measurements, ttft, tpot)."""
        t = np.array([p.ttft_s or np.nan for p in self.sup], dtype=float)
        o = np.array([p.tpot_s or np.nan for p in self.sup], dtype=float)
        m = np.isfinite(t) & np.isfinite(o)
        return m, t, o

    def cv_groups(self) -> list[tuple[str, str, str, str]]:
        """The unit the cross-validation holds out, per supported point: (model, system,
        backend, precision) with checkpoints of one network read as one model (the
        lexicographically first `model` of the points whose catalog models share the
        architecture, `same_architecture`). The data records some runs under two checkpoint
        names (InferenceMAX's DeepSeek-R1 runs also appear as DeepSeek-V3, the same
        measurements): held out apart, one copy would teach the fit the other's answer."""
        specs = {p.model: r.model for p, r in zip(self.sup, self.resolved, strict=True)}
        # same_architecture is an equivalence (equal network fields): each name maps to the
        # first name of its class, whatever the order of the points
        names = {n: min(o for o, spec in specs.items() if same_architecture(spec, specs[n]))
                 for n in specs}
        return [(names[p.model], p.system, p.backend, p.precision) for p in self.sup]

    def model_class(self) -> list[str]:
        return [MOE if model_is_moe(r.model) else DENSE for r in self.resolved]

    def subset(self, mask: np.ndarray) -> tuple[LoopInputs, Levels]:
        sub = self.inputs.take(mask)
        mod = self.levels.model or [""] * len(self.levels.gpu)
        ver = self.levels.engine_version or [""] * len(self.levels.gpu)
        lv = Levels(*(list(np.array(v, dtype=object)[mask]) for v in
                      (self.levels.gpu, self.levels.engine, self.levels.precision,
                       self.levels.disagg, mod, ver)))
        return sub, lv


def prepare(points: list[ServingPoint]) -> Prepared:
    reasons: list[str | None] = []
    ok: list[int] = []
    resolved: list[Resolved] = []
    for i, p in enumerate(points):
        try:
            r = resolve(p)
        except FleetplanError as e:
            reasons.append(str(e))
            continue
        reasons.append(None)
        ok.append(i)
        resolved.append(r)
    sup = [points[i] for i in ok]
    inputs = build_inputs(sup, resolved)
    levels = Levels([r.gpu.name for r in resolved], [r.engine.name for r in resolved],
                    [r.quant.name for r in resolved], [p.mode == "disagg" for p in sup],
                    [r.model.name for r in resolved], [p.backend_version for p in sup])
    return Prepared(points, reasons, np.array(ok, dtype=int), resolved, inputs, levels)


#: Ridge scale of the levels below the global one, per model class (`fit(reg_scale=...)`):
#: chosen by group-held-out cross-validation (docs/FIDELITY.md); dense models have few
#: (gpu, engine, precision) groups, so their group-specific offsets are held closer to the
#: class-wide fit.
REG_SCALE = {DENSE: 100.0, MOE: 30.0}
#: TTFT residual and soft-L1 scale per model class (`fit(ttft_residual=..., f_scale=...)`),
#: chosen by the same cross-validation: dense TTFT is fitted on the log error (the median fit;
#: lower held-out MAPE on both metrics for dense models), MoE TTFT on the relative error (held-out
#: MAPE 54.6% against 71.6% with the log error, at the price of predictions below the median).
TTFT_LOSS: dict[str, tuple[str, float]] = {DENSE: ("log", 0.25), MOE: ("relative", 0.1)}

ClassFits = dict[str, FitResult]


def _fit_kw(model_class: str) -> dict[str, Any]:
    res, fs = TTFT_LOSS[model_class]
    return {"reg_scale": REG_SCALE[model_class], "ttft_residual": res, "f_scale": fs}


def calibrate(prep: Prepared, *, max_nfev: int = 60) -> ClassFits:
    """One fit per model class (dense, MoE) on every supported point with measurements."""
    m, t, o = prep.measured()
    cls = np.array(prep.model_class())
    out: ClassFits = {}
    for c in (DENSE, MOE):
        sel = m & (cls == c)
        if not sel.any():
            continue
        x, lv = prep.subset(sel)
        out[c] = fit(x, lv, t[sel], o[sel], max_nfev=max_nfev, **_fit_kw(c))
    return borrow_engine_params(out)


def borrow_engine_params(fits: ClassFits) -> ClassFits:
    """Per-engine benchmark parameters that no point of a class informed (the fit leaves them
    out, `fit.fit`) taken from the same engine's fit in the other class, where that one has
    them: they describe the engine's scheduler and the harness (how prompts come back together,
    the disaggregated recipes' speed-up and hand-off), not the model. E.g. dense SGLang, whose
    only points are disaggregated, takes MoE SGLang's cohort fraction. Changes `fits` in
    place and returns it."""
    for c, res in fits.items():
        for o, other in fits.items():
            if o == c:
                continue
            for name in ("wave_weights", "cohort_fracs", "disagg_speedups",
                         "disagg_ttft_overheads"):
                mine, theirs = getattr(res, name), getattr(other, name)
                for eng, v in theirs.items():
                    if eng not in mine:
                        mine[eng] = v
                        res.borrowed.append(f"{name}[{eng}] from {o}")
    return fits


def predict_fits(fits: ClassFits, prep: Prepared,
                 mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(TTFT, TPOT) of the supported points selected by `mask` (all by default) from the fit
    of each point's model class (NaN where that class has no fit)."""
    sel = np.ones(len(prep.sup), dtype=bool) if mask is None else mask
    cls = np.array(prep.model_class())
    a = np.full(len(prep.sup), np.nan)
    b = np.full(len(prep.sup), np.nan)
    for c, res in fits.items():
        s = sel & (cls == c)
        if s.any():
            x, lv = prep.subset(s)
            a[s], b[s] = res.predict(x, lv)
    return a[sel], b[sel]


def cross_validate(prep: Prepared, k: int = 5, *, max_nfev: int = 60,
                   folds: list[int] | None = None,
                   classes: tuple[str, ...] = (DENSE, MOE),
                   salt: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Held-out (TTFT, TPOT) predictions of every supported point of `classes` (NaN where
    unmeasured or of another class): per fold and model class, a fit on the other folds'
    points of that class. `salt` draws another assignment of the groups to folds
    (`fit.cv_folds`; the empty salt is the reported CV)."""
    m, t, o = prep.measured()
    fold = cv_folds(prep.cv_groups(), k, salt)
    cls = np.array(prep.model_class())
    pt = np.full(len(prep.sup), np.nan)
    po = np.full(len(prep.sup), np.nan)
    for f in folds if folds is not None else range(k):
        fits: ClassFits = {}
        for c in (DENSE, MOE):
            train = m & (fold != f) & (cls == c)
            if train.any() and ((fold == f) & np.isin(cls, classes)).any():
                x, lv = prep.subset(train)
                fits[c] = fit(x, lv, t[train], o[train], max_nfev=max_nfev, **_fit_kw(c))
        borrow_engine_params(fits)
        for c in classes:
            test = (fold == f) & (cls == c)
            if test.any() and c in fits:
                xt, lt = prep.subset(test)
                pt[test], po[test] = fits[c].predict(xt, lt)
    return pt, po


@dataclass
class BenchmarkParams:
    """Stored benchmark parameters of one model class: start-up wave weight, disaggregated
    decode speed-up, extra TTFT of disaggregated serving, and cohort fraction per engine, and
    the queueing factor. (The disaggregated mode's factors on the efficiencies are a level of
    the stored hierarchy: `efficiency_for(..., disagg=True)`.)"""

    waves: dict[str, float]
    queue: float
    speedups: dict[str, float]
    disagg_overheads: dict[str, float] = field(default_factory=dict)
    cohorts: dict[str, float] = field(default_factory=dict)
    #: share of a batch slot per rank held by a CUDA-graph padding request (class-wide)
    held_slot: float = 0.0
    #: utilisation at which a disaggregated prefill pool of unrecorded size is read (0: as 1)
    pool_load: float = 0.0

    def disagg_overhead(self, engine: str, disagg: bool) -> float:
        """Extra TTFT of disaggregated serving (the hand-off to the decode pool) of `engine`;
        0 when aggregated."""
        return self.disagg_overheads.get(engine, 0.0) if disagg else 0.0


def stored_benchmark_params(model_class: str = DENSE) -> BenchmarkParams:
    """The stored calibration's benchmark parameters of `model_class` (neutral values where
    there is none)."""
    out = BenchmarkParams({}, 1.0, {})
    for (_, _, _, c), e in calibration_entries().items():
        bench = e.get("benchmark")
        if c == model_class and isinstance(bench, dict):
            eng = e["engine"]
            out.waves[eng] = float(bench["wave_weight"])
            out.queue = float(bench["queue_factor"])
            out.speedups[eng] = float(bench.get("disagg_decode_speedup", 1.0))
            out.disagg_overheads[eng] = float(bench.get("disagg_ttft_overhead_s", 0.0))
            out.cohorts[eng] = float(bench.get("cohort_fraction", 1.0))
            out.held_slot = float(bench.get("held_padding_slot", 0.0))
            out.pool_load = float(bench.get("prefill_pool_load", 0.0))
    return out


def predict_stored(prep: Prepared) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(TTFT, TPOT, provenance) of every supported point from the stored calibration."""
    cls = prep.model_class()
    effs = [efficiency_for(*r.key, c, r.model, engine_version=p.backend_version,
                           disagg=p.mode == "disagg")
            for r, c, p in zip(prep.resolved, cls, prep.sup, strict=True)]
    arrays = {f: np.array([float(getattr(e, f)) for e in effs]) for f in FIT_FIELDS}
    n = len(effs)
    w, sp, ov, q, coh = np.zeros(n), np.ones(n), np.zeros(n), np.ones(n), np.ones(n)
    held, load = np.zeros(n), np.zeros(n)
    for c in set(cls):
        bp = stored_benchmark_params(c)
        for i, eng in enumerate(prep.levels.engine):
            if cls[i] != c:
                continue
            w[i] = value_or_mean(bp.waves, eng, 0.15)
            sp[i] = bp.speedups.get(eng, 1.0)
            ov[i] = bp.disagg_overhead(eng, bool(prep.levels.disagg[i]))
            q[i] = bp.queue
            coh[i] = value_or_mean(bp.cohorts, eng, 1.0)
            held[i] = bp.held_slot
            load[i] = bp.pool_load
    a, b = predict(prep.inputs, arrays, w, q, sp, ov, coh, held, load)
    return a, b, [e.provenance for e in effs]


#: The readings `point_readings` names, by key: what each does to a row's prediction.
READINGS = {
    "unrecorded_prefill_pool": "prefill pool sized to its load (prefill_num_workers "
                               "unrecorded)",
    "unrecorded_decode_workers": "each decode worker runs at most what its KV pools hold "
                                 "(decode_num_workers unrecorded)",
    "tp_read_as_attention_dp": "TP cannot split the attention heads: read as that many "
                               "attention-DP ranks",
    "recipe_settings": "unrecorded engine or benchmark-client settings from benchmark "
                       "recipe {recipe} (calibrate/data/recipes.yaml)",
    "random_lengths": "request lengths drawn uniformly from [{isl_lo}, {isl}] / [{osl_lo}, "
                      "{osl}] (range ratio {ratio:g}): predicted at the mean ISL / OSL "
                      "{mean_isl} / {mean_osl}",
    "padding_slot": "TensorRT-LLM < 1.1 held a batch slot for its CUDA-graph padding request",
    "dp_product_layout": "recorded attention DP {adp} = moe_tp x moe_ep ({f} x {f}) spans more "
                         "GPUs than one scale-up domain and is predicted as recorded; one "
                         "export of the InferenceMAX results writes single-node attention-DP "
                         "{f} / EP {f} runs this way (docs/FIDELITY.md), so this prediction "
                         "may be for the wrong layout",
}


def point_readings(prep: Prepared) -> list[list[str]]:
    """Per supported point, the keys of `READINGS` its prediction went through: readings of
    layout fields its row leaves unrecorded or cannot have run as written, engine settings
    taken from a benchmark recipe, engine-version behaviours (docs/FIDELITY.md)."""
    out: list[list[str]] = []
    for i, (p, r) in enumerate(zip(prep.sup, prep.resolved, strict=True)):
        keys = []
        if p.mode == "disagg" and not p.prefill_workers_recorded:
            keys.append("unrecorded_prefill_pool")
        if p.mode == "disagg" and not p.decode_workers_recorded:
            keys.append("unrecorded_decode_workers")
        if any(d is not None and dp_if_unsplit(d) is not d for d in (r.agg, r.prefill, r.decode)):
            keys.append("tp_read_as_attention_dp")
        if p.recipe:
            keys.append("recipe_settings")
        if p.range_ratio < 1.0:
            keys.append("random_lengths")
        if prep.inputs.slot_ranks[i] > 0:
            keys.append("padding_slot")
        if dp_product_layout(p, r.gpu.interconnect.domain_gpus):
            keys.append("dp_product_layout")
        out.append(keys)
    return out


def dp_product_layout(p: ServingPoint, domain_gpus: int) -> bool:
    """Whether `p` records an aggregated attention-DP layout as the product of two equal
    `moe_tp_size` x `moe_ep_size` factors beyond one scale-up domain (DeepSeek-R1 on 8-GPU B200
    and H200 recorded as attention DP 64 = 8 x 8): the 2026-04-06 export of the InferenceMAX
    results writes single-node attention-DP 8 / EP 8 runs so (the earlier export of the same
    measurements records DP 8, EP 8). Such rows are predicted as recorded; reading them within
    the domain was measured and not kept (docs/FIDELITY.md, fifth session of 2026-11-29)."""
    a = p.agg
    return (p.mode == "agg" and a is not None and a.tp == 1 and a.attention_dp > domain_gpus
            and a.moe_tp > 1 and a.moe_tp == a.ep and a.attention_dp == a.moe_tp * a.ep)


def reading_notes(p: ServingPoint, keys: list[str]) -> str:
    """The readings `keys` of point `p` in words, "; "-separated."""
    fields = {"recipe": p.recipe, "isl": p.isl, "osl": p.osl, "ratio": p.range_ratio,
              "adp": p.agg.attention_dp if p.agg else 0, "f": p.agg.moe_tp if p.agg else 0,
              "isl_lo": drawn_length_range(p.isl, p.range_ratio)[0],
              "osl_lo": drawn_length_range(p.osl, p.range_ratio)[0],
              "mean_isl": p.mean_isl, "mean_osl": p.mean_osl}
    return "; ".join(READINGS[k].format(**fields) for k in keys)


def readings(prep: Prepared) -> dict[str, int]:
    """How many supported points went through each kind of reading (`point_readings`):
    disaggregated points without worker counts (`unrecorded_disagg_pools`: prefill pool sized
    to its load, decode workers holding at most their KV pools' sequences), points whose TP
    cannot split the attention heads (read as attention-DP ranks), points that took unrecorded
    engine or benchmark-client settings from a benchmark recipe (`recipes.yaml`), points whose
    benchmark drew random request lengths (`random_lengths`), points whose recorded
    attention-DP layout looks like a single-node one written as a product
    (`dp_product_layout`)."""
    per = point_readings(prep)
    pools = sum(bool({"unrecorded_prefill_pool", "unrecorded_decode_workers"} & set(k))
                for k in per)
    return {"unrecorded_disagg_pools": pools,
            "tp_read_as_attention_dp": sum("tp_read_as_attention_dp" in k for k in per),
            "recipe_settings": sum("recipe_settings" in k for k in per),
            "random_lengths": sum("random_lengths" in k for k in per),
            "dp_product_layout": sum("dp_product_layout" in k for k in per)}


def error_table(prep: Prepared, ttft: np.ndarray, tpot: np.ndarray,
                by: tuple[str, ...] = ("class",)) -> list[dict[str, object]]:
    """MAPE rows grouped by `by` (any of class, model, system, backend, precision, mode) plus
    an 'all' row."""
    m, t, o = prep.measured()
    m = m & np.isfinite(ttft) & np.isfinite(tpot)
    cls = prep.model_class()
    keys: list[tuple[str, ...]] = []
    for i, p in enumerate(prep.sup):
        d = {"class": cls[i], "model": p.model, "system": p.system, "backend": p.backend,
             "precision": p.precision, "mode": p.mode}
        keys.append(tuple(d[b] for b in by))
    out: list[dict[str, object]] = []
    karr = np.array(["|".join(k) for k in keys], dtype=object)
    for key in sorted(set(karr[m])):
        sel = m & (karr == key)
        row: dict[str, object] = dict(zip(by, key.split("|"), strict=True))
        row.update(rows=int(sel.sum()), ttft_mape=mape(ttft[sel], t[sel]),
                   tpot_mape=mape(tpot[sel], o[sel]))
        out.append(row)
    row = dict.fromkeys(by, "all")
    row.update(rows=int(m.sum()), ttft_mape=mape(ttft[m], t[m]), tpot_mape=mape(tpot[m], o[m]))
    out.append(row)
    return out


def error_contributions(prep: Prepared, ttft: np.ndarray, tpot: np.ndarray,
                        by: tuple[str, ...] = ("model", "system", "backend", "precision",
                                               "mode")) -> list[dict[str, object]]:
    """Where a class's error sits: per group of `by` within each model class, its rows, MAPE
    and the points of its class's MAPE it carries (rows x group MAPE / class rows; the points
    of a class's groups add up to the class MAPE), largest TTFT share first."""
    rows = error_table(prep, ttft, tpot, ("class", *by))
    total = {str(r["class"]): int(r["rows"])  # type: ignore[call-overload]
             for r in error_table(prep, ttft, tpot, ("class",)) if r["class"] != "all"}
    out: list[dict[str, object]] = []
    for r in rows:
        c = str(r["class"])
        if c not in total:
            continue
        n = int(r["rows"])  # type: ignore[call-overload]
        out.append({**r,
                    "ttft_points": n * float(r["ttft_mape"]) / total[c],  # type: ignore[arg-type]
                    "tpot_points": n * float(r["tpot_mape"]) / total[c]})  # type: ignore[arg-type]
    out.sort(key=lambda r: -float(r["ttft_points"]))  # type: ignore[arg-type]
    return out


def write_calibration(path: Path, prep: Prepared, fits: ClassFits, *, source: str,
                      today: dt.date | None = None,
                      held_out: dict[str, dict[str, float]] | None = None,
                      folds: int | None = None) -> None:
    """Write the fitted groups of every model class as `fleetplan.perf.calibration` data;
    `held_out` (per model class: ttft_pct, tpot_pct, rows) is the cross-validated error of
    `folds`-fold group CV, which plans and predictions quote beside the fit they use."""
    m, t, o = prep.measured()
    a, b = predict_fits(fits, prep)
    cls = np.array(prep.model_class())
    keys = [r.key for r in prep.resolved]
    entries = []
    factors: dict[str, object] = {}
    for c, res in fits.items():
        for key in sorted({k for k, kc in zip(keys, cls, strict=True) if kc == c}):
            sel = m & (cls == c) & np.array([k == key for k in keys])
            params = res.group_params(*key)
            entries.append({
                "gpu": key[0], "engine": key[1], "precision": key[2], "model_class": c,
                "ttft_loss": TTFT_LOSS[c][0],
                "rows": int(sel.sum()),
                "mape": {"ttft_pct": round(mape(a[sel], t[sel]), 2),
                         "tpot_pct": round(mape(b[sel], o[sel]), 2)},
                "params": {k: float(f"{v:.6g}") for k, v in params.items()},
                "benchmark": {
                    "wave_weight": round(float(res.wave_weight_of([key[1]])[0]), 6),
                    "queue_factor": round(res.queue_factor, 6),
                    "disagg_decode_speedup": round(res.disagg_speedups.get(key[1], 1.0), 6),
                    "disagg_ttft_overhead_s": round(
                        value_or_mean(res.disagg_ttft_overheads, key[1]), 6),
                    "cohort_fraction": round(float(res.cohort_frac_of([key[1]])[0]), 6),
                    "held_padding_slot": round(res.held_slot, 6),
                    "prefill_pool_load": round(res.pool_load, 6),
                    **_borrowed(res, key[1]),
                },
            })
        factors[c] = {
            "global": _named(res.global_),
            **{level: {lab: _named(v) for lab, v in table.items()}
               for level, table in res.offsets.items()},
        }
    sel_m = m & np.isfinite(a)
    doc = {
        "fit_date": (today or dt.date.today()).isoformat(),
        "source": source,
        "method": "one fit per model class (dense, MoE): scipy.optimize.least_squares on "
                  "log(pred/measured) of mean TPOT and, per class, the log or relative error of "
                  f"mean TTFT (loss, soft-L1 scale: {TTFT_LOSS}), hierarchical log offsets "
                  "(global, GPU, engine, precision, group, engine x mode, GPU x engine, model, "
                  "engine x version) "
                  "with ridge toward the defaults "
                  f"(level scale {REG_SCALE}, model level {MODEL_REG_SCALE}); see docs/FIDELITY.md",
        "rows_used": int(sel_m.sum()),
        "in_sample_mape": {"ttft_pct": round(mape(a[sel_m], t[sel_m]), 2),
                           "tpot_pct": round(mape(b[sel_m], o[sel_m]), 2)},
        **({"held_out_mape": {"method": "cross-validation, whole (model, system, backend, "
                                        "precision) groups held out, checkpoints of one "
                                        "network as one model",
                              "folds": folds, **held_out}} if held_out else {}),
        "fits": entries,
        "factors_log": factors,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=100))


def _borrowed(res: FitResult, engine: str) -> dict[str, list[str]]:
    """`{"borrowed": [...]}` naming the benchmark parameters of `engine` taken from the other
    model class's fit (`borrow_engine_params`), or nothing."""
    mine = [b for b in res.borrowed if f"[{engine}]" in b]
    return {"borrowed": mine} if mine else {}


def _named(v: np.ndarray) -> dict[str, float]:
    return {f: round(float(x), 5) for f, x in zip(FIT_FIELDS, v, strict=True)}
