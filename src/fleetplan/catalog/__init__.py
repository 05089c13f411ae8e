"""Catalog: GPUs, models, engines and quantization formats as sourced, validated data."""

from fleetplan.catalog.loader import (
    find,
    get_engine,
    get_gpu,
    get_model,
    get_quant,
    load_catalog,
    normalize,
)
from fleetplan.catalog.schema import (
    GPU,
    AttentionSpec,
    Catalog,
    Engine,
    EngineFeature,
    Fig,
    Interconnect,
    ModelSpec,
    MoESpec,
    Quant,
)

__all__ = [
    "GPU",
    "AttentionSpec",
    "Catalog",
    "Engine",
    "EngineFeature",
    "Fig",
    "Interconnect",
    "MoESpec",
    "ModelSpec",
    "Quant",
    "find",
    "get_engine",
    "get_gpu",
    "get_model",
    "get_quant",
    "load_catalog",
    "normalize",
]
