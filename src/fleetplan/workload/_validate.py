"""Raw trace → validated canonical `Workload`: parse, check, locate bad rows, sort.

Validation is vectorized: the whole table is parsed in one polars pass and bad rows show up as
nulls or negatives. Only when some exist are the raw values of the first few bad rows read
again, to say which field was wrong and why, at which file line.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import polars as pl

from fleetplan.errors import InputFileError, UsageError
from fleetplan.workload._model import SkipReport, Workload
from fleetplan.workload._readers import RawTrace

__all__ = [
    "MAX_SPAN_S", "MAX_TOKENS", "arrival_expr", "bad_outcome", "bad_row_expr", "blank_note",
    "diagnose", "parse",
    "span_error", "start_epoch", "to_workload",
]

_NS_PER_UNIT = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}
_TZ = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")
_NUMERIC = re.compile(r"^\s*[+-]?\d+(\.\d*)?([eE][+-]?\d+)?\s*$")
_EPOCH_MIN_S = 1e8  # numeric times above this (1973) are read as Unix epoch seconds
MAX_LISTED = 5  # bad rows named in an error / skip report
#: Longest span of arrival times read (the rate statistics keep one counter per second: a
#: mistyped year would otherwise ask for gigabytes).
MAX_SPAN_S = 366 * 86400.0


def _token_expr(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if dtype.is_integer():
        return col.cast(pl.Int64)
    if dtype.is_float():
        return pl.when(col == col.floor()).then(col).otherwise(None).cast(pl.Int64, strict=False)
    if dtype == pl.String:  # a whole number written as a float ("12.0", "1e3") is that number
        text = col.str.strip_chars()
        number = text.cast(pl.Float64, strict=False)
        return pl.coalesce(text.cast(pl.Int64, strict=False),
                           pl.when(number == number.floor()).then(number).otherwise(None)
                           .cast(pl.Int64, strict=False))
    if dtype == pl.Null:
        return col.cast(pl.Int64)
    raise TypeError(f"a token count column of type {dtype}")


def _first_value(frame: pl.LazyFrame) -> object:
    head = frame.select("ts").drop_nulls().head(1).collect()
    return head.item() if head.height else None


def _ts_expr(raw: RawTrace, dtype: pl.DataType) -> tuple[pl.Expr, bool]:
    """(expr giving int ns since epoch, or float s; True when the result is an absolute time)."""
    col = pl.col("ts")
    unit = raw.ts_unit
    if isinstance(dtype, pl.Datetime) or dtype == pl.Date:
        return col.cast(pl.Datetime("ns")).dt.epoch("ns"), True
    if dtype == pl.String:
        sample = _first_value(raw.frame)
        text = str(sample) if sample is not None else ""
        if unit not in ("datetime", "auto") or _NUMERIC.match(text):
            factor = _NS_PER_UNIT.get(unit, 1e9)
            return col.str.strip_chars().cast(pl.Float64, strict=False) * (factor / 1e9), False
        if _TZ.search(text.strip()):
            parsed = col.str.strip_chars().str.to_datetime(
                "%+", strict=False, time_unit="ns", time_zone="UTC")
        else:
            parsed = col.str.strip_chars().str.replace("T", " ", literal=True).str.to_datetime(
                "%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="ns")
        return parsed.dt.epoch("ns"), True
    if dtype.is_numeric():
        factor = _NS_PER_UNIT.get(unit, 1e9)  # "datetime"/"auto" on numbers: seconds
        return col.cast(pl.Float64) * (factor / 1e9), False
    raise TypeError(f"a timestamp column of type {dtype}")


def _find_type_error(raw: RawTrace) -> None:
    """Where the reader can (JSONL), raise the error naming the first line of the wrong type."""
    if raw.find_type_error is not None:
        raw.find_type_error()


def parse(raw: RawTrace, path: Path) -> tuple[pl.LazyFrame, bool]:
    schema = raw.frame.collect_schema()
    try:
        ts, absolute = _ts_expr(raw, schema["ts"])
        exprs = [ts.alias("ts"), _token_expr("input_tokens", schema["input_tokens"]).alias(
            "input_tokens"), _token_expr("output_tokens", schema["output_tokens"]).alias(
            "output_tokens")]
    except TypeError as e:
        _find_type_error(raw)
        raise InputFileError(f"unsupported column type: {e}", path=str(path)) from e
    for name in ("tenant", "model", "workflow_id"):
        if name in schema:
            exprs.append(pl.col(name).cast(pl.String))
    if "hash_ids" in schema:
        kind = schema["hash_ids"]
        inner = kind.inner if isinstance(kind, pl.List) else None
        if inner is None or not (inner.is_integer() or inner == pl.Null):
            _find_type_error(raw)
            raise InputFileError(
                f"hash_ids must hold a list of integer block hashes per request; the column "
                f"is {kind}", path=str(path), field=raw.fields.get("hash_ids", "hash_ids"))
        exprs.append(pl.col("hash_ids").cast(pl.List(pl.Int64)))
    if "_line" in schema:
        exprs.append(pl.col("_line"))
    exprs.append(blank_expr(schema).alias("_blank"))
    return raw.frame.select(exprs), absolute


def _empty(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if dtype == pl.String:
        return col.is_null() | (col.str.strip_chars() == "")
    return col.is_null()  # a typed column holds no empty strings (and is not cast: speed)


def blank_expr(schema: pl.Schema) -> pl.Expr:
    """True for a raw row without a timestamp or either token count (a blank line, or a line
    of bare separators): it holds nothing to lose, so it is ignored and counted, not an error."""
    return (_empty("ts", schema["ts"]) & _empty("input_tokens", schema["input_tokens"])
            & _empty("output_tokens", schema["output_tokens"]))


def blank_note(path: Path, raw: RawTrace, rows: list[int], count: int) -> str:
    """The warning for `count` ignored blank rows (`rows`: the first few, 0-based)."""
    where = ", ".join(str(_location(raw, r, None)[0] or f"row {r + 1}") for r in rows)
    more = ", ..." if count > len(rows) else ""
    what = "1 blank line" if count == 1 else f"{count} blank lines"
    label = "line" if count == 1 else "lines"
    return f"{path}: ignored {what} without a timestamp or token counts " \
        f"({label} {where}{more})"


#: Most tokens one request may hold, input or output: thousands of times any model's context,
#: and small enough that sums over a trace's rows stay exact in 64 bits (a count beyond it is a
#: wrong column or unit, not a request).
MAX_TOKENS = 2**31 - 1


def bad_row_expr(ts_is_float: bool) -> pl.Expr:
    """True for a row that fails validation (null / negative / NaN fields, a token count
    beyond `MAX_TOKENS`)."""
    mask = (
        pl.col("ts").is_null() | pl.col("input_tokens").is_null()
        | pl.col("output_tokens").is_null() | (pl.col("input_tokens") < 0)
        | (pl.col("output_tokens") < 0) | (pl.col("input_tokens") > MAX_TOKENS)
        | (pl.col("output_tokens") > MAX_TOKENS)
    )
    if ts_is_float:
        mask = mask | pl.col("ts").is_nan() | pl.col("ts").is_infinite() | (pl.col("ts") < 0)
    return mask


def _hash_bad_expr(block_tokens: int | None) -> pl.Expr:
    """True for a row whose hash_ids hold a null, or more blocks than its input tokens fill
    (one hash per block of `block_tokens`, the last block may be partial; fewer is allowed)."""
    hashes = pl.col("hash_ids")
    bad = hashes.list.len() != hashes.list.drop_nulls().list.len()
    if block_tokens is not None:
        bad = bad | (hashes.list.len() > (pl.col("input_tokens") + block_tokens - 1)
                     // block_tokens)
    return bad.fill_null(False)


def _bad_mask(df: pl.DataFrame, block_tokens: int | None) -> pl.Series:
    bad = bad_row_expr(df["ts"].dtype == pl.Float64)
    if "hash_ids" in df.columns:
        bad = bad | _hash_bad_expr(block_tokens)
    return df.select((bad & ~pl.col("_blank")).alias("bad"))["bad"]


def _location(raw: RawTrace, row: int, line_col: int | None) -> tuple[int | None, str]:
    if line_col is not None:
        return (line_col, "") if raw.record_noun == "line" else (None, f"span {line_col}: ")
    if raw.line_of is not None:
        return raw.line_of(row), ""
    if raw.line_offset is not None:
        return row + raw.line_offset, ""
    return None, f"{raw.record_noun} {row + 1}: "


def _too_big(value: object) -> bool:
    """A whole number (as written) too large for a 64-bit count."""
    try:
        x = float(str(value).strip())
    except ValueError:
        return False
    return math.isfinite(x) and x.is_integer() and abs(x) >= 2.0**63


def _reason(raw_row: dict[str, object], parsed: dict[str, object], raw: RawTrace) -> tuple[
        str, str]:
    """(field name in the file, what is wrong) for one bad row."""
    for canon in ("timestamp", "input_tokens", "output_tokens"):
        key = "ts" if canon == "timestamp" else canon
        value, got = raw_row.get(key), parsed.get(key)
        name = raw.fields.get(canon, canon)
        if value is None:
            return name, f"missing value for {canon}"
        if got is None:
            what = "an unparseable timestamp" if canon == "timestamp" else "a non-numeric or " \
                "non-integer token count"
            if canon != "timestamp" and _too_big(value):
                what = "a token count beyond the 64-bit integer range"
            return name, f"{what}: {value!r}"
        if isinstance(got, int | float) and got < 0:
            return name, f"a negative {'time' if canon == 'timestamp' else 'token count'}: {got}"
        if canon != "timestamp" and isinstance(got, int) and got > MAX_TOKENS:
            return name, f"{got:,} tokens in one request, beyond {MAX_TOKENS:,} (thousands " \
                "of times any model's context: a wrong column or unit?)"
    hashes, tokens = parsed.get("hash_ids"), parsed.get("input_tokens")
    if isinstance(hashes, list):
        name = raw.fields.get("hash_ids", "hash_ids")
        if None in hashes:
            return name, f"entry {hashes.index(None) + 1} of hash_ids is null, not an integer " \
                "block hash"
        block = raw.block_tokens
        if block is not None and isinstance(tokens, int) and len(hashes) > -(-tokens // block):
            return name, f"{len(hashes):,} block hashes for {tokens:,} input tokens: at most " \
                f"{-(-tokens // block):,} (one per {block}-token block, the last may be partial)"
    ts = parsed.get("ts")
    what = "an infinite" if isinstance(ts, float) and math.isinf(ts) else "a not-a-number (NaN)"
    return raw.fields.get("timestamp", "timestamp"), f"{what} timestamp"


def diagnose(raw: RawTrace, parsed_rows: dict[int, dict[str, object]]) -> list[
        tuple[int | None, str, str, str]]:
    """(line, prefix, field, reason) for bad rows, given by row index → their parsed values."""
    bad_rows = list(parsed_rows)
    raw_rows = (raw.frame.with_row_index("_row").filter(pl.col("_row").is_in(bad_rows))
                .collect(engine="streaming"))
    by_row = {int(r["_row"]): r for r in raw_rows.iter_rows(named=True)}
    out = []
    for row, parsed in parsed_rows.items():
        line_col = parsed.get("_line")
        line, prefix = _location(raw, row, int(line_col) if isinstance(line_col, int) else None)
        field, why = _reason(by_row.get(row, {}), parsed, raw)
        out.append((line, prefix, field, why))
    return out


def bad_outcome(raw: RawTrace, path: Path, on_error: str, n_bad: int,
                parsed_rows: dict[int, dict[str, object]]) -> SkipReport:
    """Raise `InputFileError` for the first bad row (on_error="raise") or report the skips."""
    found = diagnose(raw, parsed_rows)
    if on_error == "raise":
        line, prefix, field, why = found[0]
        more = f" ({n_bad} bad rows in all; --on-error skip leaves them out)" if n_bad > 1 else ""
        raise InputFileError(f"{prefix}{why}{more}", path=str(path), line=line, field=field)
    rows = list(parsed_rows)
    lines = tuple(f[0] if f[0] is not None else rows[i] + 1 for i, f in enumerate(found))
    reasons = tuple(f"{f[1]}{f[2]}: {f[3]}" for f in found)
    return SkipReport(n_bad, lines, reasons)


def _handle_bad(raw: RawTrace, df: pl.DataFrame, path: Path, on_error: str) -> tuple[
        pl.DataFrame, SkipReport, tuple[str, ...]]:
    """(the good rows, the skip report, a note on ignored blank rows if any)."""
    blank = df["_blank"]
    n_blank = int(blank.sum())
    notes = (blank_note(path, raw, blank.arg_true().head(MAX_LISTED).to_list(), n_blank),
             ) if n_blank else ()
    mask = _bad_mask(df, raw.block_tokens)
    n_bad = int(mask.sum())
    report = SkipReport()
    if n_bad:
        bad_rows = mask.arg_true().head(MAX_LISTED).to_list()
        report = bad_outcome(raw, path, on_error, n_bad,
                             {row: df.row(row, named=True) for row in bad_rows})
    return df.filter(~mask & ~blank).drop("_blank"), report, notes


def arrival_expr(ts_dtype: pl.DataType, first: float | int) -> pl.Expr:
    """Seconds since the first request, from `ts` (int ns since the epoch, or float s)."""
    if ts_dtype == pl.Int64:
        return (pl.col("ts") - first).cast(pl.Float64) / 1e9
    return pl.col("ts") - first


def start_epoch(ts_dtype: pl.DataType, first: float | int, absolute: bool) -> float | None:
    """Unix time of the first request, or None when the trace's times are relative."""
    if ts_dtype == pl.Int64:
        return first / 1e9
    return float(first) if absolute or first > _EPOCH_MIN_S else None


