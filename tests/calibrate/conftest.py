"""Shared, expensive fixtures of the calibration tests: the 5-fold group cross-validation of
the bundled points is computed once per session (~65 s on one core) and used by the
regression gate and the comparison with the peer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fleetplan.calibrate import bundled_points_path, cross_validate, prepare, read_points

BASELINE: dict[str, Any] = json.loads((Path(__file__).parent / "cv_baseline.json").read_text())


@pytest.fixture(scope="session")
def full_cv() -> tuple[Any, np.ndarray, np.ndarray]:
    """(prepared points, held-out TTFT, held-out TPOT) of every supported point, seconds."""
    _, _, pts = read_points(bundled_points_path())
    prep = prepare(pts)
    ct, co = cross_validate(prep, BASELINE["folds"], max_nfev=BASELINE["max_nfev"])
    return prep, ct, co
