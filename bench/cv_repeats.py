"""Repeated group cross-validation: how much the reported CV error owes to one assignment of
the groups to folds.

The reported 5-fold CV (docs/FIDELITY.md, `tests/calibrate/cv_baseline.json`) assigns each
(model, system, backend, precision) group to a fold by a stable hash of its key. That is one
draw: groups that could teach each other (e.g. two groups of one engine release on one GPU) may
land in one fold and never train each other's held-out fit, or may not. Here the same CV is
run with R other, equally valid assignments (`cross_validate(..., salt=...)`: the key hashed
with a salt) and the MAPE of each class is printed per assignment, with the mean and range.
The reported (unsalted) assignment stays the committed one; this measures its spread.

    .venv/bin/python bench/cv_repeats.py [--repeats 5] [--max-nfev 40] [--classes dense,moe]

~2 min per assignment on one core of the CI machine (both classes).
"""

from __future__ import annotations

import argparse
import time
from typing import cast

import numpy as np

from fleetplan.calibrate import (
    bundled_points_path,
    cross_validate,
    error_table,
    prepare,
    read_points,
)
from fleetplan.calibrate.runner import DENSE, MOE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="salted assignments besides the "
                    "reported one (default 5)")
    ap.add_argument("--max-nfev", type=int, default=40)
    ap.add_argument("--classes", default=f"{DENSE},{MOE}")
    args = ap.parse_args()
    classes = tuple(c for c in args.classes.split(",") if c)
    if args.repeats < 0 or args.max_nfev < 1:
        ap.error("--repeats must be >= 0 and --max-nfev >= 1")
    if not classes or set(classes) - {DENSE, MOE}:
        ap.error(f"--classes takes {DENSE} and/or {MOE}, comma-separated, got {args.classes!r}")
    t0 = time.perf_counter()
    prep = prepare(read_points(bundled_points_path())[2])
    rows: dict[str, list[tuple[float, float]]] = {c: [] for c in classes}
    for r in range(args.repeats + 1):
        salt = "" if r == 0 else f"repeat-{r}"
        ct, co = cross_validate(prep, 5, max_nfev=args.max_nfev, classes=classes, salt=salt)
        by_class = {str(e["class"]): (cast(float, e["ttft_mape"]), cast(float, e["tpot_mape"]))
                    for e in error_table(prep, ct, co, ("class",))}
        line = []
        for c in classes:
            pair = by_class[c]
            if r:
                rows[c].append(pair)
            line.append(f"{c} {pair[0]:5.1f} / {pair[1]:5.1f}")
        print(f"{salt or 'reported':>10}: " + "   ".join(line), flush=True)
    for c in classes:
        a = np.array(rows[c])
        if len(a):
            print(f"{c}: {len(a)} other assignments, TTFT mean {a[:, 0].mean():.1f} "
                  f"(range {a[:, 0].min():.1f}-{a[:, 0].max():.1f}), TPOT mean "
                  f"{a[:, 1].mean():.1f} (range {a[:, 1].min():.1f}-{a[:, 1].max():.1f})")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
