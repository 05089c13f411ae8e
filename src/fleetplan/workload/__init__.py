"""Workload: read request traces into one canonical table, characterize them, synthesize more.

The first stage of fleetplan's one-way flow; it imports nothing from perf, sim or plan.

    w = load("azure-conv-2023")          # a preset name or a path; format auto-detected
    c = characterize(w, cache_blocks=10_000)
    c.to_dict()                           # the JSON of `fleetplan workload characterize`
"""

from __future__ import annotations

from fleetplan.workload._characterize import Characterization, characterize
from fleetplan.workload._detect import FORMATS
from fleetplan.workload._load import load, preset_path, presets
from fleetplan.workload._model import SkipReport, Workload
from fleetplan.workload._stats import BINS_S as RATE_BINS_S

__all__ = [
    "FORMATS", "RATE_BINS_S", "Characterization", "SkipReport", "Workload", "characterize",
    "load", "preset_path", "presets",
]
