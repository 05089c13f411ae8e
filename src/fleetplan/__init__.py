"""fleetplan: capacity planning, performance modelling and simulation for LLM inference fleets.

Stages (data flows one way): catalog -> workload -> perf -> sim -> plan -> report/cli.
"""

from fleetplan.errors import FleetplanError, InfeasibleError, InputFileError, UsageError

__version__ = "0.1.0"

__all__ = ["FleetplanError", "InfeasibleError", "InputFileError", "UsageError", "__version__"]
