"""Readers: each trace format → a `RawTrace` (lazy polars frame with canonical column names).

Readers only rename and select; parsing, validation and line numbers live in `_validate`.
CSV, Parquet and JSONL are scanned lazily, so only the selected columns are read. The raw
frame has `ts` (timestamp in any form), `input_tokens`, `output_tokens` and optional
`tenant`, `model`, `workflow_id`, `hash_ids`; `_line` (file line) where rows are not lines.
"""

from __future__ import annotations

import csv
import functools
import gzip
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from fleetplan.errors import InputFileError, UsageError
from fleetplan.workload._detect import (
    duplicate_column,
    head_text,
    is_gzip,
    is_parquet,
    plain_suffix,
)

__all__ = ["MAPPING_KEYS", "RawTrace", "ragged_csv_line", "read_raw"]

MOONCAKE_BLOCK_TOKENS = 512  # Mooncake's KV block: 512 tokens per hash id
#: CSV files up to this size name the exact line of a bad row even where quoted fields span
#: lines (one extra read of the file in the error path); larger ones count one line per row.
EXACT_LINES_MAX_BYTES = 64 * 2**20

MAPPING_KEYS: tuple[str, ...] = (
    "timestamp", "input_tokens", "output_tokens", "tenant", "model", "workflow_id", "hash_ids",
)
# Mapping options that are not columns.
MAPPING_OPTIONS: tuple[str, ...] = ("timestamp_unit", "block_tokens")
TS_UNITS: tuple[str, ...] = ("datetime", "s", "ms", "us", "ns")


@dataclass(frozen=True)
class RawTrace:
    """A lazily read trace with canonical names; `fields` maps canonical → the file's name.

    `line_offset` is the file line of row 0 (2 for a CSV with a header, 1 for JSONL), or None
    when rows are not lines (then `_line` is a column, or errors name the record number).
    `ts_unit` is how to read `ts`: "datetime" (strings or datetimes) or a numeric unit.
    `record_noun` is how errors name a row whose place is not a line ("span", "record").
    """

    frame: pl.LazyFrame
    fields: dict[str, str]
    line_offset: int | None
    ts_unit: str
    block_tokens: int | None = None
    record_noun: str = "line"
    #: file line (1-based) of row `i` where rows and lines do not correspond one to one (JSONL
    #: with blank lines); None: `line_offset` + i
    line_of: Callable[[int], int] | None = None
    #: JSONL: raises `InputFileError` at the first line whose value has the wrong JSON type
    #: (called where a column's type is wrong, to name the line); None for other files
    find_type_error: Callable[[], None] | None = None


def _scan_csv(path: Path, *, as_text: bool) -> pl.LazyFrame:
    return pl.scan_csv(
        path,
        infer_schema=not as_text,
        infer_schema_length=10000,
        truncate_ragged_lines=False,
        low_memory=False,
    )


def _check_columns(path: Path, names: list[str], fields: dict[str, str], line: int | None) -> None:
    for canon in ("timestamp", "input_tokens", "output_tokens"):
        col = fields.get(canon)
        if col is None:
            raise UsageError(f"the column mapping lacks '{canon}'", where="--map")
        if col not in names:
            raise InputFileError(
                f"missing required column '{col}' ({canon}); the file has {names[:12]}",
                path=str(path), line=line, field=col,
            )
    for canon, col in fields.items():
        if col not in names:
            raise InputFileError(
                f"missing column '{col}' named in the mapping for {canon}",
                path=str(path), line=line, field=col,
            )


def _select(frame: pl.LazyFrame, fields: dict[str, str], keep_line: bool = False) -> pl.LazyFrame:
    exprs = [pl.col(fields["timestamp"]).alias("ts")]
    exprs += [pl.col(src).alias(canon) for canon, src in fields.items() if canon != "timestamp"]
    if keep_line:
        exprs.append(pl.col("_line"))
    return frame.select(exprs)


def _present(names: list[str], wanted: dict[str, str]) -> dict[str, str]:
    """Optional fields: keep those whose column exists."""
    return {k: v for k, v in wanted.items() if v in names}


