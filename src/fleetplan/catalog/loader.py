"""Load and validate the packaged catalog YAML; look entries up by name or alias.

Names match case-insensitively, ignoring '-', '_', ' ' and '.', against the entry's name, its
aliases and (models) its Hugging Face id with or without the organisation. An unknown name is a
`UsageError` that lists the closest known names.
"""

from __future__ import annotations

import difflib
import functools
import re
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from fleetplan.catalog.schema import GPU, Catalog, Engine, ModelSpec, Quant
from fleetplan.errors import UsageError

__all__ = ["find", "get_engine", "get_gpu", "get_model", "get_quant", "load_catalog", "normalize"]

T = TypeVar("T", bound=BaseModel)


def normalize(name: str) -> str:
    """Canonical form for matching: lower case, without separators."""
    return re.sub(r"[-_ .]", "", name.strip().lower())


def _load_file(path: Path, cls: type[T]) -> dict[str, T]:
    raw: Any = yaml.safe_load(path.read_text())
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a list of entries at the top level")
    out: dict[str, T] = {}
    for i, entry in enumerate(raw):
        try:
            rec = cls.model_validate(entry)
        except ValidationError as e:
            name = entry.get("name", f"#{i}") if isinstance(entry, dict) else f"#{i}"
            raise ValueError(f"{path}: entry {name}: {e}") from e
        key = rec.name  # type: ignore[attr-defined]
        if key in out:
            raise ValueError(f"{path}: duplicate entry {key}")
        out[key] = rec
    return out


def load_catalog(directory: Path | None = None) -> Catalog:
    """Read every catalog file from `directory` (default: the packaged data)."""
    if directory is None:
        return _packaged()
    return Catalog(
        gpus=_load_file(directory / "gpus.yaml", GPU),
        models=_load_file(directory / "models.yaml", ModelSpec),
        engines=_load_file(directory / "engines.yaml", Engine),
        quants=_load_file(directory / "quants.yaml", Quant),
    )


@functools.cache
def _packaged() -> Catalog:
    base = Path(str(resources.files("fleetplan.catalog") / "data"))
    return load_catalog(base)


def _keys(entry: BaseModel) -> list[str]:
    names = [entry.name, *entry.aliases]  # type: ignore[attr-defined]
    hf = getattr(entry, "hf_id", None)
    if hf:
        names += [hf, hf.split("/")[-1]]
    return [normalize(n) for n in names]


def find(kind: str, name: str, table: dict[str, T], *, where: str | None = None) -> T:
    """Look `name` up in `table`; on a miss, raise with the closest names."""
    want = normalize(name)
    for entry in table.values():
        if want in _keys(entry):
            return entry
    for entry in table.values():  # "meta-llama/Meta-Llama-3.1-70B-Instruct" -> prefix forms
        if any(
            want.startswith(k) and want[len(k) :] in {"instruct", "chat", "it"}
            for k in _keys(entry)
        ):
            return entry
    choices = {k: e.name for e in table.values() for k in _keys(e)}  # type: ignore[attr-defined]
    close = difflib.get_close_matches(want, list(choices), n=5, cutoff=0.4)
    names = list(dict.fromkeys(choices[c] for c in close)) or sorted(table)[:8]
    raise UsageError(
        f"unknown {kind} '{name}'; closest: {', '.join(names)}", where=where or f"--{kind}"
    )


def get_gpu(name: str, *, where: str | None = None) -> GPU:
    return find("gpu", name, load_catalog().gpus, where=where)


def get_model(name: str, *, where: str | None = None) -> ModelSpec:
    return find("model", name, load_catalog().models, where=where)


def get_engine(name: str, *, where: str | None = None) -> Engine:
    return find("engine", name, load_catalog().engines, where=where)


def get_quant(name: str, *, where: str | None = None) -> Quant:
    return find("precision", name, load_catalog().quants, where=where)
