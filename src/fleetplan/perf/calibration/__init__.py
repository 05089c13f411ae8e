"""Calibrated efficiency parameters, stored as data (`*.yaml` beside this module).

Each file holds fits for (GPU, engine, precision) groups of one model class (`dense` or `moe`:
dense and mixture-of-experts models are fitted apart, their step costs differ in kind): the
fitted `Efficiency` fields, the fit's date, the rows used and the residual error. `efficiency_for`
returns the fitted parameters of a group, or the documented defaults with a provenance that says
no fit exists.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fleetplan.catalog import ModelSpec
from fleetplan.perf.efficiency import DEFAULT_EFFICIENCY, Efficiency

__all__ = ["MODEL_CLASSES", "CalibrationEntry", "calibration_entries", "efficiency_for",
           "model_class_of"]

#: Model classes fitted apart.
MODEL_CLASSES = ("dense", "moe")

CalibrationEntry = dict[str, Any]
_FIELDS = set(Efficiency.__dataclass_fields__) - {"provenance"}


def model_class_of(model: ModelSpec) -> str:
    """The calibration class of a model: "moe" for mixture-of-experts, else "dense"."""
    return "moe" if model.moe is not None else "dense"


@functools.cache
def calibration_entries() -> dict[tuple[str, str, str, str], CalibrationEntry]:
    """All stored fits keyed by (gpu, engine, precision, model class) catalog names."""
    base = Path(str(resources.files("fleetplan.perf.calibration")))
    out: dict[tuple[str, str, str, str], CalibrationEntry] = {}
    for path in sorted(base.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for e in doc.get("fits", []):
            key = (e["gpu"], e["engine"], e["precision"], e.get("model_class", "dense"))
            out[key] = {**e, "file": path.name, "fit_date": doc.get("fit_date")}
    return out


def efficiency_for(gpu: str, engine: str, precision: str,
                   model_class: str = "dense") -> Efficiency:
    """Fitted efficiency for the group and model class, else defaults; `provenance` says
    which."""
    if model_class not in MODEL_CLASSES:
        raise ValueError(f"model_class must be one of {MODEL_CLASSES}, got {model_class!r}")
    e = calibration_entries().get((gpu, engine, precision, model_class))
    if e is None:
        return Efficiency(
            provenance=f"defaults (no calibration fit for {gpu}/{engine}/{precision}, "
            f"{model_class} models)"
        )
    params = {k: float(v) for k, v in e["params"].items() if k in _FIELDS}
    rows = e.get("rows", "?")
    err = e.get("mape", {})
    return Efficiency(
        **{**{k: getattr(DEFAULT_EFFICIENCY, k) for k in _FIELDS}, **params},
        provenance=(
            f"calibration {e['file']} ({e.get('fit_date')}): {gpu}/{engine}/{precision}, "
            f"{model_class} models, {rows} rows, in-sample MAPE {err}"
        ),
    )
