"""Performance model: memory, KV cache, and the roofline time of prefill and decode steps.

Pure functions of a `Deployment` (model x GPU x precision x engine x layout) and its
`Efficiency` parameters; the simulator consumes it through the `StepTimeModel` protocol.
"""

from fleetplan.perf.deployment import Deployment
from fleetplan.perf.efficiency import DEFAULT_EFFICIENCY, DEFAULT_SOURCES, Efficiency
from fleetplan.perf.memory import (
    MemoryBudget,
    kv_bytes_for_sequence_per_gpu,
    kv_bytes_per_token,
    kv_bytes_per_token_per_gpu,
    max_concurrent_sequences,
    memory_budget,
    weights_bytes,
)
from fleetplan.perf.roofline import RooflineStepModel, StepBreakdown
from fleetplan.perf.step import StepBatch, StepTimeModel, summed_decode_run_time_s

__all__ = [
    "DEFAULT_EFFICIENCY",
    "DEFAULT_SOURCES",
    "Deployment",
    "Efficiency",
    "MemoryBudget",
    "RooflineStepModel",
    "StepBatch",
    "StepBreakdown",
    "StepTimeModel",
    "kv_bytes_for_sequence_per_gpu",
    "kv_bytes_per_token",
    "kv_bytes_per_token_per_gpu",
    "max_concurrent_sequences",
    "memory_budget",
    "summed_decode_run_time_s",
    "weights_bytes",
]
