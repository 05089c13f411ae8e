"""Fidelity gate: the group-held-out cross-validated error may not grow by more than one
percentage point over the committed baseline (tests/calibrate/cv_baseline.json, written by
bench/calibrate.py). Fast path: the folds listed in the baseline's `test_folds` only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fleetplan.calibrate import (
    bundled_points_path,
    cross_validate,
    cv_folds,
    error_table,
    prepare,
    read_points,
)

BASELINE = json.loads((Path(__file__).parent / "cv_baseline.json").read_text())


@pytest.fixture(scope="module")
def prepared():  # type: ignore[no-untyped-def]
    _, _, pts = read_points(bundled_points_path())
    return prepare(pts)


def test_cv_error_not_worse_than_baseline(prepared) -> None:  # type: ignore[no-untyped-def]
    folds = BASELINE["test_folds"]
    ct, co = cross_validate(prepared, BASELINE["folds"], max_nfev=BASELINE["max_nfev"],
                            folds=folds)
    fold = cv_folds([p.group for p in prepared.sup], BASELINE["folds"])
    assert np.isfinite(ct[np.isin(fold, folds)]).all()
    got = {r["class"]: r for r in error_table(prepared, ct, co, ("class",))}
    for cls, base in BASELINE["cv_test_folds"].items():
        assert got[cls]["rows"] == base["rows"]
        for metric in ("ttft", "tpot"):
            now = float(got[cls][f"{metric}_mape"])
            assert now <= base[f"{metric}_pct"] + 1.0, (cls, metric, now, base)


def test_every_point_is_supported_or_says_why(prepared) -> None:  # type: ignore[no-untyped-def]
    for p, why in zip(prepared.points, prepared.reasons, strict=True):
        if why is not None:
            assert why.strip(), p.id
    assert len(prepared.ok) > 0.9 * len(prepared.points)
