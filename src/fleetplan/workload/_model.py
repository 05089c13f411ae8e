"""The canonical Workload: one polars table of requests plus where it came from.

Every reader ends here. Columns (SI units, one row per request, sorted by arrival):

- `arrival_s` (Float64): seconds since the first request of the trace.
- `input_tokens`, `output_tokens` (Int64): prompt and generated tokens, >= 0.
- optional `tenant`, `model`, `workflow_id` (String).
- optional `hash_ids` (List[Int64]): one hash per KV block of `block_tokens` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

__all__ = ["CANONICAL_COLUMNS", "OPTIONAL_COLUMNS", "SkipReport", "Workload"]

CANONICAL_COLUMNS: tuple[str, ...] = ("arrival_s", "input_tokens", "output_tokens")
OPTIONAL_COLUMNS: tuple[str, ...] = ("tenant", "model", "workflow_id", "hash_ids")


@dataclass(frozen=True)
class SkipReport:
    """Rows left out under `on_error="skip"`: how many, and the first few lines and reasons."""

    count: int = 0
    first_lines: tuple[int, ...] = ()
    reasons: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.count > 0

    def describe(self, path: str) -> str:
        """One line for the user, e.g. `skipped 1 bad row of f.csv (line 4: ...)`, `skipped 3
        bad rows of f.csv (lines 4, 9, 12: ...)`."""
        lines = ", ".join(str(n) for n in self.first_lines)
        more = ", ..." if self.count > len(self.first_lines) else ""
        why = "; ".join(self.reasons[:3])
        rows, label = ("1 bad row", "line") if self.count == 1 else (
            f"{self.count:,} bad rows", "lines")
        return f"skipped {rows} of {path} ({label} {lines}{more}: {why})"


@dataclass(frozen=True)
class Workload:
    """A request trace in canonical form, with its provenance.

    `start_epoch_s` is the wall-clock time (Unix seconds, UTC) of `arrival_s == 0`, or None
    when the trace only has relative times (BurstGPT, Mooncake, numeric columns).
    """

    table: pl.DataFrame
    source: str
    format: str
    block_tokens: int | None = None
    start_epoch_s: float | None = None
    skipped: SkipReport = field(default_factory=SkipReport)
    warnings: tuple[str, ...] = ()

    @property
    def requests(self) -> int:
        """Number of requests (rows)."""
        return self.table.height

    @property
    def has_hashes(self) -> bool:
        """Whether the trace carries per-block prefix hashes."""
        return "hash_ids" in self.table.columns

    def has(self, column: str) -> bool:
        """Whether an optional column is present and not entirely null."""
        return column in self.table.columns and self.table[column].null_count() < self.requests
