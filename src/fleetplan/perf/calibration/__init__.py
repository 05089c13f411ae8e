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


def _composed(gpu: str, engine: str, precision: str, model_class: str) -> Efficiency | None:
    f = calibration_factors().get(model_class)
    if f is None or gpu not in f.get("gpu", {}) or engine not in f.get("engine", {}):
        return None
    used = ["class-wide", f"GPU {gpu}", f"engine {engine}"]
    tables = [f.get("global", {}), f["gpu"][gpu], f["engine"][engine],
              f.get("mode", {}).get(f"{engine}/agg", {})]
    if precision in f.get("precision", {}):
        tables.append(f["precision"][precision])
        used.append(f"precision {precision}")
    pair = f.get("gpu_engine", {}).get(f"{gpu}/{engine}")
    if pair is not None:
        tables.append(pair)
        used.append(f"GPU x engine {gpu}/{engine}")
    return Efficiency(
        **_scaled(DEFAULT_EFFICIENCY, tables),
        provenance=(
            f"calibration {f['file']} ({f.get('fit_date')}): no fit for "
            f"{gpu}/{engine}/{precision}, {model_class} models; composed from the "
            f"{', '.join(used)} factors"
        ),
    )


def efficiency_for(gpu: str, engine: str, precision: str,
                   model_class: str = "dense", model: str | ModelSpec | None = None,
                   engine_version: str | None = None) -> Efficiency:
    """Fitted efficiency for the group and model class, else defaults; `provenance` says
    which. With `model` (catalog name, or the spec itself: a model built from a config.json is
    in no catalog), a fitted or composed result also carries that model's factor, or that of a
    fitted model of the same architecture, where the fit has one (`_with_model`). With
    `engine_version` (as a points file records it; "" for a row that recorded none), it also
    carries the fitted factor of that engine release where the fit has one (`_with_version`);
    None (a plan for an engine release the user does not name) leaves it out."""
    if model_class not in MODEL_CLASSES:
        raise ValueError(f"model_class must be one of {MODEL_CLASSES}, got {model_class!r}")
    e = calibration_entries().get((gpu, engine, precision, model_class))
    if e is None:
        composed = _composed(gpu, engine, precision, model_class)
        if composed is not None:
            eff = _with_version(_with_model(composed, model_class, model), model_class, engine,
                                engine_version)
            return _with_held_out(eff, calibration_factors()[model_class]["file"], model_class)
        return Efficiency(
            provenance=f"defaults (no calibration fit for {gpu}/{engine}/{precision}, "
            f"{model_class} models)"
        )
    params = {k: float(v) for k, v in e["params"].items() if k in _FIELDS}
    # Model factors belong to the fit that made them: a fit from another file (measured step
    # times of another engine) does not take them.
    same_fit = e["file"] == calibration_factors().get(model_class, {}).get("file")
    rows = e.get("rows", "?")
    err = e.get("mape", {})
    loss = e.get("ttft_loss")
    caveat = ("; TTFT fitted on the relative error, predictions below the median "
              "(docs/FIDELITY.md)") if loss == "relative" else ""
    eff = _with_model(Efficiency(
        **{**{k: getattr(DEFAULT_EFFICIENCY, k) for k in _FIELDS}, **params},
        provenance=(
            f"calibration {e['file']} ({e.get('fit_date')}): {gpu}/{engine}/{precision}, "
            f"{model_class} models, {rows} rows, in-sample MAPE {err}{caveat}"
        ),
    ), model_class, model if same_fit else None)
    if same_fit:
        eff = _with_version(eff, model_class, engine, engine_version)
    return _with_held_out(eff, e["file"], model_class)


def _with_version(eff: Efficiency, model_class: str, engine: str, version: str | None
                  ) -> Efficiency:
    """`eff` times the fitted factor of the engine release `version` of `engine` (the
    hierarchy's version level: what that release's points share across models and GPUs; ""
    names the rows that recorded no version), capped as the step time caps it; `eff` unchanged
    where `version` is None or the fit has no factor for it."""
    if version is None:
        return eff
    table = calibration_factors().get(model_class, {}).get("version", {})
    factor = table.get(f"{engine}/{version}")
    if factor is None:
        return eff
    what = (f"engine version {engine} {version}" if version
            else f"{engine} rows of unrecorded version")
    return Efficiency(**_scaled(eff, [factor]),
                      provenance=f"{eff.provenance}; x the fitted factor of {what}")


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


def _with_model(eff: Efficiency, model_class: str, model: str | ModelSpec | None
                ) -> Efficiency:
    """`eff` times the fitted factor of `model` (the hierarchy's model level: what the model's
    measured points, on any system, share beyond the class-wide fit), or of a fitted model of
    the same architecture, capped as the step time caps it; `eff` unchanged for an
    architecture the fit never saw."""
    table = calibration_factors().get(model_class, {}).get("model", {})
    found = None if model is None else _model_factor(table, model)
    if found is None:
        return eff
    used, factor = found
    name = model.name if isinstance(model, ModelSpec) else model
    if used == name:
        how = f"model {used}"
    elif " + " in used:
        how = f"models {used} (mean; same architecture as {name})"
    else:
        how = f"model {used} (same architecture as {name})"
    return Efficiency(**_scaled(eff, [factor]),
                      provenance=f"{eff.provenance}; x the fitted factor of {how}")
