"""`fleetplan catalog list|show`: browse the sourced catalog."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.table import Table

from fleetplan.catalog import GPU, Engine, ModelSpec, Quant, find, load_catalog
from fleetplan.catalog.hf_config import config_path, model_from_config
from fleetplan.cli._app import app, console
from fleetplan.errors import UsageError
from fleetplan.perf import kv_bytes_per_token, weights_bytes
from fleetplan.perf.params import active_param_count, param_count

catalog_app = typer.Typer(help="Browse GPUs, models, engines and quantization formats.")
app.add_typer(catalog_app, name="catalog")


class Kind(str, Enum):
    gpus = "gpus"
    models = "models"
    engines = "engines"
    quants = "quants"
    quant = "quant"  # the singular, as earlier releases spelt it


ALL_KINDS = [Kind.gpus, Kind.models, Kind.engines, Kind.quants]


def _table_for(kind: Kind) -> Table:
    cat = load_catalog()
    if kind is Kind.gpus:
        t = Table("name", "memory GiB", "HBM TB/s", "BF16 TFLOP/s", "FP8 TFLOP/s",
                  "FP4 TFLOP/s", "link GB/s", "$/h")
        for g in cat.gpus.values():
            f = g.flops_per_s
            t.add_row(
                g.name,
                f"{g.memory_bytes.value / 2**30:.1f}",
                f"{g.hbm_bytes_per_s.value / 1e12:.2f}",
                f"{f['bf16'].value / 1e12:.0f}",
                f"{f['fp8'].value / 1e12:.0f}" if "fp8" in f else "-",
                f"{f['fp4'].value / 1e12:.0f}" if "fp4" in f else "-",
                f"{g.interconnect.bytes_per_s.value / 1e9:.0f}",
                f"{g.price_usd_per_hour.value:.2f}",
            )
    elif kind is Kind.models:
        t = Table(
            "name", "hf id", "params (bn)", "active (bn)", "layers", "attention",
            "KV bytes/token (bf16)", "ctx",
        )
        for m in cat.models.values():
            t.add_row(
                m.name,
                m.hf_id,
                f"{param_count(m) / 1e9:.1f}",
                f"{active_param_count(m) / 1e9:.1f}",
                str(m.num_layers),
                m.attention.kind,
                f"{kv_bytes_per_token(m, 2.0):,.0f}",
                f"{m.max_context_tokens:,}",
            )
    elif kind is Kind.engines:
        t = Table("name", "features", "quantizations", "block", "max seqs", "batched tokens")
        for e in cat.engines.values():
            feats = ", ".join(k for k, v in e.features.items() if v.supported)
            t.add_row(
                e.name,
                feats,
                ", ".join(e.quantizations),
                f"{e.kv_block_tokens.value:,.0f}",
                f"{e.max_num_seqs.value:,.0f}",
                f"{e.max_num_batched_tokens.value:,.0f}",
            )
    else:
        t = Table("name", "bytes/weight", "bytes/activation", "KV bytes/value", "computes in",
                  "quality cost")
        for q in cat.quants.values():
            t.add_row(
                q.name,
                f"{q.weight_bytes:g}",
                f"{q.activation_bytes:g}",
                f"{q.kv_bytes:g}",
                q.compute_dtype,
                f"{q.quality_cost.value:.1%}",
            )
    return t


@catalog_app.command("list")
def list_(
    kind: Annotated[Kind | None, typer.Argument(help="gpus, models, engines or quants")] = None,
) -> None:
    """List catalog entries (all kinds when none is given)."""
    for k in [kind] if kind else ALL_KINDS:
        t = _table_for(k)
        t.title = k.value
        console.print(t)


def _looks_like_path(name: str) -> bool:
    """`./x`, `/x`, `~/x`, or an `org/name` that exists on disk (else it is an HF id)."""
    return name.startswith(("/", ".", "~")) or ("/" in name and Path(name).exists())


def _lookup(name: str) -> BaseModel:
    """The catalog entry `name` names; a path to a config.json (or a folder holding one) is
    the model converted from it."""
    where = "catalog show"
    if _looks_like_path(name):  # never a fuzzy catalog suggestion for a path
        path = config_path(name)
        if path is not None:
            return model_from_config(path)
        p = Path(name).expanduser()
        why = "no such file or folder"
        if p.is_dir():
            why = "a folder with no config.json"
        elif p.exists():
            why = "not a config.json"
        raise UsageError(f"unknown catalog entry '{name}' ({why})", where=where)
    cat = load_catalog()
    tables: list[tuple[str, dict[str, Any]]] = [
        ("model", cat.models),
        ("gpu", cat.gpus),
        ("engine", cat.engines),
        ("precision", cat.quants),
    ]
    for kind, table in tables:
        try:
            return find(kind, name, table, where=where)  # type: ignore[no-any-return]
        except UsageError:
            continue
    every = {**cat.models, **cat.gpus, **cat.engines, **cat.quants}
    return find("catalog entry", name, every, where=where)


def describe(entry: BaseModel) -> dict[str, Any]:
    """The entry as JSON data, with derived figures for models (params, KV bytes per token)."""
    data: dict[str, Any] = entry.model_dump(mode="json")
    if isinstance(entry, ModelSpec):
        native = load_catalog().quants.get(entry.native_dtype)
        kv_b = native.kv_bytes if native else 2.0
        w_b = native.weight_bytes if native else 2.0
        data["params"] = param_count(entry)
        data["active_params"] = active_param_count(entry)
        data["kv_bytes_per_token"] = kv_bytes_per_token(entry, kv_b)
        data["weights_bytes"] = weights_bytes(entry, w_b)
        data["derived_from"] = "fleetplan.perf.params / fleetplan.perf.memory formulas"
    return data


@catalog_app.command("show")
def show(
    name: Annotated[str, typer.Argument(
        help="a GPU, model, engine or precision name or alias, or a model's config.json "
             "(or a folder holding one)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
) -> None:
    """Show one catalog entry with every figure's source and date."""
    entry = _lookup(name)
    data = describe(entry)
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    kind = {GPU: "GPU", ModelSpec: "model", Engine: "engine", Quant: "precision"}[type(entry)]
    console.print(f"[bold]{data['name']}[/] ({kind})")
    t = Table("field", "value", "source", "as of")
    t.columns[1].overflow = t.columns[2].overflow = "fold"  # sources and URLs in full
    _rows(t, "", data)
    console.print(t)


