"""Predict measured points that the calibration never saw: the rows of another points file
whose `id` is not in the bundled calibration file, with the stored calibration (analytic
model), as a held-out check beside the group cross-validation.

    .venv/bin/python bench/external_points.py --points PATH/silicon_sample.csv

The aiconfigurator package (Apache-2.0; `pip install aiconfigurator==0.12.0` in any other
environment) ships `aiconfigurator_core/systems/silicon_sample.csv`, a later dump of the same
measurement database: 5,221 rows, the 3,366 bundled ones among them. Its other 1,855 rows were
not used to fit, nor to choose any modelling option. Some of them re-export a bundled run under
another id (the same `repeats.run_key`: system, backend, precision, mode, ISL, OSL, concurrency,
measured TTFT and TPOT; 530 of the 1,855, most of them DeepSeek-R1 / V3 copies): they are not
new measurements and are left out (counted; `--keep-reexports` keeps them). Prints MAPE (%) of
TTFT / TPOT by class and serving mode, by (model, system, backend, precision, mode) with
`--groups`, and how many rows were predicted from a fitted group, from composed levels, or not
at all. See docs/FIDELITY.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from fleetplan.calibrate import bundled_points_path, predict_stored, prepare, read_points
from fleetplan.calibrate.features import model_is_moe
from fleetplan.calibrate.repeats import run_key


def _mape(pred: np.ndarray, meas: np.ndarray) -> float:
    return float(np.mean(np.abs(pred / meas - 1.0)) * 100.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=Path, required=True, help="a points CSV (same format)")
    ap.add_argument("--groups", action="store_true", help="also print every group")
    ap.add_argument("--keep-reexports", action="store_true",
                    help="keep rows that repeat a bundled run's measurement under another id")
    args = ap.parse_args()
    t0 = time.perf_counter()
    bundled = read_points(bundled_points_path())[2]
    known = {p.id for p in bundled}
    runs = {run_key(p) for p in bundled}
    points = [p for p in read_points(args.points)[2] if p.id not in known]
    n = len(points)
    again = [p for p in points if run_key(p) in runs]
    if not args.keep_reexports:
        points = [p for p in points if run_key(p) not in runs]
    print(f"{n} rows not in the bundled file by id; {len(again)} of them repeat a bundled run's "
          f"measurement ({'kept' if args.keep_reexports else 'left out'})")
    if not points:
        print("nothing to predict: every row of --points is a bundled row or a re-export of one"
              + ("" if args.keep_reexports else " (--keep-reexports keeps the re-exports)"))
        return
    prep = prepare(points)
    ttft, tpot, prov = predict_stored(prep)
    both, mt, mo = prep.measured()
    ok = both & np.isfinite(ttft) & np.isfinite(tpot)
    moe = np.array([model_is_moe(r.model) for r in prep.resolved], dtype=bool)
    agg = np.array([p.mode == "agg" for p in prep.sup], dtype=bool)
    composed = np.array(["composed from" in p for p in prov], dtype=bool)
    print(f"{len(points)} rows; {len(prep.sup)} supported, "
          f"{int(ok.sum())} predicted ({int((ok & composed).sum())} from composed levels)")
    print(f"{'class':8s} {'mode':7s} {'rows':>5s} {'TTFT':>6s} {'TPOT':>6s}")
    for cls, cm in (("dense", ~moe), ("moe", moe), ("all", moe | ~moe)):
        for mode, mm in (("agg", agg), ("disagg", ~agg), ("all", agg | ~agg)):
            s = ok & cm & mm
            if s.any():
                print(f"{cls:8s} {mode:7s} {int(s.sum()):5d} {_mape(ttft[s], mt[s]):6.1f} "
                      f"{_mape(tpot[s], mo[s]):6.1f}")
    if args.groups:
        keys = [(p.model, p.system, p.backend, p.precision, p.mode) for p in prep.sup]
        for key in sorted(set(keys)):
            s = ok & np.array([k == key for k in keys])
            if s.any():
                print(f"{' / '.join(key):70s} {int(s.sum()):4d} {_mape(ttft[s], mt[s]):6.1f} "
                      f"{_mape(tpot[s], mo[s]):6.1f}")
    print(f"wall {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
