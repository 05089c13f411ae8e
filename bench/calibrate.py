"""Refit the calibration, rewrite its YAML and the cross-validation baseline, print the errors.

    .venv/bin/python bench/calibrate.py          # fit + 5-fold group CV, only print (make bench)
    .venv/bin/python bench/calibrate.py --write  # ... and rewrite both files

Writes src/fleetplan/perf/calibration/measured_serving_points.yaml (the fitted efficiencies
`efficiency_for` loads) and tests/calibrate/cv_baseline.json (the figures the regression test
holds the model to). See docs/FIDELITY.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fleetplan.calibrate import (
    bundled_points_path,
    calibrate,
    cross_validate,
    cv_folds,
    error_contributions,
    error_table,
    predict_fits,
    prepare,
    read_points,
    write_calibration,
)
from fleetplan.calibrate.runner import CALIBRATION_FILE

ROOT = Path(__file__).resolve().parents[1]
YAML_OUT = ROOT / "src" / "fleetplan" / "perf" / "calibration" / CALIBRATION_FILE
BASELINE = ROOT / "tests" / "calibrate" / "cv_baseline.json"
FOLDS = 5
TEST_FOLDS = (0, 1)  # the fast path tests/calibrate/test_cv_regression.py recomputes


def _print(title: str, rows: list[dict[str, object]]) -> None:
    print(f"\n{title}")
    for r in rows:
        keys = [str(v) for k, v in r.items() if k not in ("rows", "ttft_mape", "tpot_mape")]
        print(f"  {' / '.join(keys):60s} n={r['rows']!s:>5}  TTFT {r['ttft_mape']:6.1f}%  "
              f"TPOT {r['tpot_mape']:6.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--write", action="store_true", help="rewrite the calibration YAML and the CV baseline"
    )
    ap.add_argument("--max-nfev", type=int, default=40)  # the committed baseline's setting
    ap.add_argument("--groups", type=int, default=0, metavar="K",
                    help="also print the K held-out groups carrying most of each class's error")
    args = ap.parse_args()
    t0 = time.perf_counter()
    _, _, pts = read_points(bundled_points_path())
    prep = prepare(pts)
    fits = calibrate(prep, max_nfev=args.max_nfev)
    a, b = predict_fits(fits, prep)
    ins = error_table(prep, a, b, ("class",))
    _print("in-sample", ins)
    _print("in-sample by model", error_table(prep, a, b, ("model",)))
    ct, co = cross_validate(prep, FOLDS, max_nfev=args.max_nfev)
    cv = error_table(prep, ct, co, ("class",))
    _print(f"{FOLDS}-fold CV, (model, system, backend, precision) groups held out "
           "(checkpoints of one network as one model)", cv)
    _print("CV by model", error_table(prep, ct, co, ("model",)))
    if args.groups:
        contrib = error_contributions(prep, ct, co)
        for c in ("dense", "moe"):
            print(f"\nheld-out {c} error by group (points of the class MAPE carried, TTFT / TPOT)")
            for r in [r for r in contrib if r["class"] == c][: args.groups]:
                name = " / ".join(str(r[k]) for k in ("model", "system", "backend", "precision",
                                                      "mode"))
                print(f"  {name:66s} n={r['rows']!s:>4}  {r['ttft_points']:5.2f} / "
                      f"{r['tpot_points']:5.2f}  (MAPE {r['ttft_mape']:5.1f} / "
                      f"{r['tpot_mape']:5.1f})")
    for c, res in fits.items():
        print(f"\n{c}: wave_weights={res.wave_weights} queue_factor={res.queue_factor:.3f} "
              f"disagg_speedups={res.disagg_speedups} "
              f"disagg_ttft_overheads={res.disagg_ttft_overheads} cohort_fracs={res.cohort_fracs}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    fold = cv_folds(prep.cv_groups(), FOLDS)
    keep = np.isin(fold, TEST_FOLDS)
    sub = error_table(prep, np.where(keep, ct, np.nan), np.where(keep, co, np.nan), ("class",))
    if not args.write:
        return
    held = {str(r["class"]): {"ttft_pct": round(float(r["ttft_mape"]), 1),  # type: ignore[arg-type]
                              "tpot_pct": round(float(r["tpot_mape"]), 1),  # type: ignore[arg-type]
                              "rows": int(r["rows"])}  # type: ignore[call-overload]
            for r in cv if r["class"] != "all"}
    write_calibration(YAML_OUT, prep, fits, source="fleetplan/calibrate/data/"
                      "measured_serving_points.csv (aiconfigurator, Apache-2.0)",
                      held_out=held, folds=FOLDS)
    base = {
        "folds": FOLDS,
        "max_nfev": args.max_nfev,
        "in_sample": {str(r["class"]): {"ttft_pct": round(float(r["ttft_mape"]), 2),  # type: ignore[arg-type]
                                        "tpot_pct": round(float(r["tpot_mape"]), 2)}  # type: ignore[arg-type]
                      for r in ins},
        "cv": {str(r["class"]): {"ttft_pct": round(float(r["ttft_mape"]), 2),  # type: ignore[arg-type]
                                 "tpot_pct": round(float(r["tpot_mape"]), 2),  # type: ignore[arg-type]
                                 "rows": r["rows"]} for r in cv},
        "test_folds": list(TEST_FOLDS),
        "cv_test_folds": {str(r["class"]): {"ttft_pct": round(float(r["ttft_mape"]), 2),  # type: ignore[arg-type]
                                            "tpot_pct": round(float(r["tpot_mape"]), 2),  # type: ignore[arg-type]
                                            "rows": r["rows"]} for r in sub},
    }
    BASELINE.write_text(json.dumps(base, indent=2) + "\n")
    print(f"wrote {YAML_OUT.relative_to(ROOT)} and {BASELINE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
