"""Calibration of the performance model against measured serving data, and its error.

A stage after the simulator: reads measured closed-loop benchmark points
(`points.read_points`), resolves them to deployments (`features.resolve`), predicts them with an
analytic closed-loop model of the benchmark (`closedloop`), fits the `Efficiency` parameters per
model class and (GPU, engine, precision) hierarchically (`fit`), cross-validates with whole
groups held out, and writes the fits as `fleetplan/perf/calibration/*.yaml` (`runner`).
`simcheck` replays points through `fleetplan.sim` to check the analytic model against the
simulator.
"""

from fleetplan.calibrate.fit import FitResult, Levels, cv_folds, fit, mape
from fleetplan.calibrate.points import Layout, ServingPoint, bundled_points_path, read_points
from fleetplan.calibrate.runner import (
    ClassFits,
    Prepared,
    calibrate,
    cross_validate,
    error_contributions,
    error_table,
    predict_fits,
    predict_stored,
    prepare,
    write_calibration,
)

__all__ = [
    "ClassFits",
    "FitResult",
    "Layout",
    "Levels",
    "Prepared",
    "ServingPoint",
    "bundled_points_path",
    "calibrate",
    "cross_validate",
    "cv_folds",
    "error_contributions",
    "error_table",
    "fit",
    "mape",
    "predict_fits",
    "predict_stored",
    "prepare",
    "read_points",
    "write_calibration",
]