def _days(span_s: float) -> str:
    days = span_s / 86400
    return f"{days:,.0f}" if days < 1e9 else f"{days:.3g}"


def span_error(raw: RawTrace, path: Path, span_s: float, first: tuple[int, int | None],
               last: tuple[int, int | None]) -> InputFileError:
    """The error for a trace whose requests span more than `MAX_SPAN_S`: `first` and `last`
    are the (0-based row, `_line` or None) of the earliest request and of one beyond the
    limit; the error is placed on the latter."""
    line_a, _ = _location(raw, *first)
    line, prefix = _location(raw, *last)
    since = f" after the first request (line {line_a})" if line_a is not None else ""
    return InputFileError(
        f"{prefix}the requests span {_days(span_s)} days{since}, more than the "
        f"{MAX_SPAN_S / 86400:.0f} fleetplan reads; check the timestamps (a mistyped year or "
        "unit?)", path=str(path), line=line, field=raw.fields.get("timestamp", "timestamp"))


def _check_span(raw: RawTrace, df: pl.DataFrame, path: Path) -> None:
    ts = df["ts"]
    lo, hi = ts.min(), ts.max()
    assert isinstance(lo, int | float) and isinstance(hi, int | float)
    span = (hi - lo) / (1e9 if ts.dtype == pl.Int64 else 1.0)
    if span <= MAX_SPAN_S:
        return
    rows = (int(ts.arg_min() or 0), int(ts.arg_max() or 0))
    lines = [int(df["_line"][r]) if "_line" in df.columns else None for r in rows]
    raise span_error(raw, path, span, (rows[0], lines[0]), (rows[1], lines[1]))


