"""The stored calibration (`perf/calibration/measured_serving_points.yaml`) predicts the rows it
was fitted on exactly as the fit did: `fleetplan validate`, the plan and the simulator predictor
load the file, so a composition that differs from the fit's (the order of the caps, the
disaggregated mode's factors) would quote one error and predict with another."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from fleetplan.calibrate.fit import mape
from fleetplan.calibrate.runner import Prepared, predict_stored

DOC: dict[str, Any] = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "src" / "fleetplan" / "perf" / "calibration"
     / "measured_serving_points.yaml").read_text())


def _stored(prep: Prepared) -> tuple[np.ndarray, np.ndarray]:
    a, b, _ = predict_stored(prep)
    return a, b


@pytest.fixture(scope="module")
def stored(full_cv: tuple[Any, np.ndarray, np.ndarray]
           ) -> tuple[Prepared, np.ndarray, np.ndarray]:
    prep = full_cv[0]
    return (prep, *_stored(prep))


def test_stored_fit_reproduces_its_in_sample_error(
        stored: tuple[Prepared, np.ndarray, np.ndarray]) -> None:
    """The file states its in-sample MAPE overall and per (GPU, engine, precision, class)
    group, rounded to 0.01: predictions from the file must give the same figures."""
    prep, a, b = stored
    m, t, o = prep.measured()
    sel = m & np.isfinite(a)
    assert int(sel.sum()) == DOC["rows_used"]
    assert mape(a[sel], t[sel]) == pytest.approx(DOC["in_sample_mape"]["ttft_pct"], abs=0.011)
    assert mape(b[sel], o[sel]) == pytest.approx(DOC["in_sample_mape"]["tpot_pct"], abs=0.011)
    cls = np.array(prep.model_class())
    keys = [r.key for r in prep.resolved]
    checked = 0
    for e in DOC["fits"]:
        key = (e["gpu"], e["engine"], e["precision"])
        g = m & (cls == e["model_class"]) & np.array([k == key for k in keys])
        assert int(g.sum()) == e["rows"], key
        if e["rows"] == 0:
            continue
        for pred, meas, what in ((a, t, "ttft_pct"), (b, o, "tpot_pct")):
            assert mape(pred[g], meas[g]) == pytest.approx(e["mape"][what], abs=0.011), (
                key, e["model_class"], what)
        checked += 1
    assert checked > 40
