"""Which trace format a file is, from its first bytes and header (never from its whole body)."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import zlib
from pathlib import Path

from fleetplan.errors import InputFileError, UsageError

__all__ = ["FORMATS", "GZIP_ERRORS", "damaged_gzip", "detect_format", "duplicate_column",
           "head_bytes", "head_text", "header_line", "is_gzip", "is_parquet", "plain_suffix",
           "utf8_error"]

FORMATS: tuple[str, ...] = (
    "fleetplan", "azure", "burstgpt", "mooncake", "litellm", "otel", "csv", "jsonl", "parquet",
)

_CANONICAL = {"arrival_s", "input_tokens", "output_tokens"}
_AZURE = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"}
_BURSTGPT = {"Timestamp", "Request tokens", "Response tokens"}
_MOONCAKE = {"timestamp", "input_length", "output_length"}
_LITELLM = {"startTime", "prompt_tokens", "completion_tokens"}


_PARQUET_MAGIC = b"PAR1"
#: What reading a damaged gzip file raises: a cut-off stream (EOFError), corrupt deflate data
#: (zlib.error), a bad header or CRC (BadGzipFile).
GZIP_ERRORS: tuple[type[Exception], ...] = (EOFError, zlib.error, gzip.BadGzipFile)


def damaged_gzip(path: Path, e: BaseException) -> InputFileError:
    """The error for a gzip file that cannot be decompressed to its end."""
    detail = str(e).strip() or type(e).__name__
    return InputFileError(f"the gzip file is corrupt or truncated ({detail})", path=str(path))


def utf8_error(path: Path) -> InputFileError | None:
    """The error naming the line and byte offset of the first invalid UTF-8 in the
    (decompressed) file, or None when it is all valid (read line by line: error paths only)."""
    offset = 0
    opener = gzip.open if is_gzip(path) else open
    try:
        with opener(path, "rb") as f:
            for n, line in enumerate(f, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as e:
                    return InputFileError(
                        f"invalid UTF-8 byte {line[e.start]:#04x} at byte offset {offset + e.start}"
                        " (the file must be UTF-8 text; was it saved as Latin-1 or cp1252?)",
                        path=str(path), line=n)
                offset += len(line)
    except GZIP_ERRORS as e:
        return damaged_gzip(path, e)
    return None


def is_gzip(path: Path) -> bool:
    """Whether the file starts with the gzip magic bytes."""
    with path.open("rb") as f:
        return f.read(2) == b"\x1f\x8b"


def is_parquet(path: Path, *, decompressed: bool = False) -> bool:
    """Whether the file (with `decompressed`: its gzip content) starts with Parquet's magic."""
    return head_bytes(path, 4, decompressed=decompressed) == _PARQUET_MAGIC


def plain_suffix(path: Path) -> str:
    """The file's extension without a trailing `.gz`, lower case (`.csv`, `.jsonl`, ...)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def head_bytes(path: Path, n_bytes: int, *, decompressed: bool = True) -> bytes:
    """The first `n_bytes` of the file, of its gzip content where `decompressed` and gzipped."""
    try:
        if decompressed and is_gzip(path):
            with gzip.open(path, "rb") as g:
                return g.read(n_bytes)
        with path.open("rb") as f:
            return f.read(n_bytes)
    except GZIP_ERRORS as e:
        raise damaged_gzip(path, e) from e
    except OSError as e:
        raise InputFileError(f"cannot read file: {e}", path=str(path)) from e


def head_text(path: Path, n_bytes: int = 65536) -> str:
    """The first `n_bytes` of the (decompressed) file as text."""
    return head_bytes(path, n_bytes).decode("utf-8-sig", errors="replace")


def header_line(text: str) -> str:
    """The first line of a file's head (its CSV header)."""
    return text.lstrip().split("\n", 1)[0]


def duplicate_column(path: Path) -> tuple[str, int, int] | None:
    """(name, first position, second position; 1-based) of a column named twice in a CSV
    header, or None: polars would rename the second and the reader use the first, silently."""
    text = head_text(path)
    header = next(csv.reader(io.StringIO(text.lstrip())), [])
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        if name in seen:
            return name, seen[name], i
        seen[name] = i
    return None


def _columns_format(columns: set[str]) -> str | None:
    for fmt, needed in (
        ("fleetplan", _CANONICAL), ("azure", _AZURE), ("burstgpt", _BURSTGPT),
        ("mooncake", _MOONCAKE), ("litellm", _LITELLM),
    ):
        if needed <= columns:
            return fmt
    return None


def _parquet_columns(path: Path) -> set[str]:
    import polars as pl

    try:
        return set(pl.scan_parquet(path).collect_schema().names())
    except Exception as e:
        raise InputFileError(f"not a readable Parquet file: {e}", path=str(path)) from e


def detect_format(path: Path, *, has_mapping: bool) -> str:
    """Guess the format; with a column mapping, only the container (csv/jsonl/parquet) matters."""
    if is_parquet(path):
        cols = _parquet_columns(path)
        return "parquet" if has_mapping else (_columns_format(cols) or "parquet")
    text = head_text(path)
    stripped = text.lstrip()
    if not stripped:
        raise InputFileError("the file is empty: no requests", path=str(path), line=1)
    if stripped[0] in "[{":
        if '"resourceSpans"' in text[:4096] or "resourceSpans" in text[:200]:
            return "otel"
        if has_mapping:
            return "jsonl"
        return _json_head_format(path, stripped)
    header = next(csv.reader(io.StringIO(stripped.splitlines()[0])))
    if "\ufffd" in header_line(text):  # bytes that are not UTF-8 (head_text replaced them)
        bad_text = utf8_error(path)
        if bad_text is not None:
            raise bad_text
    if has_mapping:
        return "csv"
    fmt = _columns_format({h.strip() for h in header})
    if fmt is None:
        raise UsageError(
            f"cannot tell the trace format of {path} from its header {header[:8]}; "
            "give --format or a column mapping (--map timestamp=...,input_tokens=...,"
            "output_tokens=...)",
            where="--format",
        )
    return fmt


def _json_head_format(path: Path, stripped: str) -> str:
    first = stripped.splitlines()[0]
    record: object = None
    # A JSON array or a pretty-printed document does not parse line by line: then the keys
    # are looked for in the text below.
    with contextlib.suppress(json.JSONDecodeError):
        record = json.loads(first)
    if isinstance(record, dict):
        fmt = _columns_format(set(record))
        if fmt in ("mooncake", "litellm"):
            return fmt
    for fmt, needed in (("mooncake", _MOONCAKE), ("litellm", _LITELLM)):
        if all(f'"{k}"' in stripped[:8192] for k in needed):
            return fmt
    raise UsageError(
        f"cannot tell the trace format of JSON file {path}; give --format or --map",
        where="--format",
    )
