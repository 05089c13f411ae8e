"""Calibrate, cross-validate and predict measured points; read and write the fitted data.

- `prepare(points)`: resolve every point (or the reason it is unsupported) and build the arrays
  of the analytic closed-loop model.
- `calibrate(prepared)`: fit on every supported point with measurements.
- `cross_validate(prepared, k)`: k folds holding out whole (model, system, backend, precision)
  groups; every point is predicted by a fit that never saw its group.
- `predict_stored(prepared)`: predictions from the stored calibration YAML (`efficiency_for`
  per group, with its fallback to defaults) - what `fleetplan validate` prints.
- `write_calibration(...)`: the YAML `fleetplan.perf.calibration` loads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from fleetplan.calibrate.closedloop import FIT_FIELDS, LoopInputs, build_inputs, predict
from fleetplan.calibrate.features import Resolved, model_is_moe, resolve
from fleetplan.calibrate.fit import FitResult, Levels, cv_folds, fit, mape
from fleetplan.calibrate.points import ServingPoint
from fleetplan.errors import FleetplanError
from fleetplan.perf.calibration import calibration_entries, efficiency_for

__all__ = [
    "CALIBRATION_FILE",
    "Prepared",
    "calibrate",
    "cross_validate",
    "error_table",
    "predict_stored",
    "prepare",
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

    def model_class(self) -> list[str]:
        return [MOE if model_is_moe(r.model) else DENSE for r in self.resolved]

    def subset(self, mask: np.ndarray) -> tuple[LoopInputs, Levels]:
        sub = self.inputs.take(mask)
        lv = Levels(*(list(np.array(v, dtype=object)[mask]) for v in
                      (self.levels.gpu, self.levels.engine, self.levels.precision,
                       self.levels.disagg)))
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
                    [r.quant.name for r in resolved], [p.mode == "disagg" for p in sup])
    return Prepared(points, reasons, np.array(ok, dtype=int), resolved, inputs, levels)


def calibrate(prep: Prepared, *, max_nfev: int = 60) -> FitResult:
    m, t, o = prep.measured()
    x, lv = prep.subset(m)
    return fit(x, lv, t[m], o[m], max_nfev=max_nfev)


def cross_validate(prep: Prepared, k: int = 5, *, max_nfev: int = 60,
                   folds: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Held-out (TTFT, TPOT) predictions of every supported point (NaN where unmeasured)."""
    m, t, o = prep.measured()
    fold = cv_folds([p.group for p in prep.sup], k)
    pt = np.full(len(prep.sup), np.nan)
    po = np.full(len(prep.sup), np.nan)
    for f in folds if folds is not None else range(k):
        train = m & (fold != f)
        test = fold == f
        if not test.any() or not train.any():
            continue
        x, lv = prep.subset(train)
        res = fit(x, lv, t[train], o[train], max_nfev=max_nfev)
        xt, lt = prep.subset(test)
        a, b = res.predict(xt, lt)
        pt[test], po[test] = a, b
    return pt, po


@dataclass
class BenchmarkParams:
    """Stored benchmark parameters: start-up wave weight and disaggregated decode speed-up per
    engine, queueing factor, and disaggregated-mode log factors on the efficiencies."""

    waves: dict[str, float]
    queue: float
    speedups: dict[str, float]
    modes: dict[str, dict[str, float]]


def stored_benchmark_params() -> BenchmarkParams:
    """The stored calibration's benchmark parameters (fit starting values when there is none)."""
    out = BenchmarkParams({}, 1.0, {}, {})
    for e in calibration_entries().values():
        bench = e.get("benchmark")
        if isinstance(bench, dict):
            eng = e["engine"]
            out.waves[eng] = float(bench["wave_weight"])
            out.queue = float(bench["queue_factor"])
            out.speedups[eng] = float(bench.get("disagg_decode_speedup", 1.0))
            out.modes[eng] = {k: float(v) for k, v in (bench.get("disagg_log") or {}).items()}
    return out


def predict_stored(prep: Prepared) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(TTFT, TPOT, provenance) of every supported point from the stored calibration."""
    effs = [efficiency_for(*r.key) for r in prep.resolved]
    arrays = {f: np.array([float(getattr(e, f)) for e in effs]) for f in FIT_FIELDS}
    bp = stored_benchmark_params()
    mean_w = float(np.mean(list(bp.waves.values()))) if bp.waves else 0.15
    w = np.array([bp.waves.get(e, mean_w) for e in prep.levels.engine])
    sp = np.array([bp.speedups.get(e, 1.0) for e in prep.levels.engine])
    for i, (eng, dis) in enumerate(zip(prep.levels.engine, prep.levels.disagg, strict=True)):
        if dis:
            for f, off in bp.modes.get(eng, {}).items():
                arrays[f][i] *= float(np.exp(off))
    a, b = predict(prep.inputs, arrays, w, bp.queue, sp)
    return a, b, [e.provenance for e in effs]


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


def write_calibration(path: Path, prep: Prepared, res: FitResult, *, source: str,
                      today: dt.date | None = None) -> None:
    """Write the fitted groups as `fleetplan.perf.calibration` data."""
    m, t, o = prep.measured()
    a, b = res.predict(prep.inputs, prep.levels)
    keys = [r.key for r in prep.resolved]
    fits = []
    for key in sorted(set(keys)):
        sel = m & np.array([k == key for k in keys])
        params = res.group_params(*key)
        fits.append({
            "gpu": key[0], "engine": key[1], "precision": key[2],
            "rows": int(sel.sum()),
            "mape": {"ttft_pct": round(mape(a[sel], t[sel]), 2),
                     "tpot_pct": round(mape(b[sel], o[sel]), 2)},
            "params": {k: float(f"{v:.6g}") for k, v in params.items()},
            "benchmark": {
                "wave_weight": round(float(res.wave_weight_of([key[1]])[0]), 6),
                "queue_factor": round(res.queue_factor, 6),
                "disagg_decode_speedup": round(res.disagg_speedups.get(key[1], 1.0), 6),
                "disagg_log": _named(_mode_delta(res, key[1])),
            },
        })
    factors = {
        "global": _named(res.global_),
        **{level: {lab: _named(v) for lab, v in table.items()}
           for level, table in res.offsets.items() if level != "group"},
    }
    doc = {
        "fit_date": (today or dt.date.today()).isoformat(),
        "source": source,
        "method": "scipy.optimize.least_squares on the relative error pred/measured - 1 of "
                  "mean TTFT and log(pred/measured) of mean TPOT, soft-L1 loss (f_scale 0.1), "
                  "hierarchical log offsets (global, GPU, engine, precision, group, "
                  "engine x mode) with ridge toward the defaults; see docs/FIDELITY.md",
        "rows_used": int(m.sum()),
        "in_sample_mape": {"ttft_pct": round(mape(a[m], t[m]), 2),
                           "tpot_pct": round(mape(b[m], o[m]), 2)},
        "fits": fits,
        "factors_log": factors,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=100))


def _mode_delta(res: FitResult, engine: str) -> np.ndarray:
    """Log factor of disaggregated over aggregated serving for an engine."""
    table = res.offsets.get("mode", {})
    zero = np.zeros(len(FIT_FIELDS))
    out: np.ndarray = table.get(f"{engine}/disagg", zero) - table.get(f"{engine}/agg", zero)
    return out


def _named(v: np.ndarray) -> dict[str, float]:
    return {f: round(float(x), 5) for f, x in zip(FIT_FIELDS, v, strict=True)}
