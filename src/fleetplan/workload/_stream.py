"""Streaming load + characterization: a large trace measured in bounded memory.

`load()` takes this path for plain (not gzip) CSV, Parquet and JSONL files of at least
`STREAM_MIN_BYTES` (or when asked with `streaming=True`). The same lazy polars scan and the
same parsing and validation expressions as the in-memory path run through polars' streaming
engine in batches of `CHUNK_ROWS` rows; each batch only updates small accumulators:

- per-value counts of both token columns (a `bincount`; distinct values are few), from which
  percentiles, mean, max, histograms and tail fits follow exactly as in memory;
- requests per whole second since the first request (rate bins, daily profile);
- count, mean and sum of squared deviations of the inter-arrival gaps (merged per batch with
  Chan's formula), for the coefficient of variation;
- per-tenant / per-model request counts and token sums;
- the number of bad rows and the parsed values of the first few, for errors and skip reports.

Memory is the batch plus the accumulators (O(distinct token values + span in seconds +
groups)), not O(rows). The table itself is read only if someone asks for `Workload.table`.

Not streamed (the in-memory path, as before): gzip files (polars decompresses them whole),
traces with `hash_ids` (prefix reuse replays every request's blocks), `workflow_id` (per
workflow lists), OTel and JSON-array files, and files whose timestamps are out of order (the
in-memory path sorts them and warns).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from fleetplan.errors import InputFileError
from fleetplan.workload._model import SkipReport, Workload
from fleetplan.workload._readers import RawTrace
from fleetplan.workload._stats import BINCOUNT_MAX, Counts, seconds_bincount
from fleetplan.workload._validate import (
    MAX_LISTED,
    MAX_SPAN_S,
    arrival_expr,
    bad_outcome,
    bad_row_expr,
    blank_note,
    parse,
    span_error,
    start_epoch,
)

__all__ = [
    "CHUNK_ROWS", "STREAM_MIN_BYTES", "StreamSummary", "StreamedWorkload", "UnsortedError",
    "scan_workload", "streamable",
]

STREAM_MIN_BYTES = 32 * 2**20  # files at least this large are streamed (when they can be)
CHUNK_ROWS = 1_000_000  # rows per streamed batch
GROUP_COLUMNS: tuple[str, ...] = ("tenant", "model")
_IN_MEMORY_ONLY = frozenset({"hash_ids", "workflow_id", "_line"})
_MERGE_EVERY = 32  # re-aggregate per-group partial sums after this many batches


class SpanError(Exception):
    """A batch reaches beyond `MAX_SPAN_S` from the first request (at `index` in the batch)."""

    def __init__(self, span_s: float, index: int) -> None:
        super().__init__(span_s, index)
        self.span_s, self.index = span_s, index


class UnsortedError(Exception):
    """The trace's timestamps are out of order: it takes the in-memory path (which sorts)."""


def streamable(raw: RawTrace, fmt: str) -> bool:
    """Whether the streaming path computes everything `characterize` reports for this trace."""
    return fmt != "otel" and not _IN_MEMORY_ONLY & set(raw.frame.collect_schema().names())


class _ValueCounts:
    """Counts of each non-negative integer value, accumulated batch by batch."""

    def __init__(self) -> None:
        self.dense = np.zeros(0, dtype=np.int64)
        self.sparse: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, arr: np.ndarray) -> None:
        if not arr.size:
            return
        if int(arr.max()) <= BINCOUNT_MAX:
            self.dense = _add_padded(self.dense, np.bincount(arr))
        else:
            values, counts = np.unique(arr, return_counts=True)
            self.sparse.append((values.astype(np.int64), counts.astype(np.int64)))

    def counts(self) -> Counts:
        values = np.flatnonzero(self.dense).astype(np.int64)
        counts = self.dense[values]
        if self.sparse:
            all_v = np.concatenate([values, *(v for v, _ in self.sparse)])
            all_c = np.concatenate([counts, *(c for _, c in self.sparse)])
            uniq = np.unique(all_v, return_inverse=True)
            values = uniq[0]
            counts = np.zeros(values.size, dtype=np.int64)
            np.add.at(counts, uniq[1], all_c)
        return Counts(values, counts.astype(np.int64), np.cumsum(counts))


def _add_padded(acc: np.ndarray, more: np.ndarray) -> np.ndarray:
    if more.size > acc.size:
        acc = np.pad(acc, (0, more.size - acc.size))
    acc[: more.size] += more
    return acc


