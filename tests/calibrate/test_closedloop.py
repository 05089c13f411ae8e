"""The analytic closed-loop predictor: the TTFT overhead is a constant added to TTFT only."""

from __future__ import annotations

import numpy as np

from fleetplan.calibrate import bundled_points_path, prepare, read_points
from fleetplan.calibrate.closedloop import FIT_FIELDS, predict
from fleetplan.perf import DEFAULT_EFFICIENCY


def test_ttft_overhead_adds_to_ttft_only() -> None:
    _, _, pts = read_points(bundled_points_path())
    prep = prepare(pts[:200])
    n = len(prep.sup)
    eff = {f: np.full(n, float(getattr(DEFAULT_EFFICIENCY, f))) for f in FIT_FIELDS}
    a0, b0 = predict(prep.inputs, eff, 0.1, 0.25)
    over = np.linspace(0.0, 0.2, n)
    a1, b1 = predict(prep.inputs, eff, 0.1, 0.25, 1.0, over)
    np.testing.assert_allclose(a1 - a0, over, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(b1, b0)
