"""Load and validate the packaged catalog YAML; look entries up by name or alias.

Names match case-insensitively, ignoring '-', '_', ' ' and '.', against the entry's name, its
aliases and (models) its Hugging Face id with or without the organisation. A model name that
matches none is tried again without its organisation and without the checkpoint suffixes that
name a post-training variant, a release date or a weight format of the same architecture
(`CHECKPOINT_SUFFIXES`: "nvidia/Qwen3-30B-A3B-FP8", "Qwen/Qwen3-8B-Instruct-2507",
"RedHatAI/Llama-3.1-8B-Instruct-FP8-dynamic"); the precision is the caller's to give. An unknown
name is a `UsageError` that lists the closest known names.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from fleetplan.catalog.schema import GPU, Catalog, Engine, ModelSpec, Quant
from fleetplan.errors import InputFileError, UsageError

__all__ = ["CHECKPOINT_SUFFIXES", "find", "get_engine", "get_gpu", "get_model", "get_quant",
           "load_catalog", "normalize", "strip_checkpoint_suffixes"]

T = TypeVar("T", bound=BaseModel)


def normalize(name: str) -> str:
    """Canonical form for matching: lower case, without separators."""
    return re.sub(r"[-_ .]", "", name.strip().lower())


#: Trailing name tokens that name a variant of one architecture, not another architecture:
#: post-training (instruct, chat, base, thinking), weight formats and quantizers, and
#: four-digit release dates ("2507", "0528"). Stripped one at a time from the end.
CHECKPOINT_SUFFIXES = frozenset({
    "instruct", "chat", "it", "base", "hf", "thinking", "v1", "v0.1",
    "fp8", "fp4", "nvfp4", "mxfp4", "bf16", "fp16", "int4", "int8", "awq", "gptq", "w4a16",
    "w8a8", "w4a8", "w4afp8", "dynamic", "static", "pertensor", "block", "fp8dynamic", "quantized",
})  # fmt: skip
_DATE = re.compile(r"^\d{4}$")


def strip_checkpoint_suffixes(name: str) -> str:
    """`name` without its organisation and trailing `CHECKPOINT_SUFFIXES` / release dates
    ("nvidia/Qwen3-30B-A3B-Instruct-2507-FP8" -> "Qwen3-30B-A3B"); never empty."""
    tokens = re.split(r"[-_ ]", name.strip().split("/")[-1])
    while len(tokens) > 1 and (tokens[-1].lower() in CHECKPOINT_SUFFIXES
                               or _DATE.match(tokens[-1])):
        tokens.pop()
    return "-".join(tokens)


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


#: Normalized name -> entry of the tables looked up most recently (at most `_MAX_INDEXES`),
#: keyed by the table's identity and checked against its current keys and entries.
_INDEXES: OrderedDict[int, tuple[dict[str, Any], tuple[Any, ...], dict[str, Any]]] = (
    OrderedDict())
_MAX_INDEXES = 16


def _index(table: dict[str, T]) -> dict[str, T]:
    """Every normalized key of `table`'s entries -> the first entry (in table order) with it;
    rebuilt when the table's keys or entries change (entries are frozen)."""
    fingerprint = (*table, *map(id, table.values()))
    got = _INDEXES.get(id(table))
    if got is None or got[0] is not table or got[1] != fingerprint:
        idx: dict[str, Any] = {}
        for entry in table.values():
            for k in _keys(entry):
                idx.setdefault(k, entry)
        got = (table, fingerprint, idx)
        _INDEXES[id(table)] = got
        while len(_INDEXES) > _MAX_INDEXES:
            _INDEXES.popitem(last=False)
    _INDEXES.move_to_end(id(table))
    return got[2]


def find(kind: str, name: str, table: dict[str, T], *, where: str | None = None) -> T:
    """Look `name` up in `table`; on a miss, raise with the closest names. An empty (or
    blank) name is an error of its own, never a lookup."""
    if not name.strip():
        raise UsageError(f"{kind} name is empty", where=where or f"--{kind}")
    want = normalize(name)
    hit = _index(table).get(want)
    if hit is not None:
        return hit
    if kind == "model":  # "nvidia/Qwen3-30B-A3B-Instruct-2507-FP8" -> "Qwen3-30B-A3B"
        base = normalize(strip_checkpoint_suffixes(name))
        for entry in table.values():
            names = [entry.name, *entry.aliases, getattr(entry, "hf_id", None) or ""]  # type: ignore[attr-defined]
            if base in {normalize(strip_checkpoint_suffixes(n)) for n in names if n}:
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
    """The catalog model `name` names; a path to a `config.json` (or a directory holding one)
    is converted on the fly (`hf_config.model_from_config`). An empty name is an error, never
    the working directory's config.json."""
    from fleetplan.catalog.hf_config import config_path, model_from_config

    if not name.strip():
        raise UsageError("model name is empty", where=where or "--model")
    path = config_path(name)
    # an explicit path (".json", or starting with /, ., ~) is the file; a bare name is the
    # catalog's even where a folder of that name lies in the working directory
    explicit = name.endswith(".json") or name.startswith(("/", ".", "~"))
    if path is not None and explicit:
        return model_from_config(path)
    try:
        return find("model", name, load_catalog().models, where=where)
    except UsageError:
        if path is not None:
            return model_from_config(path)
        local = Path(name).expanduser()
        given = f" (given as {where or '--model'})"
        if explicit and not local.exists():
            raise InputFileError(f"no such file or directory (a model's config.json){given}",
                                 path=name) from None
        if local.is_dir():
            raise InputFileError(f"the directory holds no config.json{given}",
                                 path=name) from None
        raise


def get_engine(name: str, *, where: str | None = None) -> Engine:
    return find("engine", name, load_catalog().engines, where=where)


def get_quant(name: str, *, where: str | None = None) -> Quant:
    return find("precision", name, load_catalog().quants, where=where)