@dataclass(frozen=True)
class StreamSummary:
    """Everything `characterize` needs from a streamed trace (no per-request data)."""

    requests: int
    span_s: float
    counts_1s: np.ndarray
    input_counts: Counts
    output_counts: Counts
    interarrival_cv: float | None
    groups: dict[str, pl.DataFrame]  # column → per group: requests, input_sum, output_sum
    non_null: dict[str, int]  # optional column → rows where it is set


class _Accumulator:
    """Folds validated batches (sorted by time) into a `StreamSummary`."""

    def __init__(self, ts_dtype: pl.DataType, groups: tuple[str, ...]) -> None:
        self.ts_dtype = ts_dtype
        self.n = 0
        self.first: float | int | None = None
        self.first_row = 0  # row (0-based, in the file's records) of the first request
        self.last_ts: float | int | None = None
        self.last_arrival = 0.0
        self.counts_1s = np.zeros(0, dtype=np.int64)
        self.inp, self.out = _ValueCounts(), _ValueCounts()
        self.gap_n, self.gap_mean, self.gap_m2 = 0, 0.0, 0.0
        self.group_cols = groups
        self.partial: dict[str, list[pl.DataFrame]] = {c: [] for c in groups}
        self.non_null = dict.fromkeys(groups, 0)

    def add(self, b: pl.DataFrame) -> None:
        ts = b["ts"]
        if not ts.is_sorted() or (self.last_ts is not None and ts[0] < self.last_ts):
            raise UnsortedError
        if self.first is None:
            self.first = ts[0]
            self.first_row = int(b["_row"][0]) if "_row" in b.columns else 0
        arrival = b.select(arrival_expr(self.ts_dtype, self.first).alias("a"))["a"]
        if float(arrival[-1]) > MAX_SPAN_S:  # sorted: the last is the furthest
            raise SpanError(float(arrival[-1]), int(arrival.search_sorted(MAX_SPAN_S,
                                                                          side="right")))
        self.counts_1s = _add_padded(self.counts_1s, seconds_bincount(arrival))
        arr = arrival.to_numpy()
        gaps = np.diff(arr) if self.n == 0 else np.diff(arr, prepend=self.last_arrival)
        self._add_gaps(gaps)
        self.inp.add(b["input_tokens"].to_numpy())
        self.out.add(b["output_tokens"].to_numpy())
        for col in self.group_cols:
            self.non_null[col] += b.height - b[col].null_count()
            self.partial[col].append(b.group_by(col).agg(
                pl.len().cast(pl.Int64).alias("requests"),
                pl.col("input_tokens").sum().alias("input_sum"),
                pl.col("output_tokens").sum().alias("output_sum"),
            ))
            if len(self.partial[col]) >= _MERGE_EVERY:
                self.partial[col] = [_merge_groups(self.partial[col], col)]
        self.n += b.height
        self.last_ts, self.last_arrival = ts[-1], float(arr[-1])

    def _add_gaps(self, gaps: np.ndarray) -> None:
        """Chan et al.'s pairwise update of (count, mean, sum of squared deviations)."""
        if not gaps.size:
            return
        n_b, mean_b = gaps.size, float(gaps.mean())
        m2_b = float(np.square(gaps - mean_b).sum())
        n = self.gap_n + n_b
        delta = mean_b - self.gap_mean
        self.gap_m2 += m2_b + delta * delta * self.gap_n * n_b / n
        self.gap_mean += delta * n_b / n
        self.gap_n = n

    def summary(self) -> StreamSummary:
        cv = None
        if self.gap_n >= 2 and self.gap_mean > 0:
            cv = math.sqrt(max(self.gap_m2 / self.gap_n, 0.0)) / self.gap_mean
        return StreamSummary(
            requests=self.n, span_s=self.last_arrival, counts_1s=self.counts_1s,
            input_counts=self.inp.counts(), output_counts=self.out.counts(),
            interarrival_cv=cv,
            groups={c: _merge_groups(self.partial[c], c) for c in self.group_cols},
            non_null=self.non_null,
        )


def _merge_groups(parts: list[pl.DataFrame], col: str) -> pl.DataFrame:
    return pl.concat(parts).group_by(col).agg(
        pl.col("requests").sum(), pl.col("input_sum").sum(), pl.col("output_sum").sum())


