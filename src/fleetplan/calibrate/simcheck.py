"""Replay measured points through the simulator (`fleetplan.sim`) with the calibrated model.

The fit uses the analytic closed-loop model (`closedloop`) because it must evaluate thousands of
points per iteration; this module checks it against the discrete-event simulator.

- `simulate_point(point, rounds)`: a plain closed loop of `concurrency` clients, the row's
  ISL/OSL (drawn per request where its benchmark client drew them, `range_ratio`),
  `rounds` requests per client, plain means over all requests, on the point's fleet as
  `simpredict.sim_fleet` builds it (aggregated replica, or disaggregated prefill and decode
  pools), with the calibrated `Efficiency`.
- `fleetplan.calibrate.simpredict.predict_point`: the predictor `fleetplan validate --predictor
  sim` uses, with the request count and start-up wave weight of the stored calibration.
"""

from __future__ import annotations

from fleetplan.calibrate.features import resolve
from fleetplan.calibrate.points import ServingPoint
from fleetplan.calibrate.simpredict import SimPrediction, predict_point, sim_fleet
from fleetplan.sim import ClosedLoop, simulate

__all__ = ["SimPrediction", "predict_point", "simulate_point"]


def simulate_point(p: ServingPoint, rounds: int = 4) -> SimPrediction:
    """Mean TTFT/TPOT of a point simulated with `rounds` requests per client (plain means);
    raises `FleetplanError` when the simulator cannot run it."""
    fleet = sim_fleet(p, resolve(p))
    n = rounds * p.concurrency
    res = simulate(fleet, ClosedLoop(p.concurrency, p.isl, p.osl, requests=n,
                                     range_ratio=p.range_ratio),
                   sample_interval_s=1e9)
    return SimPrediction(res.mean_ttft_s, res.mean_tpot_s, res.wall_s, n)
