"""Request-level simulator of a serving fleet, following vLLM V1's scheduler and KV cache (and
SGLang's, TensorRT-LLM's and TGI's policies, by the deployment's engine); `DisaggFleetConfig`
gives disaggregated prefill and decode pools.

    fleet = FleetConfig.build("llama-3.1-70b", "h100-sxm", tp=4, replicas=4)
    res = simulate(fleet, ClosedLoop(concurrency=32, isl=1024, osl=256), seed=0)
    res.summary(slo=SLO(ttft_s=1.0, tpot_s=0.05)); res.requests  # polars DataFrame

See docs/SIMULATOR.md for the design, what is modelled and the vLLM facts it follows.
"""

from fleetplan.sim.config import DisaggFleetConfig, FleetConfig, ReplicaConfig
from fleetplan.sim.fleet import simulate
from fleetplan.sim.io import write_result
from fleetplan.sim.kvcache import KVCache
from fleetplan.sim.load import Arrivals, ClosedLoop, Load, PoissonLoad, TraceLoad
from fleetplan.sim.metrics import SLO, SimResult
from fleetplan.sim.router import ROUTERS

__all__ = [
    "ROUTERS",
    "SLO",
    "Arrivals",
    "ClosedLoop",
    "DisaggFleetConfig",
    "FleetConfig",
    "KVCache",
    "Load",
    "PoissonLoad",
    "ReplicaConfig",
    "SimResult",
    "TraceLoad",
    "simulate",
    "write_result",
]