class StreamedWorkload(Workload):
    """A `Workload` validated and summarized in one streaming pass.

    `table` is read (through the in-memory path, `reload`) only when first used; `characterize`
    uses `summary` instead. `dataclasses.replace(w, table=...)` gives an ordinary workload.
    """

    summary: StreamSummary | None

    def __init__(  # the dataclass fields, in order, so `dataclasses.replace` works
        self, table: pl.DataFrame | None = None, source: str = "", format: str = "",
        block_tokens: int | None = None, start_epoch_s: float | None = None,
        skipped: SkipReport | None = None, warnings: tuple[str, ...] = (), *,
        summary: StreamSummary | None = None,
        reload: Callable[[], pl.DataFrame] | None = None,
    ) -> None:
        if table is None and (summary is None or reload is None):
            raise ValueError("a StreamedWorkload needs a table, or a summary and a reload")
        fields = {"source": source, "format": format, "block_tokens": block_tokens,
                  "start_epoch_s": start_epoch_s, "skipped": skipped or SkipReport(),
                  "warnings": warnings, "_table": table,
                  "summary": summary if table is None else None, "_reload": reload}
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @property
    def table(self) -> pl.DataFrame:
        """The canonical table, read from the file on first use (O(rows) memory)."""
        cached: pl.DataFrame | None = self.__dict__["_table"]
        if cached is None:
            reload: Callable[[], pl.DataFrame] = self.__dict__["_reload"]
            cached = reload()
            object.__setattr__(self, "_table", cached)
        return cached

    @property
    def requests(self) -> int:
        return self.summary.requests if self.summary else self.table.height

    @property
    def has_hashes(self) -> bool:
        return False if self.summary else super().has_hashes

    def has(self, column: str) -> bool:
        if self.summary:
            return self.summary.non_null.get(column, 0) > 0
        return super().has(column)

    def __repr__(self) -> str:
        return (f"StreamedWorkload(source={self.source!r}, format={self.format!r}, "
                f"requests={self.requests})")


def scan_workload(raw: RawTrace, path: Path, fmt: str, on_error: str, source: str,
                  reload: Callable[[], pl.DataFrame]) -> StreamedWorkload:
    """Validate and summarize a raw trace in one streaming pass; `UnsortedError` if out of order.

    Errors and skip reports are those of the in-memory path (`_validate.to_workload`).
    """
    frame, absolute = parse(raw, path)
    schema = frame.collect_schema()
    ts_dtype = schema["ts"]
    groups = tuple(c for c in GROUP_COLUMNS if c in schema)
    query = frame.with_row_index("_row").with_columns(
        (bad_row_expr(ts_dtype == pl.Float64) & ~pl.col("_blank")).alias("_bad"))
    acc = _Accumulator(ts_dtype, groups)
    rows = n_bad = n_blank = 0
    blank_rows: list[int] = []
    bad_rows: dict[int, dict[str, object]] = {}
    for batch in query.collect_batches(chunk_size=CHUNK_ROWS):
        rows += batch.height
        blank = batch["_blank"]
        if blank.any():  # blank lines: ignored, counted, named in a warning
            n_blank += int(blank.sum())
            blank_rows += batch.filter(blank)["_row"].head(MAX_LISTED - len(blank_rows)).to_list()
        chunk = batch.filter(~blank) if blank.any() else batch
        bad = chunk["_bad"]
        batch_bad = int(bad.sum())
        good = chunk
        if batch_bad:
            n_bad += batch_bad
            for r in chunk.filter(bad).head(MAX_LISTED - len(bad_rows)).iter_rows(named=True):
                bad_rows[int(r["_row"])] = {k: v for k, v in r.items() if k[0] != "_"}
            good = chunk.filter(~bad)
        if good.height and not (n_bad and on_error == "raise"):
            try:
                acc.add(good.drop("_bad", "_blank"))
            except SpanError as e:
                raise span_error(raw, path, e.span_s, (acc.first_row, None),
                                 (int(good["_row"][e.index]), None)) from None
    if rows == 0:
        raise InputFileError("the file has no requests", path=str(path), line=raw.line_offset)
    skipped = bad_outcome(raw, path, on_error, n_bad, bad_rows) if n_bad else SkipReport()
    if acc.n == 0:
        if not skipped:
            raise InputFileError("the file has no requests: every line is blank",
                                 path=str(path))
        raise InputFileError(f"every row is bad: {skipped.describe(str(path))}", path=str(path))
    assert acc.first is not None
    start = start_epoch(ts_dtype, acc.first, absolute)
    notes = (blank_note(path, raw, blank_rows, n_blank),) if n_blank else ()
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=3)
    return StreamedWorkload(None, source, fmt, None, start, skipped, notes,
                            summary=acc.summary(), reload=reload)