def _size(v: float) -> str:
    """Bytes with a binary unit beside: `79.6 GiB (85,520,809,984 bytes)`."""
    exact = f"{_num(v)} byte{'' if v == 1 else 's'}"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if v >= size:
            return f"{v / size:,.1f} {unit} ({exact})"
    return exact


def _num(v: float) -> str:
    """`8,192` for whole numbers (no `.0`), else up to 6 significant digits."""
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.6g}"


def _human(path: str, v: Any) -> str:
    """A value as a person reads it: yes/no, comma-joined lists, numbers in units by the
    field's name (the catalog holds raw SI numbers; `--json` prints those)."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ", ".join(map(str, v))
    if not isinstance(v, int | float):
        return str(v)
    leaf = path.rsplit(".", 1)[-1]
    if path.startswith("flops_per_s."):
        return f"{_num(round(v / 1e12, 1))} {'TOP/s' if leaf.startswith('int') else 'TFLOP/s'}"
    if leaf.endswith("bytes_per_s"):
        return f"{_num(round(v / 1e12, 2))} TB/s" if v >= 1e12 else f"{_num(v / 1e9)} GB/s"
    if "bytes" in leaf:
        return _size(v)
    if leaf.endswith("params"):  # published figures are rounded; derived counts are exact
        exact = f" ({v:,})" if isinstance(v, int) else ""
        return f"{_num(round(v / 1e9, 1))} B params{exact}"
    if leaf.endswith("_s"):  # a latency
        scale, unit = (1e6, "µs") if v < 1e-3 else (1e3, "ms") if v < 1 else (1, "s")
        return f"{_num(v * scale)} {unit}"
    if leaf.endswith("_w"):
        return f"{_num(v)} W"
    if leaf.endswith("usd_per_hour"):
        return f"${v:,.2f}/h"
    if leaf in {"quality_cost", "gpu_memory_utilization"}:
        return f"{v:.1%}"
    return _num(v)


def _rows(t: Table, prefix: str, data: dict[str, Any]) -> None:
    """One row per field; fields that do not apply (None or empty) are left out."""
    for key, val in data.items():
        path = f"{prefix}{key}"
        if val is None or val in ("", [], {}):
            continue
        if isinstance(val, dict) and "source" in val and ("value" in val or "supported" in val):
            shown = val["value"] if "value" in val else val["supported"]
            t.add_row(path, _human(path, shown), str(val["source"]), str(val["as_of"]))
        elif isinstance(val, dict):
            _rows(t, f"{path}.", val)
        else:
            t.add_row(path, _human(path, val), "", "")
