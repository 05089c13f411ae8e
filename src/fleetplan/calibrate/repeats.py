"""Repeatability of measured points: what the data itself lets any predictor reach.

Rows whose recorded configuration is identical (every field of `ServingPoint` but the file line,
the id and the two measurements: model, system, backend and its version, precision, mode, ISL,
OSL, concurrency, layouts, batch limit) but whose measurements differ cannot all be predicted
exactly by any function of the recorded columns: it must give them one value. Per such set, the
least total absolute percentage error a single value c can reach is

  min_c sum_i |c / t_i - 1| = min_c sum_i |c - t_i| / t_i,

a convex piecewise-linear function of c whose minimum lies at the median of the t_i weighted by
1 / t_i (`best_constant`). Summed over the sets and divided by a class's rows, it is a lower
bound that no model of these columns can go below on that class's MAPE (its floor), however
well it knows the physics. The mean-of-the-others error (each row predicted by the mean of its
repeats) says how far apart repeats typically are. Exact duplicate rows (same measurements too)
are counted apart: they neither help nor hurt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from fleetplan.calibrate.points import ServingPoint

__all__ = ["Repeatability", "best_constant", "config_key", "repeatability", "run_key",
           "same_run_other_name"]


def config_key(p: ServingPoint) -> ServingPoint:
    """The recorded configuration of `p`: the point without its line, id and measurements."""
    return replace(p, line=0, id="", ttft_s=None, tpot_s=None)


def best_constant(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """(c, error): the single prediction c of all `values` (> 0) with the least summed absolute
    relative error sum |c / v - 1|, and that error. c is the median of the values weighted by
    1 / v (the slope of the sum changes sign there)."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size == 0:
        raise ValueError("best_constant needs at least one value")
    if np.any(v <= 0) or not np.all(np.isfinite(v)):
        raise ValueError("values must be finite and > 0")
    w = 1.0 / v
    c = float(v[np.searchsorted(np.cumsum(w), 0.5 * w.sum())])
    return c, float(np.abs(c / v - 1.0).sum())


@dataclass(frozen=True)
class Repeatability:
    """Repeated configurations among measured points, and the error they force."""

    points: int  # points with both measurements
    sets: int  # configurations measured more than once with different results
    rows: int  # points in those sets
    duplicate_rows: int  # points repeating another point's configuration and measurements
    floor_ttft_sum: float  # summed least absolute relative error over those rows (TTFT)
    floor_tpot_sum: float
    mean_of_others_ttft_pct: float  # MAPE of each row predicted by its repeats' mean
    mean_of_others_tpot_pct: float

    @property
    def floor_ttft_pct(self) -> float:
        """Least MAPE, %, any predictor of the recorded columns reaches over all `points`."""
        return 100.0 * self.floor_ttft_sum / self.points if self.points else 0.0

    @property
    def floor_tpot_pct(self) -> float:
        return 100.0 * self.floor_tpot_sum / self.points if self.points else 0.0

    @property
    def floor_ttft_in_sets_pct(self) -> float:
        """The same bound over the rows of the repeated sets only."""
        return 100.0 * self.floor_ttft_sum / self.rows if self.rows else 0.0

    @property
    def floor_tpot_in_sets_pct(self) -> float:
        return 100.0 * self.floor_tpot_sum / self.rows if self.rows else 0.0


def repeatability(points: Sequence[ServingPoint]) -> Repeatability:
    """Repeated configurations among the `points` that have both measurements."""
    sets: dict[ServingPoint, list[tuple[float, float]]] = defaultdict(list)
    n = 0
    for p in points:
        if p.ttft_s is None or p.tpot_s is None:
            continue
        n += 1
        sets[config_key(p)].append((p.ttft_s, p.tpot_s))
    k = rows = dup = 0
    ft = fo = 0.0
    mt: list[float] = []
    mo: list[float] = []
    for meas in sets.values():
        distinct = set(meas)
        dup += len(meas) - len(distinct)
        if len(distinct) < 2:
            continue
        k += 1
        rows += len(meas)
        t = np.array([m[0] for m in meas])
        o = np.array([m[1] for m in meas])
        ft += best_constant(t)[1]
        fo += best_constant(o)[1]
        for vals, out in ((t, mt), (o, mo)):
            others = (vals.sum() - vals) / (len(vals) - 1)
            out.extend(np.abs(others / vals - 1.0))
    return Repeatability(
        points=n, sets=k, rows=rows, duplicate_rows=dup, floor_ttft_sum=ft, floor_tpot_sum=fo,
        mean_of_others_ttft_pct=100.0 * float(np.mean(mt)) if mt else 0.0,
        mean_of_others_tpot_pct=100.0 * float(np.mean(mo)) if mo else 0.0,
    )


def run_key(p: ServingPoint) -> tuple[object, ...]:
    """What identifies one measured run across names and exports: system, backend, precision,
    mode, ISL, OSL, concurrency and the measured TTFT and TPOT (to the nanosecond)."""
    return (p.system, p.backend, p.precision, p.mode, p.isl, p.osl, p.concurrency,
            round(p.ttft_s or 0.0, 9), round(p.tpot_s or 0.0, 9))


def same_run_other_name(points: Sequence[ServingPoint]) -> tuple[int, int, list[tuple[str, ...]]]:
    """Measured runs a file records under more than one model name: rows with the same
    `run_key` but another `model`, e.g. InferenceMAX's DeepSeek-R1 runs
    also exported as DeepSeek-V3. They are one measurement, not two: a cross-validation that
    holds out by model name would see one copy while predicting the other. Returns (runs, rows
    in them, the model-name sets, sorted by how often they occur)."""
    runs: dict[tuple[object, ...], list[ServingPoint]] = defaultdict(list)
    for p in points:
        if p.ttft_s is None or p.tpot_s is None:
            continue
        runs[run_key(p)].append(p)
    shared = [ps for ps in runs.values() if len({q.model for q in ps}) > 1]
    names: dict[tuple[str, ...], int] = defaultdict(int)
    for ps in shared:
        names[tuple(sorted({q.model for q in ps}))] += 1
    return (len(shared), sum(len(ps) for ps in shared),
            sorted(names, key=lambda k: (-names[k], k)))
