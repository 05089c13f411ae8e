"""Predict the measured points by simulating each benchmark (`fleetplan.calibrate.simpredict`)
and compare with the analytic closed-loop model on the same rows.

    .venv/bin/python bench/validate_sim.py                  # all supported rows, 2 processes
    .venv/bin/python bench/validate_sim.py --jobs 1 --limit 200 --out sim.csv

Prints MAPE (%) by class (dense / MoE) and mode x TTFT / TPOT for the simulator and for the
analytic model (stored calibration, `predict_stored`) over the rows both predict, the rows the
simulator could not run (by reason), and the wall time. See docs/FIDELITY.md.
"""

from __future__ import annotations

import argparse
import collections
import csv
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from fleetplan.calibrate import (
    ServingPoint,
    bundled_points_path,
    error_table,
    predict_stored,
    prepare,
    read_points,
)
from fleetplan.calibrate.simpredict import (
    MAX_REQUESTS,
    SimPrediction,
    predict_points,
    prefill_capacity_tokens_s,
)

_POINTS: dict[str, list[ServingPoint]] = {}  # per worker process: the points read once


def _init(path: str) -> None:
    _POINTS["rows"] = read_points(path)[2]


def _work(args: tuple[list[int], int]) -> list[tuple[int, SimPrediction]]:
    idx, cap = args
    preds = predict_points([_POINTS["rows"][i] for i in idx], max_requests=cap)
    return list(zip(idx, preds, strict=True))


def _table(title: str, rows: list[dict[str, object]]) -> None:
    print(f"\n{title}")
    for r in rows:
        keys = [str(v) for k, v in r.items() if k not in ("rows", "ttft_mape", "tpot_mape")]
        print(f"  {' / '.join(keys):<22} rows {r['rows']:>5}  TTFT {r['ttft_mape']:7.1f}  "
              f"TPOT {r['tpot_mape']:6.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="only every k-th row, k = n / limit")
    ap.add_argument("--max-requests", type=int, default=MAX_REQUESTS)
    ap.add_argument("--out", type=Path, default=None, help="CSV of the per-row predictions")
    a = ap.parse_args()
    path = a.points or bundled_points_path()
    _, _, pts = read_points(path)
    prep = prepare(pts)
    ana_t, ana_o, _ = predict_stored(prep)
    sel = np.arange(len(prep.ok))
    if a.limit and a.limit < len(sel):
        sel = sel[:: max(1, len(sel) // a.limit)][: a.limit]
    rows = [int(prep.ok[j]) for j in sel]
    t0 = time.perf_counter()
    chunks = [(rows[i::a.jobs * 8], a.max_requests) for i in range(a.jobs * 8)]
    out: dict[int, SimPrediction] = {}
    with ProcessPoolExecutor(a.jobs, initializer=_init, initargs=(str(path),)) as ex:
        for part in ex.map(_work, chunks):
            out.update(part)
    wall = time.perf_counter() - t0
    sim_t = np.full(len(prep.ok), np.nan)
    sim_o = np.full(len(prep.ok), np.nan)
    pos = {int(i): j for j, i in enumerate(prep.ok)}
    reasons: collections.Counter[str] = collections.Counter()
    for i, pr in out.items():
        if pr.ttft_s is None or pr.tpot_s is None:
            reasons[(pr.reason or "?").split(": ")[-1][:90]] += 1
            continue
        sim_t[pos[i]], sim_o[pos[i]] = pr.ttft_s, pr.tpot_s
    both = np.isfinite(sim_t)
    # Rows whose measured throughput needs more prompt tokens/s than the recorded layout's
    # prefill can compute under the calibrated step model (full-budget prefill steps).
    over = np.zeros(len(prep.ok), dtype=bool)
    for j, (p, r) in enumerate(zip(prep.sup, prep.resolved, strict=True)):
        if not both[j] or p.ttft_s is None or p.tpot_s is None:
            continue
        need = p.concurrency * p.mean_isl / (p.ttft_s + max(p.mean_osl - 1, 0) * p.tpot_s)
        cap = prefill_capacity_tokens_s(p, r)
        over[j] = cap is not None and need > cap
    ana_t2 = np.where(both, ana_t, np.nan)
    ana_o2 = np.where(both, ana_o, np.nan)
    print(f"{len(rows)} rows simulated in {wall:.1f} s wall ({a.jobs} processes, "
          f"max {a.max_requests} requests per row); {int(both.sum())} predicted, "
          f"{len(rows) - int(both.sum())} not simulated")
    for by in (("class",), ("class", "mode")):
        _table(f"simulator MAPE (%) by {' x '.join(by)}", error_table(prep, sim_t, sim_o, by))
        _table(f"analytic MAPE (%) by {' x '.join(by)}, same rows",
               error_table(prep, ana_t2, ana_o2, by))
    keep = both & ~over
    print(f"\n{int((both & over).sum())} simulated rows need more prefill throughput than "
          "their recorded layout has under the calibrated step model; without them:")
    _table("simulator MAPE (%) by class x mode, prefill-feasible rows",
           error_table(prep, np.where(keep, sim_t, np.nan), np.where(keep, sim_o, np.nan),
                       ("class", "mode")))
    _table("analytic MAPE (%) by class x mode, same rows",
           error_table(prep, np.where(keep, ana_t, np.nan), np.where(keep, ana_o, np.nan),
                       ("class", "mode")))
    _table("analytic MAPE (%) by class, every supported row",
           error_table(prep, ana_t, ana_o, ("class",)))
    if reasons:
        print("\nnot simulated:")
        for why, n in reasons.most_common(8):
            print(f"  {n:>5}  {why}")
    slow = sorted(out.items(), key=lambda kv: -kv[1].wall_s)[:5]
    print("\nslowest rows: " + ", ".join(f"line {pts[i].line} {p.wall_s:.1f}s" for i, p in slow))
    if a.out is not None:
        with a.out.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["line", "mode", "backend", "concurrency", "isl", "osl", "ttft_ms",
                        "tpot_ms", "sim_ttft_ms", "sim_tpot_ms", "ana_ttft_ms", "ana_tpot_ms",
                        "requests", "wall_s", "reason"])
            for i in sorted(out):
                p, pr, j = pts[i], out[i], pos[i]
                w.writerow([p.line, p.mode, p.backend, p.concurrency, p.isl, p.osl,
                            (p.ttft_s or np.nan) * 1e3, (p.tpot_s or np.nan) * 1e3,
                            sim_t[j] * 1e3, sim_o[j] * 1e3, ana_t[j] * 1e3, ana_o[j] * 1e3,
                            pr.requests, round(pr.wall_s, 3), pr.reason or ""])
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
