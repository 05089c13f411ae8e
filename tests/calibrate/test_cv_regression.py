"""Fidelity gate: the group-held-out cross-validated error may not grow by more than one
percentage point over the committed baseline (tests/calibrate/cv_baseline.json, written by
bench/calibrate.py): all 5 folds, computed once per session (`conftest.full_cv`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fleetplan.calibrate import error_table
from tests.calibrate.conftest import BASELINE


def test_cv_error_not_worse_than_baseline(full_cv: Any) -> None:
    prep, ct, co = full_cv
    assert np.isfinite(ct[prep.measured()[0]]).all()
    got = {r["class"]: r for r in error_table(prep, ct, co, ("class",))}
    for cls, base in BASELINE["cv"].items():
        assert got[cls]["rows"] == base["rows"]
        for metric in ("ttft", "tpot"):
            now = float(got[cls][f"{metric}_mape"])
            assert now <= base[f"{metric}_pct"] + 1.0, (cls, metric, now, base)


def test_every_point_is_supported_or_says_why(full_cv: Any) -> None:
    prepared = full_cv[0]
    for p, why in zip(prepared.points, prepared.reasons, strict=True):
        if why is not None:
            assert why.strip(), p.id
    assert len(prepared.ok) > 0.9 * len(prepared.points)


def test_a_measurement_recorded_twice_is_held_out_once(full_cv: Any) -> None:
    """The bundled file records some runs under two checkpoint names of one network (the
    InferenceMAX DeepSeek-R1 runs also as DeepSeek-V3, identical measurements). The CV unit
    reads checkpoints of one architecture as one model, so no measurement is in a held-out
    fold while its copy trains the fit; by (model, system, backend, precision) it would be."""
    prep = full_cv[0]
    runs: dict[tuple[Any, ...], set[tuple[str, ...]]] = {}
    by_name: dict[tuple[Any, ...], set[tuple[str, ...]]] = {}
    for p, g in zip(prep.sup, prep.cv_groups(), strict=True):
        key = (p.isl, p.osl, p.concurrency, p.ttft_s, p.tpot_s)
        runs.setdefault(key, set()).add(g)
        by_name.setdefault(key, set()).add(p.group)
    assert all(len(gs) == 1 for gs in runs.values())
    assert sum(len(gs) > 1 for gs in by_name.values()) > 100  # what the unit guards against
    merged = {(p.model, g[0]) for g, p in zip(prep.cv_groups(), prep.sup, strict=True)
              if g != p.group}
    assert ("deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-R1") in merged


def test_error_contributions_add_up_to_each_class_mape(full_cv: Any) -> None:
    """The points of a class's MAPE that its groups carry add up to the class MAPE; a group's
    points are its rows x its MAPE / the class's rows (hand check on the largest)."""
    from fleetplan.calibrate import error_contributions

    prep, ct, co = full_cv
    contrib = error_contributions(prep, ct, co)
    table = {r["class"]: r for r in error_table(prep, ct, co, ("class",))}
    for cls in ("dense", "moe"):
        mine = [r for r in contrib if r["class"] == cls]
        assert sum(int(r["rows"]) for r in mine) == table[cls]["rows"]
        for metric in ("ttft", "tpot"):
            got = sum(float(r[f"{metric}_points"]) for r in mine)
            assert abs(got - float(table[cls][f"{metric}_mape"])) < 1e-9, (cls, metric)
        top = mine[0]
        assert float(top["ttft_points"]) == max(float(r["ttft_points"]) for r in mine)
        want = int(top["rows"]) * float(top["ttft_mape"]) / int(table[cls]["rows"])
        assert abs(float(top["ttft_points"]) - want) < 1e-12
