"""OpenTelemetry GenAI spans in OTLP JSON → a `RawTrace`.

Accepts one OTLP document (`{"resourceSpans": [...]}`) or the collector's file exporter output
(one such document per line). A request is a span that carries `gen_ai.usage.input_tokens`
and is not an `invoke_agent` / `execute_tool` / `create_agent` span (agent spans sum the
calls under them and would count tokens twice). Spans are ordered by start time. A workflow
is `gen_ai.conversation.id` when set, else the trace id, so one agent run's calls group
together.
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from fleetplan.errors import InputFileError
from fleetplan.workload._detect import is_gzip

if TYPE_CHECKING:
    from fleetplan.workload._readers import RawTrace

__all__ = ["read_otel"]

AGENT_OPERATIONS = frozenset({"invoke_agent", "execute_tool", "create_agent"})
_VALUE_KEYS = ("stringValue", "intValue", "doubleValue", "boolValue")


class _ShapeError(ValueError):
    """An OTLP object of the wrong JSON type (the message says which; `field` names it)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _attr_value(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _ShapeError(f"an attribute value must be an OTLP AnyValue object such as "
                          f'{{"intValue": "5"}}, got {json.dumps(value)[:40]}')
    for key in _VALUE_KEYS:
        if key in value:
            v = value[key]
            # a whole number written as a double is that number (token counts)
            return int(v) if key == "doubleValue" and isinstance(v, float) and v.is_integer() \
                else v
    if "arrayValue" in value:
        return [_attr_value(v) for v in value["arrayValue"].get("values", [])]
    return None


def _attributes(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    attrs = obj.get("attributes", [])
    if not isinstance(attrs, list):
        raise _ShapeError("'attributes' must be a list of {\"key\": ..., \"value\": ...} "
                          f"objects, got {json.dumps(attrs)[:40]}", field="attributes")
    for kv in attrs:
        if isinstance(kv, dict) and "key" in kv:
            key = kv["key"]
            if key in out:  # which value is meant is ambiguous: not resolved silently
                raise _ShapeError(f"attribute '{key}' appears twice in the span's attributes",
                                  field=str(key))
            out[key] = _attr_value(kv.get("value", {}) or {})
    return out


def _documents(path: Path) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """(line, document) pairs: line is None for a single (possibly pretty-printed) document."""
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rt", encoding="utf-8-sig") as f:  # a byte-order mark is skipped
        text = f.read()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        yield None, doc
        return
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            one = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputFileError(f"invalid JSON: {e.msg}", path=str(path), line=n) from e
        if not isinstance(one, dict):
            raise InputFileError("expected an OTLP JSON object", path=str(path), line=n)
        yield n, one


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    items = obj.get(key, []) or []
    if not isinstance(items, list):
        raise _ShapeError(f"'{key}' must be a list, got {type(items).__name__}")
    for item in items:
        if not isinstance(item, dict):
            raise _ShapeError(f"each of '{key}' must be an object, got {json.dumps(item)[:40]}")
    return items


def _spans(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for rs in _list(doc, "resourceSpans"):
        for ss in _list(rs, "scopeSpans"):
            yield from _list(ss, "spans")


def _row(span: dict[str, Any], attrs: dict[str, Any], line: int | None, n: int) -> dict[str, Any]:
    conv = attrs.get("gen_ai.conversation.id")
    out_tokens = attrs.get("gen_ai.usage.output_tokens")
    in_tokens = attrs.get("gen_ai.usage.input_tokens")
    return {
        "ts": None if span.get("startTimeUnixNano") is None else str(span["startTimeUnixNano"]),
        "input_tokens": None if in_tokens is None else str(in_tokens),
        "output_tokens": None if out_tokens is None else str(out_tokens),
        "model": attrs.get("gen_ai.request.model") or attrs.get("gen_ai.response.model"),
        "workflow_id": str(conv) if conv is not None else span.get("traceId"),
        "_line": line if line is not None else n,
    }


def _check_unit(rows: list[dict[str, Any]], path: Path) -> None:
    """Times that are all Unix seconds or milliseconds of this era written where OTLP wants
    nanoseconds (1e8 <= t < 1e15 ns is 0.1 s to 12 days after 1970-01-01)."""
    times = [int(r["ts"]) for r in rows if r["ts"] is not None and str(r["ts"]).isdigit()]
    if times and min(times) >= 1e8 and max(times) < 1e15:
        raise InputFileError(
            f"startTimeUnixNano {max(times)} is {max(times) / 1e9:.3g} s after 1970-01-01: the "
            "times look like seconds or milliseconds since the epoch; OTLP writes nanoseconds",
            path=str(path), field="startTimeUnixNano")


def read_otel(path: Path) -> RawTrace:
    """Read GenAI spans; returns a RawTrace with string columns (validated downstream)."""
    rows: list[dict[str, Any]] = []
    n = 0
    single_doc = True
    seen: dict[tuple[Any, Any], str] = {}
    duplicates: list[str] = []
    for line, doc in _documents(path):
        single_doc = single_doc and line is None
        try:
            for span in _spans(doc):
                n += 1
                where = f"line {line}" if line is not None else f"span {n}"
                attrs = _attributes(span)
                if attrs.get("gen_ai.operation.name") in AGENT_OPERATIONS:
                    continue
                # an LLM call: it reports token usage (a call with output but no input
                # tokens is a row with a missing value, reported downstream, not dropped)
                if not {"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"} & set(attrs):
                    continue
                key = (span.get("traceId"), span.get("spanId"))
                if key[1] is not None and key in seen:
                    duplicates.append(f"{where} repeats {seen[key]}")
                    continue
                seen.setdefault(key, where)
                rows.append(_row(span, attrs, line, n))
        except _ShapeError as e:
            raise InputFileError(f"span {n}: {e}" if line is None and n else str(e),
                                 path=str(path), line=line, field=e.field) from None
    if duplicates:
        warnings.warn(f"{path}: ignored {len(duplicates)} span(s) whose traceId and spanId "
                      f"appeared before ({'; '.join(duplicates[:3])}"
                      f"{', ...' if len(duplicates) > 3 else ''})", UserWarning, stacklevel=3)
    _check_unit(rows, path)
    if not rows:
        raise InputFileError(
            "no GenAI spans with gen_ai.usage.input_tokens: no requests", path=str(path), line=1,
        )
    schema = {"ts": pl.String, "input_tokens": pl.String, "output_tokens": pl.String,
              "model": pl.String, "workflow_id": pl.String, "_line": pl.Int64}
    # OTLP exports spans in no particular order (often by end time): order by start here,
    # so an out-of-order export is not reported as an unsorted trace.
    frame = pl.DataFrame(rows, schema=schema).lazy().sort(
        pl.col("ts").cast(pl.Int64, strict=False), nulls_last=True, maintain_order=True)
    from fleetplan.workload._readers import RawTrace

    fields = {"timestamp": "startTimeUnixNano", "input_tokens": "gen_ai.usage.input_tokens",
              "output_tokens": "gen_ai.usage.output_tokens", "model": "gen_ai.request.model",
              "workflow_id": "gen_ai.conversation.id"}
    # In a single pretty-printed document `_line` is the span's ordinal, not a line.
    return RawTrace(frame, fields, None, "ns", record_noun="span" if single_doc else "line")
