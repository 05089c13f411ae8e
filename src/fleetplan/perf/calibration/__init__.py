"""Calibrated efficiency parameters, stored as data (`*.yaml` beside this module).

Each file holds fits for (GPU, engine, precision) groups of one model class (`dense` or `moe`:
dense and mixture-of-experts models are fitted apart, their step costs differ in kind): the
fitted `Efficiency` fields, the fit's date, the rows used and the residual error, plus the
hierarchical log factors the groups were composed from (`factors_log`: class-wide, per GPU, per
engine, per precision, per engine x serving mode, per GPU x engine, per model, per engine
release). `efficiency_for`
returns, in this order: the fitted parameters of the group; for a group without a fit whose GPU
and engine were both fitted in that class (with other precisions or partners), the parameters
composed from those factors, as group-held-out cross-validation predicts a held-out group; else
the documented defaults. A model the fit saw also gets its model factor on a fitted or composed
result; a model it did not see gets the factor of a fitted model with the same architecture
(`same_architecture`: another checkpoint or release of one network, e.g. GLM-5.1 of GLM-5), as
what the model level holds is what the kernels make of that network. The provenance says which.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fleetplan.catalog import ModelSpec, load_catalog
from fleetplan.perf.efficiency import DEFAULT_EFFICIENCY, FRACTION_CAPS, Efficiency

__all__ = ["MODEL_CLASSES", "CalibrationEntry", "calibration_entries", "calibration_factors",
           "efficiency_for", "held_out_error", "model_class_of", "same_architecture"]

#: Model classes fitted apart.
MODEL_CLASSES = ("dense", "moe")

CalibrationEntry = dict[str, Any]
_FIELDS = set(Efficiency.__dataclass_fields__) - {"provenance"}


def model_class_of(model: ModelSpec) -> str:
    """The calibration class of a model: "moe" for mixture-of-experts, else "dense"."""
    return "moe" if model.moe is not None else "dense"


@functools.cache
def _documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    """Every calibration YAML beside this module, parsed once: (file name, document)."""
    base = Path(str(resources.files("fleetplan.perf.calibration")))
    return tuple((path.name, yaml.safe_load(path.read_text()) or {})
                 for path in sorted(base.glob("*.yaml")))


@functools.cache
def calibration_entries() -> dict[tuple[str, str, str, str], CalibrationEntry]:
    """All stored fits keyed by (gpu, engine, precision, model class) catalog names."""
    out: dict[tuple[str, str, str, str], CalibrationEntry] = {}
    for name, doc in _documents():
        for e in doc.get("fits", []):
            key = (e["gpu"], e["engine"], e["precision"], e.get("model_class", "dense"))
            out[key] = {**e, "file": name, "fit_date": doc.get("fit_date")}
    return out


@functools.cache
def calibration_factors() -> dict[str, dict[str, Any]]:
    """Hierarchical log factors per model class (`factors_log`), with the file and date."""
    out: dict[str, dict[str, Any]] = {}
    for name, doc in _documents():
        for cls, table in (doc.get("factors_log") or {}).items():
            if cls in MODEL_CLASSES and isinstance(table, dict):
                out[cls] = {**table, "file": name, "fit_date": doc.get("fit_date")}
    return out


@functools.cache
def _held_out() -> dict[tuple[str, str], tuple[Any, dict[str, Any]]]:
    """(file, model class) -> (CV folds, that class's held-out MAPE) where a file states it."""
    out: dict[tuple[str, str], tuple[Any, dict[str, Any]]] = {}
    for name, doc in _documents():
        held = doc.get("held_out_mape") or {}
        for cls in MODEL_CLASSES:
            if isinstance(held.get(cls), dict):
                out[(name, cls)] = (held.get("folds", "k"), held[cls])
    return out


def held_out_error(file: str, model_class: str) -> str:
    """The held-out error a calibration file states for a model class, as a phrase to end a
    provenance ("; expected error (dense groups held out, 5-fold CV): TTFT 34.7%, TPOT 13.7%
    MAPE"), or "" where it states none."""
    found = _held_out().get((file, model_class))
    if found is None:
        return ""
    folds, err = found
    return (f"; expected error ({model_class} groups held out, {folds}-fold CV): "
            f"TTFT {err['ttft_pct']}%, TPOT {err['tpot_pct']}% MAPE")


def _scaled(base: Efficiency, logs: list[dict[str, float]]) -> dict[str, float]:
    """The fields of `base` times exp(the sum of the log factors in `logs`), the fractions capped
    as the step time caps them (`FRACTION_CAPS`)."""
    vals: dict[str, float] = {}
    for k in _FIELDS:
        v = float(getattr(base, k)) * math.exp(sum(float(t.get(k, 0.0)) for t in logs))
        vals[k] = min(v, FRACTION_CAPS.get(k, math.inf))
    return vals


def _level_tables(f: dict[str, Any], gpu: str, engine: str, precision: str, disagg: bool,
                  group: bool) -> tuple[list[dict[str, float]], list[str]]:
    """The log-factor tables of the hierarchy's fixed levels that apply to a (gpu, engine,
    precision) group in one serving mode, as the fit composes them (class-wide, GPU, engine,
    precision, group where `group`, engine x mode, GPU x engine; a label the fit never saw
    contributes nothing), and the names of the levels used."""
    mode = f"{engine}/{'disagg' if disagg else 'agg'}"
    tables: list[dict[str, float]] = [f.get("global", {})]
    used = ["class-wide"]
    levels = [("gpu", gpu, f"GPU {gpu}"), ("engine", engine, f"engine {engine}"),
              ("precision", precision, f"precision {precision}"),
              *([("group", f"{gpu}/{engine}/{precision}", "group")] if group else []),
              ("mode", mode, f"mode {mode}"),
              ("gpu_engine", f"{gpu}/{engine}", f"GPU x engine {gpu}/{engine}")]
    for level, label, name in levels:
        table = f.get(level, {}).get(label)
        if table is not None:
            tables.append(table)
            used.append(name)
    return tables, used


def efficiency_for(gpu: str, engine: str, precision: str,
                   model_class: str = "dense", model: str | ModelSpec | None = None,
                   engine_version: str | None = None, disagg: bool = False) -> Efficiency:
    """Fitted efficiency for the group and model class, else defaults; `provenance` says
    which. With `model` (catalog name, or the spec itself: a model built from a config.json is
    in no catalog), a fitted or composed result also carries that model's factor, or that of a
    fitted model of the same architecture, where the fit has one (`_model_factor`). With
    `engine_version` (as a points file records it; "" for a row that recorded none), it also
    carries the fitted factor of that engine release where the fit has one; None (a plan for an
    engine release the user does not name) leaves it out. `disagg`: the efficiency of a
    disaggregated pool (the fit's engine x disaggregated-mode factor instead of the aggregated
    one).

    A fit's levels are summed in log space and the fractions capped once (`FRACTION_CAPS`), as
    the fit's own predictions do, so that the stored calibration predicts every row it was
    fitted on exactly as the fit did."""
    if model_class not in MODEL_CLASSES:
        raise ValueError(f"model_class must be one of {MODEL_CLASSES}, got {model_class!r}")
    e = calibration_entries().get((gpu, engine, precision, model_class))
    f = calibration_factors().get(model_class)
    if e is not None and (f is None or e["file"] != f["file"]):
        # A fit from another file (measured step times of one engine, no serving modes) is
        # used as it stands: model, version and mode factors belong to the fit that made them.
        params = {k: float(v) for k, v in e["params"].items() if k in _FIELDS}
        eff = Efficiency(**{**{k: getattr(DEFAULT_EFFICIENCY, k) for k in _FIELDS}, **params},
                         provenance=_entry_provenance(e, gpu, engine, precision, model_class))
        return _with_held_out(eff, e["file"], model_class)
    if f is None or (e is None and (gpu not in f.get("gpu", {})
                                    or engine not in f.get("engine", {}))):
        return Efficiency(
            provenance=f"defaults (no calibration fit for {gpu}/{engine}/{precision}, "
            f"{model_class} models)"
        )
    tables, used = _level_tables(f, gpu, engine, precision, disagg, group=e is not None)
    if e is not None:
        head = _entry_provenance(e, gpu, engine, precision, model_class)
    else:
        head = (f"calibration {f['file']} ({f.get('fit_date')}): no fit for "
                f"{gpu}/{engine}/{precision}, {model_class} models; composed from the "
                f"{', '.join(u for u in used if not u.startswith('mode '))} factors")
    extra: list[str] = []
    if disagg:
        extra.append(f"disaggregated: the fitted factor of mode {engine}/disagg"
                     if f.get("mode", {}).get(f"{engine}/disagg") is not None
                     else f"disaggregated: no fitted {engine}/disagg factor (as aggregated)")
    found = None if model is None else _model_factor(f.get("model", {}), model)
    if found is not None and model is not None:
        tables.append(found[1])
        extra.append(f"x the fitted factor of {_model_how(found[0], model)}")
    if engine_version is not None:
        factor = f.get("version", {}).get(f"{engine}/{engine_version}")
        if factor is not None:
            tables.append(factor)
            what = (f"engine version {engine} {engine_version}" if engine_version
                    else f"{engine} rows of unrecorded version")
            extra.append(f"x the fitted factor of {what}")
    eff = Efficiency(**_scaled(DEFAULT_EFFICIENCY, tables),
                     provenance="; ".join([head, *extra]))
    return _with_held_out(eff, f["file"], model_class)


def _entry_provenance(e: CalibrationEntry, gpu: str, engine: str, precision: str,
                      model_class: str) -> str:
    err = e.get("mape", {})
    mape = (f"TTFT {err['ttft_pct']}%, TPOT {err['tpot_pct']}%"
            if "ttft_pct" in err and "tpot_pct" in err else "not stated")
    caveat = ("; TTFT fitted on the relative error, predictions below the median "
              "(docs/FIDELITY.md)") if e.get("ttft_loss") == "relative" else ""
    return (f"calibration {e['file']} ({e.get('fit_date')}): {gpu}/{engine}/{precision}, "
            f"{model_class} models, {e.get('rows', '?')} rows, in-sample MAPE {mape}{caveat}")


def _with_held_out(eff: Efficiency, file: str, model_class: str) -> Efficiency:
    """`eff` with the held-out error its calibration file states for the class appended to
    its provenance."""
    phrase = held_out_error(file, model_class)
    return replace(eff, provenance=eff.provenance + phrase) if phrase else eff


#: ModelSpec fields that name, date or describe a model without changing the network it runs.
_NOT_ARCHITECTURE = {"name", "hf_id", "aliases", "family", "max_context_tokens", "native_dtype",
                     "published_params", "published_active_params", "source", "as_of", "note"}


def same_architecture(a: ModelSpec, b: ModelSpec) -> bool:
    """Whether `a` and `b` run the same network: every shape field equal (layers, widths,
    attention, experts, MTP heads); names, sources, context limit and checkpoint dtype aside."""
    return bool(a.model_dump(exclude=_NOT_ARCHITECTURE) == b.model_dump(exclude=_NOT_ARCHITECTURE))


def _model_factor(table: dict[str, Any], model: str | ModelSpec
                  ) -> tuple[str, dict[str, float]] | None:
    """The fitted factor for `model` and the models it comes from: its own, else the mean log
    factor of the fitted models of the same architecture (several checkpoints of one network,
    e.g. DeepSeek-V3, -R1 and -V3.1, each fitted on its own rows); None where neither exists."""
    name = model.name if isinstance(model, ModelSpec) else model
    if name in table:
        return name, table[name]
    models = load_catalog().models
    spec = model if isinstance(model, ModelSpec) else models.get(model)
    if spec is None:
        return None
    twins = [o for o in sorted(table) if o in models and same_architecture(spec, models[o])]
    if not twins:
        return None
    keys = {k for o in twins for k in table[o]}
    mean = {k: sum(float(table[o].get(k, 0.0)) for o in twins) / len(twins) for k in keys}
    return " + ".join(twins), mean


def _model_how(used: str, model: str | ModelSpec) -> str:
    """How a model factor was found, for a provenance: the model's own, or that of the fitted
    models of its architecture."""
    name = model.name if isinstance(model, ModelSpec) else model
    if used == name:
        return f"model {used}"
    if " + " in used:
        return f"models {used} (mean; same architecture as {name})"
    return f"model {used} (same architecture as {name})"
