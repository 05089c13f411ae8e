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


def _attr_value(value: dict[str, Any]) -> Any:
    for key in _VALUE_KEYS:
        if key in value:
            return value[key]
    if "arrayValue" in value:
        return [_attr_value(v) for v in value["arrayValue"].get("values", [])]
    return None


def _attributes(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in obj.get("attributes", []) or []:
        if isinstance(kv, dict) and "key" in kv:
            out[kv["key"]] = _attr_value(kv.get("value", {}) or {})
    return out


def _documents(path: Path) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """(line, document) pairs: line is None for a single (possibly pretty-printed) document."""
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rt", encoding="utf-8") as f:
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


def _spans(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for rs in doc.get("resourceSpans", []) or []:
        for ss in rs.get("scopeSpans", []) or []:
            yield from ss.get("spans", []) or []


def _row(span: dict[str, Any], attrs: dict[str, Any], line: int | None, n: int) -> dict[str, Any]:
    conv = attrs.get("gen_ai.conversation.id")
    out_tokens = attrs.get("gen_ai.usage.output_tokens")
    return {
        "ts": None if span.get("startTimeUnixNano") is None else str(span["startTimeUnixNano"]),
        "input_tokens": str(attrs.get("gen_ai.usage.input_tokens")),
        "output_tokens": None if out_tokens is None else str(out_tokens),
        "model": attrs.get("gen_ai.request.model") or attrs.get("gen_ai.response.model"),
        "workflow_id": str(conv) if conv is not None else span.get("traceId"),
        "_line": line if line is not None else n,
    }


def read_otel(path: Path) -> RawTrace:
    """Read GenAI spans; returns a RawTrace with string columns (validated downstream)."""
    rows: list[dict[str, Any]] = []
    n = 0
    single_doc = True
    for line, doc in _documents(path):
        single_doc = single_doc and line is None
        for span in _spans(doc):
            n += 1
            attrs = _attributes(span)
            if attrs.get("gen_ai.operation.name") in AGENT_OPERATIONS:
                continue
            if "gen_ai.usage.input_tokens" not in attrs:
                continue
            rows.append(_row(span, attrs, line, n))
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