def _csv_like(
    path: Path, fields: dict[str, str], optional: dict[str, str], ts_unit: str,
    *, as_text: bool = False, block_tokens: int | None = None,
) -> RawTrace:
    container = _container(path)
    kinds = {col: canon for canon, col in {**optional, **fields}.items()}
    if container == "parquet":
        frame = pl.scan_parquet(path)
        offset: int | None = None
    elif container == "jsonl":
        frame = _ndjson_text(path, kinds) if as_text else _scan_ndjson(path)
        offset = 1
        if not as_text:
            try:
                frame.collect_schema()
            except pl.exceptions.PolarsError:
                # a line the fast reader cannot parse (invalid JSON, not an object, a BOM, a
                # value of the wrong type): the line-by-line reader names it, or reads the file
                frame = _ndjson_text(path, kinds)
    else:
        duplicate = duplicate_column(path)
        if duplicate is not None:
            name, first, second = duplicate
            raise InputFileError(f"the header names column '{name}' twice (columns {first} "
                                 f"and {second}); which one holds the data is ambiguous",
                                 path=str(path), line=1, field=name)
        frame = _scan_csv(path, as_text=as_text)
        offset = 2
    try:
        names = frame.collect_schema().names()
    except pl.exceptions.NoDataError as e:
        raise InputFileError("the file is empty: no requests", path=str(path), line=1) from e
    except pl.exceptions.PolarsError as e:
        raise InputFileError(f"cannot read the file: {e}", path=str(path), line=1) from e
    all_fields = {**fields, **_present(names, optional)}
    _check_columns(path, names, all_fields, 1 if offset == 2 else None)
    noun = "line" if offset is not None else "row"
    line_of: Callable[[int], int] | None = None
    if container == "jsonl":
        line_of = _LineOf(path, jsonl=True)
    elif container == "csv" and path.stat().st_size <= EXACT_LINES_MAX_BYTES:
        line_of = _LineOf(path, jsonl=False)
    keep_line = "_line" in names
    find_type_error: Callable[[], None] | None = None
    if container == "jsonl":
        used = {col: canon for canon, col in all_fields.items()}
        find_type_error = functools.partial(_first_type_error, path, used)
    return RawTrace(_select(frame, all_fields, keep_line), all_fields, offset, ts_unit,
                    block_tokens, noun, line_of, find_type_error)


def _container(path: Path) -> str:
    """"parquet", "jsonl" (by name, or a first character `{`, whatever the name) or "csv"."""
    if is_parquet(path):
        return "parquet"
    if plain_suffix(path) in (".jsonl", ".json", ".ndjson") or head_text(path, 256).lstrip()[:1] \
            == "{":
        return "jsonl"
    return "csv"


def _csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(file line where it starts, fields) of each CSV record, the header first (a quoted field
    may span lines; a blank line is a record of no fields, as polars counts it)."""
    opener: Callable[..., object] = gzip.open if is_gzip(path) else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as f:  # type: ignore[attr-defined]
        reader = csv.reader(f)
        start = 1
        for rec in reader:
            yield start, rec
            start = reader.line_num + 1


def ragged_csv_line(path: Path) -> tuple[int, int, int] | None:
    """(file line, fields, header fields) of the first CSV record whose field count differs
    from the header's, or None (not a CSV, or every record fits)."""
    if _container(path) != "csv":
        return None
    header: list[str] | None = None
    try:
        for line, rec in _csv_records(path):
            if header is None:
                header = rec
            elif rec and len(rec) != len(header):
                return line, len(rec), len(header)
    except (csv.Error, UnicodeDecodeError):
        return None
    return None


class _LineOf:
    """File line (1-based) of the `row`-th (0-based) record: in JSONL blank lines hold no
    record; in CSV a quoted field may span lines. Read on demand (error paths only: a few
    rows, one pass of the file each)."""

    def __init__(self, path: Path, *, jsonl: bool) -> None:
        self.path, self.jsonl = path, jsonl

    def _starts(self) -> Iterator[int]:
        if not self.jsonl:
            yield from (line for line, _ in itertools.islice(_csv_records(self.path), 1, None))
            return
        opener: Callable[..., object] = gzip.open if is_gzip(self.path) else open
        with opener(self.path, "rt", encoding="utf-8-sig") as f:  # type: ignore[attr-defined]
            yield from (n for n, line in enumerate(f, start=1) if line.strip())

    def __call__(self, row: int) -> int:
        last = 1
        for i, start in enumerate(self._starts()):
            last = start
            if i == row:
                break
        return last


def _scan_ndjson(path: Path) -> pl.LazyFrame:
    if is_gzip(path):
        with gzip.open(path, "rb") as g:
            return pl.read_ndjson(g.read()).lazy()
    return pl.scan_ndjson(path, infer_schema_length=10000)


