"""Replay measured points through the simulator (`fleetplan.sim`) with the calibrated model.

The fit uses the analytic closed-loop model (`closedloop`) because it must evaluate thousands of
points per iteration; this module checks it against the discrete-event simulator: a closed loop
of `concurrency` clients, fixed ISL/OSL, `rounds` requests per client, on one replica of the
point's aggregated deployment with its calibrated `Efficiency`. Disaggregated points are not
simulated (the simulator has no prefill/decode pools yet).
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetplan.calibrate.features import resolve
from fleetplan.calibrate.points import ServingPoint
from fleetplan.perf.calibration import efficiency_for
from fleetplan.sim import ClosedLoop, FleetConfig, ReplicaConfig, simulate

__all__ = ["SimPrediction", "simulate_point"]


@dataclass(frozen=True, slots=True)
class SimPrediction:
    ttft_s: float
    tpot_s: float
    wall_s: float


def simulate_point(p: ServingPoint, rounds: int = 4) -> SimPrediction:
    """Mean TTFT/TPOT of an aggregated point simulated as its benchmark ran."""
    if p.mode != "agg":
        raise ValueError("the simulator has no disaggregated prefill/decode pools")
    r = resolve(p)
    assert r.agg is not None
    dep = r.agg.with_efficiency(efficiency_for(*r.key))
    rep = ReplicaConfig.from_deployment(dep)
    res = simulate(FleetConfig.homogeneous(rep, 1),
                   ClosedLoop(p.concurrency, p.isl, p.osl, requests=rounds * p.concurrency))
    return SimPrediction(res.mean_ttft_s, res.mean_tpot_s, res.wall_s)
