"""Benchmark recipes: engine and benchmark-client settings a run used that its row does not
record.

`data/recipes.yaml` lists rules copied from public benchmark recipes (each names its source).
`fill(row)` returns the optional setting columns (`SETTING_COLUMNS`) the matching rules give for
a raw calibration row, only for columns the row leaves empty (a value the row gives, 0
included, always wins; where two rules give the same column, the first in the file wins), with
the rules' ids; `read_points` applies it to every row it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

__all__ = ["SETTING_COLUMNS", "Rule", "fill", "rules"]

#: Optional columns of the calibration format that describe the engine's configuration:
#: TensorRT-LLM batch waiting (`batch_wait_timeout_iters`, `batch_wait_max_tokens_ratio`,
#: both 0 = off) and the engine's token budget per step (`max_num_tokens`, TensorRT-LLM; vLLM
#: `max_num_batched_tokens`; empty = the engine's default), the engine's KV memory fraction
#: (`kv_memory_fraction`, in the engine's own sense: TensorRT-LLM
#: `kv_cache_config.free_gpu_memory_fraction` of the memory weights leave free, vLLM
#: `gpu_memory_utilization` and SGLang `mem_fraction_static` of the total; empty = the
#: engine's default); SGLang's scheduler receive interval (`scheduler_recv_interval`,
#: `--scheduler-recv-interval`: decode steps between polls for new requests; empty, 0 or 1 =
#: every step, the default); and the benchmark client's (`range_ratio`: request lengths drawn
#: uniformly from [int(r x L), L]; empty = fixed lengths).
SETTING_COLUMNS = ("batch_wait_timeout_iters", "batch_wait_max_tokens_ratio", "max_num_tokens",
                   "kv_memory_fraction", "scheduler_recv_interval", "range_ratio")
_CONDITIONS = ("backend", "mode", "system", "model_contains", "source_contains", "isl", "osl",
               "tp_below", "tp_at_least", "precision", "min_concurrency")


@dataclass(frozen=True)
class Rule:
    id: str
    source: str
    match: dict[str, Any]
    set: dict[str, float]

    def matches(self, row: dict[str, str], concurrency: int | None = None) -> bool:
        """Whether `row` meets every condition; `concurrency` is the row's client count as
        `points` reads it (`min_concurrency` fails without one)."""
        m = self.match

        def text(key: str) -> str:
            return (row.get(key) or "").strip().lower()

        def num(key: str) -> float | None:
            try:
                return float(text(key))
            except ValueError:
                return None

        if "backend" in m and text("backend") != m["backend"]:
            return False
        if "mode" in m and text("mode") != m["mode"]:
            return False
        if "system" in m and text("system") not in m["system"]:
            return False
        if "model_contains" in m and m["model_contains"] not in text("model_path"):
            return False
        if "source_contains" in m and not any(s in text("silicon_data_source")
                                              for s in m["source_contains"]):
            return False
        for key in ("isl", "osl"):
            if key in m and num(key) != float(m[key]):
                return False
        if "precision" in m and text("precision") not in m["precision"]:
            return False
        tp = num("tp_size")
        if "tp_below" in m and (tp is None or not tp < float(m["tp_below"])):
            return False
        if "tp_at_least" in m and (tp is None or not tp >= float(m["tp_at_least"])):
            return False
        return not ("min_concurrency" in m
                    and (concurrency is None or concurrency < int(m["min_concurrency"])))


@cache
def rules() -> tuple[Rule, ...]:
    """The packaged rules, checked: every rule has an id and a source, known conditions and
    known setting columns."""
    text = (resources.files("fleetplan.calibrate") / "data" / "recipes.yaml").read_text()
    doc = yaml.safe_load(text) or {}
    out = []
    for r in doc.get("rules", []):
        bad = [k for k in r["match"] if k not in _CONDITIONS]
        bad += [k for k in r["set"] if k not in SETTING_COLUMNS]
        if bad or not r.get("id") or not r.get("source"):
            raise ValueError(f"recipes.yaml: rule {r.get('id')!r}: unknown or missing {bad}")
        match = {k: (v.lower() if isinstance(v, str) else v) for k, v in r["match"].items()}
        for key in ("system", "source_contains", "precision"):  # lists: any of them
            if key in match:
                match[key] = [str(s).lower() for s in match[key]]
        out.append(Rule(str(r["id"]), str(r["source"]), match,
                        {k: float(v) for k, v in r["set"].items()}))
    return tuple(out)


def fill(row: dict[str, str], concurrency: int | None = None) -> tuple[dict[str, str], str]:
    """(columns to fill, rule ids joined by '+') for `row` (with `concurrency` clients, as
    `points` reads it): every matching rule's settings for the columns the row leaves empty
    (the first rule in the file that gives a column wins); ({}, "") where no rule matches or
    the row gives them all."""
    add: dict[str, str] = {}
    ids: list[str] = []
    for rule in rules():
        if not rule.matches(row, concurrency):
            continue
        mine = {k: f"{v:g}" for k, v in rule.set.items()
                if not (row.get(k) or "").strip() and k not in add}
        if mine:
            add.update(mine)
            ids.append(rule.id)
    return add, "+".join(ids)