def _ndjson_records(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """(file line, object) of each non-blank JSONL line; invalid JSON or a line that is not
    an object is an error naming the line."""
    opener: Callable[..., object] = gzip.open if is_gzip(path) else open
    with opener(path, "rt", encoding="utf-8-sig") as f:  # type: ignore[attr-defined]
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputFileError(f"invalid JSON: {e.msg}", path=str(path), line=n) from e
            if not isinstance(rec, dict):
                raise InputFileError("expected a JSON object", path=str(path), line=n)
            yield n, rec


def _show(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_types(path: Path, n: int, rec: dict[str, object], kinds: dict[str, str]) -> None:
    """Raise `InputFileError` for a value of `rec` (at line `n`) of the wrong JSON type:
    `kinds` maps the file's key → the canonical field it feeds. hash_ids must be a list of
    integers (a null entry is left to the row validation, which can skip it); every other
    field a single value (a number or a string; its parsing is validated downstream)."""
    for key, canon in kinds.items():
        value = rec.get(key)
        if value is None:
            continue
        if canon == "hash_ids":
            if not isinstance(value, list):
                raise InputFileError(f"hash_ids must be a list of integer block hashes, got "
                                     f"{_show(value)}", path=str(path), line=n, field=key)
            for i, h in enumerate(value, start=1):
                if h is not None and (isinstance(h, bool) or not isinstance(h, int)
                                      or not -(2**63) <= h < 2**63):
                    what = "beyond the 64-bit integer range" if isinstance(h, int) and not \
                        isinstance(h, bool) else "not an integer"
                    raise InputFileError(
                        f"hash_ids must hold integer block hashes; entry {i} is {what}: "
                        f"{_show(h)}", path=str(path), line=n, field=key)
        elif isinstance(value, list | dict):
            kind = "a list" if isinstance(value, list) else "an object"
            raise InputFileError(f"{canon} must be a single number or string, got {kind}: "
                                 f"{_show(value)}", path=str(path), line=n, field=key)


def _first_type_error(path: Path, kinds: dict[str, str]) -> None:
    """Raise at the first JSONL line whose value has the wrong type (error paths only)."""
    for n, rec in _ndjson_records(path):
        _check_types(path, n, rec, kinds)


def _ndjson_text(path: Path, kinds: dict[str, str]) -> pl.LazyFrame:
    """JSONL read line by line with scalars as text: the slow path that finds a bad line (and
    reads what the fast reader cannot: a byte-order mark); `_line` is each record's line.
    `kinds` maps the keys read (file key → canonical field) and their types are checked; the
    other keys are kept as names only (null columns), so their values cannot break the read."""
    rows: list[dict[str, object]] = []
    names: dict[str, None] = {}
    for n, rec in _ndjson_records(path):
        _check_types(path, n, rec, kinds)
        names.update(dict.fromkeys(rec))
        rows.append({**{k: v if isinstance(v, list) or v is None else str(v)
                        for k, v in rec.items() if k in kinds}, "_line": n})
    if not rows:
        raise InputFileError("the file is empty: no requests", path=str(path), line=1)
    frame = pl.from_dicts(rows, infer_schema_length=None)
    others = [k for k in names if k not in frame.columns]
    return frame.with_columns(pl.lit(None).alias(k) for k in others).lazy()


def read_canonical(path: Path, as_text: bool) -> RawTrace:
    """fleetplan's own table (e.g. from `workload synth`): arrival_s, input/output_tokens."""
    fields = {"timestamp": "arrival_s", "input_tokens": "input_tokens",
              "output_tokens": "output_tokens"}
    optional = {k: k for k in ("tenant", "model", "workflow_id")}
    return _csv_like(path, fields, optional, "s", as_text=as_text)


def read_azure(path: Path, as_text: bool) -> RawTrace:
    """Azure LLM inference traces 2023/2024: TIMESTAMP,ContextTokens,GeneratedTokens."""
    fields = {"timestamp": "TIMESTAMP", "input_tokens": "ContextTokens",
              "output_tokens": "GeneratedTokens"}
    return _csv_like(path, fields, {}, "datetime", as_text=as_text)


def read_burstgpt(path: Path, as_text: bool) -> RawTrace:
    """BurstGPT: Timestamp (s from start), Model, Request tokens, Response tokens, ..."""
    fields = {"timestamp": "Timestamp", "input_tokens": "Request tokens",
              "output_tokens": "Response tokens"}
    return _csv_like(path, fields, {"model": "Model"}, "s", as_text=as_text)


def read_mooncake(path: Path, as_text: bool) -> RawTrace:
    """Mooncake / Qwen-style JSONL: timestamp (ms), input_length, output_length, hash_ids."""
    fields = {"timestamp": "timestamp", "input_tokens": "input_length",
              "output_tokens": "output_length"}
    optional = {"hash_ids": "hash_ids"}
    return _csv_like(path, fields, optional, "ms", as_text=as_text,
                     block_tokens=MOONCAKE_BLOCK_TOKENS)


def read_litellm(path: Path, as_text: bool) -> RawTrace:
    """LiteLLM SpendLogs export (CSV, JSONL or a JSON array of rows)."""
    fields = {"timestamp": "startTime", "input_tokens": "prompt_tokens",
              "output_tokens": "completion_tokens"}
    optional = {"model": "model", "tenant": "team_id", "workflow_id": "session_id"}
    text_head = _first_char(path)
    if text_head == "[":
        rows = _load_json(path)
        frame = pl.from_dicts(rows, infer_schema_length=None).lazy()
        names = frame.collect_schema().names()
        all_fields = {**fields, **_present(names, optional)}
        _check_columns(path, names, all_fields, None)
        return RawTrace(_select(frame, all_fields), all_fields, None, "datetime",
                        record_noun="record")
    return _csv_like(path, fields, optional, "datetime", as_text=as_text)


def read_mapped(path: Path, mapping: dict[str, str], as_text: bool) -> RawTrace:
    """Any CSV / Parquet / JSONL with a user mapping canonical name → column."""
    unknown = set(mapping) - set(MAPPING_KEYS) - set(MAPPING_OPTIONS)
    if unknown:
        raise UsageError(
            f"unknown mapping keys {sorted(unknown)}; use {list(MAPPING_KEYS + MAPPING_OPTIONS)}",
            where="--map",
        )
    unit = mapping.get("timestamp_unit", "auto")
    if unit not in (*TS_UNITS, "auto"):
        raise UsageError(f"timestamp_unit must be one of {TS_UNITS}", where="--map")
    block: int | None = None
    if "block_tokens" in mapping:
        try:
            block = int(mapping["block_tokens"])
        except ValueError as e:
            raise UsageError("block_tokens must be an integer", where="--map") from e
        if block < 1:
            raise UsageError(f"block_tokens must be >= 1, got {block}", where="--map")
    fields = {k: v for k, v in mapping.items() if k in MAPPING_KEYS}
    required = {k: fields[k] for k in ("timestamp", "input_tokens", "output_tokens") if k in fields}
    optional = {k: v for k, v in fields.items() if k not in required}
    raw = _csv_like(path, required, {}, unit, as_text=as_text, block_tokens=block)
    if optional:
        names = _names_of(path)
        all_fields = {**required, **optional}
        _check_columns(path, names, all_fields, 1 if raw.line_offset == 2 else None)
        raw = _csv_like(path, all_fields, {}, unit, as_text=as_text, block_tokens=block)
    if "hash_ids" in fields and block is None:
        raise UsageError("a hash_ids mapping needs block_tokens=N (tokens per block)",
                         where="--map")
    return raw


def _names_of(path: Path) -> list[str]:
    if is_parquet(path):
        return pl.scan_parquet(path).collect_schema().names()
    if _container(path) == "jsonl":
        try:
            return _scan_ndjson(path).collect_schema().names()
        except pl.exceptions.PolarsError:
            return _ndjson_text(path, {}).collect_schema().names()
    return pl.scan_csv(path, infer_schema=False).collect_schema().names()


def _first_char(path: Path) -> str:
    return head_text(path, 256).lstrip()[:1]


def _load_json(path: Path) -> list[dict[str, object]]:
    opener: Callable[..., object] = gzip.open if is_gzip(path) else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as f:  # type: ignore[attr-defined]
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise InputFileError(f"invalid JSON: {e.msg}", path=str(path), line=e.lineno) from e
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InputFileError("expected a JSON array of objects", path=str(path), line=1)
    if not data:
        raise InputFileError("the file is empty: no requests", path=str(path), line=1)
    return data


def read_raw(path: Path, fmt: str, mapping: dict[str, str] | None, *, as_text: bool) -> RawTrace:
    """Dispatch on the format name; `as_text` reads CSV columns as strings (for diagnosis)."""
    if mapping:
        return read_mapped(path, mapping, as_text)
    if fmt == "otel":
        from fleetplan.workload._otel import read_otel

        otel: RawTrace = read_otel(path)
        return otel
    readers: dict[str, Callable[[Path, bool], RawTrace]] = {
        "fleetplan": read_canonical, "azure": read_azure, "burstgpt": read_burstgpt,
        "mooncake": read_mooncake, "litellm": read_litellm,
    }
    if fmt not in readers:
        raise UsageError(
            f"format '{fmt}' needs a column mapping (--map timestamp=...,input_tokens=...,"
            "output_tokens=...)", where="--format",
        )
    return readers[fmt](path, as_text)
