"""`fleetplan catalog list|show`: browse the sourced catalog."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.table import Table

from fleetplan.catalog import GPU, Engine, ModelSpec, Quant, find, load_catalog
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
    quant = "quant"


def _table_for(kind: Kind) -> Table:
    cat = load_catalog()
    if kind is Kind.gpus:
        t = Table("name", "memory GiB", "HBM TB/s", "BF16 TFLOP/s", "FP8", "FP4", "link GB/s",
                  "$/h")
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
            "name", "hf id", "params B", "active B", "layers", "attention", "KV B/token", "ctx"
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
                f"{e.kv_block_tokens.value:.0f}",
                f"{e.max_num_seqs.value:.0f}",
                f"{e.max_num_batched_tokens.value:.0f}",
            )
    else:
        t = Table("name", "weight B", "activation B", "KV B", "computes in", "quality cost")
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
    kind: Annotated[Kind | None, typer.Argument(help="gpus, models, engines or quant")] = None,
) -> None:
    """List catalog entries (all kinds when none is given)."""
    for k in [kind] if kind else list(Kind):
        t = _table_for(k)
        t.title = k.value
        console.print(t)


def _lookup(name: str) -> BaseModel:
    cat = load_catalog()
    tables: list[tuple[str, dict[str, Any]]] = [
        ("model", cat.models),
        ("gpu", cat.gpus),
        ("engine", cat.engines),
        ("precision", cat.quants),
    ]
    for kind, table in tables:
        try:
            return find(kind, name, table, where="NAME")  # type: ignore[no-any-return]
        except UsageError:
            continue
    every = {**cat.models, **cat.gpus, **cat.engines, **cat.quants}
    return find("catalog entry", name, every, where="NAME")


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
    name: Annotated[str, typer.Argument(help="a GPU, model, engine or precision name or alias")],
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
    t = Table("field", "value", "source", "as of", show_lines=False)
    _rows(t, "", data)
    console.print(t)


def _rows(t: Table, prefix: str, data: dict[str, Any]) -> None:
    for key, val in data.items():
        path = f"{prefix}{key}"
        if isinstance(val, dict) and "value" in val and "source" in val:
            t.add_row(path, f"{val['value']:,.6g}", str(val["source"]), str(val["as_of"]))
        elif isinstance(val, dict) and "supported" in val:
            t.add_row(path, str(val["supported"]), str(val["source"]), str(val["as_of"]))
        elif isinstance(val, dict):
            _rows(t, f"{path}.", val)
        elif key not in {"source", "as_of"}:
            t.add_row(path, f"{val:,}" if isinstance(val, int | float) else str(val), "", "")
        else:
            t.add_row(path, str(val), "", "")
