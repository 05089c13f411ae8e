"""Nested group cross-validation: the ridge scale chosen inside each outer fold.

The reported 5-fold CV (docs/FIDELITY.md) uses ridge scales (`runner.REG_SCALE`) that were
chosen by that same CV, which makes it slightly optimistic. Here, per outer fold and model
class, each candidate scale is scored by an inner 4-fold group CV on the outer training
groups only (sum of TTFT and TPOT MAPE), the best one refits the outer training groups, and the
outer held-out groups are predicted with it. The outer predictions are then scored as the plain
CV is. Slow: ~15 fits per outer fold and class.

    .venv/bin/python bench/nested_cv.py [--max-nfev 40] [--classes dense,moe]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fleetplan.calibrate import bundled_points_path, prepare, read_points
from fleetplan.calibrate.fit import FitResult, cv_folds, fit, mape
from fleetplan.calibrate.runner import DENSE, MOE, REG_SCALE, TTFT_LOSS, Prepared

CANDIDATES = {DENSE: (30.0, 100.0, 300.0), MOE: (10.0, 30.0, 100.0)}


def _fit(prep: Prepared, sel: np.ndarray, t: np.ndarray, o: np.ndarray, c: str, reg: float,
         max_nfev: int) -> FitResult:
    res_kind, fs = TTFT_LOSS[c]
    x, lv = prep.subset(sel)
    return fit(x, lv, t[sel], o[sel], max_nfev=max_nfev, reg_scale=reg,
               ttft_residual=res_kind, f_scale=fs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-nfev", type=int, default=40)
    ap.add_argument("--classes", default="dense,moe")
    args = ap.parse_args()
    t0 = time.perf_counter()
    _, _, points = read_points(bundled_points_path())
    prep = prepare(points)
    m, t, o = prep.measured()
    groups = prep.cv_groups()
    outer = cv_folds(groups, 5)
    cls = np.array(prep.model_class())
    for c in args.classes.split(","):
        pt = np.full(len(prep.sup), np.nan)
        po = np.full(len(prep.sup), np.nan)
        chosen = []
        for f in range(5):
            train = m & (outer != f) & (cls == c)
            test = (outer == f) & (cls == c)
            if not test.any():
                continue
            idx = np.flatnonzero(train)
            inner = np.full(len(prep.sup), -1)
            inner[idx] = cv_folds([groups[i] for i in idx], 4)
            scores = {}
            for reg in CANDIDATES[c]:
                it = np.full(len(prep.sup), np.nan)
                io = np.full(len(prep.sup), np.nan)
                for g in range(4):
                    tr = train & (inner != g)
                    te = train & (inner == g)
                    if not te.any():
                        continue
                    res = _fit(prep, tr, t, o, c, reg, args.max_nfev)
                    xt, lt = prep.subset(te)
                    it[te], io[te] = res.predict(xt, lt)
                ok = train & np.isfinite(it)
                scores[reg] = mape(it[ok], t[ok]) + mape(io[ok], o[ok])
            best = min(scores, key=lambda r: scores[r])
            chosen.append(best)
            res = _fit(prep, train, t, o, c, best, args.max_nfev)
            xt, lt = prep.subset(test)
            pt[test], po[test] = res.predict(xt, lt)
            print(f"{c} fold {f}: inner scores "
                  + ", ".join(f"x{r:g} {s:.1f}" for r, s in scores.items()) + f" -> x{best:g}",
                  flush=True)
        ok = m & (cls == c) & np.isfinite(pt)
        print(f"{c}: nested CV TTFT / TPOT MAPE {mape(pt[ok], t[ok]):.1f} / "
              f"{mape(po[ok], o[ok]):.1f} over {int(ok.sum())} rows; scales chosen "
              f"{[f'x{r:g}' for r in chosen]} (plain CV uses x{REG_SCALE[c]:g})", flush=True)
    print(f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