def _finish(df: pl.DataFrame, absolute: bool, path: Path) -> tuple[pl.DataFrame, float | None,
                                                                  tuple[str, ...]]:
    notes: list[str] = []
    if not df["ts"].is_sorted():
        msg = f"{path}: timestamps are not in order; sorted by arrival time"
        warnings.warn(msg, UserWarning, stacklevel=4)
        notes.append(msg)
        df = df.sort("ts", maintain_order=True)
    first = df["ts"][0]
    arrival = arrival_expr(df["ts"].dtype, first)
    start = start_epoch(df["ts"].dtype, first, absolute)
    keep = [c for c in ("tenant", "model", "workflow_id", "hash_ids") if c in df.columns]
    table = df.select(arrival.alias("arrival_s"), "input_tokens", "output_tokens", *keep)
    return table, start, tuple(notes)


def to_workload(raw: RawTrace, path: Path, fmt: str, on_error: str, source: str) -> Workload:
    """Validate a raw trace; raise `InputFileError` on the first bad row or skip bad rows."""
    if on_error not in ("raise", "skip"):
        raise UsageError("on_error must be 'raise' or 'skip'", where="--on-error")
    frame, absolute = parse(raw, path)
    df = frame.collect()
    if df.height == 0:
        raise InputFileError("the file has no requests", path=str(path),
                             line=raw.line_offset)
    df, skipped, blank_notes = _handle_bad(raw, df, path, on_error)
    if df.height == 0:
        if not skipped:
            raise InputFileError("the file has no requests: every line is blank",
                                 path=str(path))
        raise InputFileError(f"every row is bad: {skipped.describe(str(path))}", path=str(path))
    if "hash_ids" in df.columns and raw.block_tokens is None:
        raise UsageError("hash_ids need a block size (block_tokens)", where="--map")
    _check_span(raw, df, path)
    table, start, notes = _finish(df, absolute, path)
    for note in blank_notes:
        warnings.warn(note, UserWarning, stacklevel=3)
    block = raw.block_tokens if "hash_ids" in table.columns else None
    return Workload(table, source, fmt, block, start, skipped, blank_notes + notes)
