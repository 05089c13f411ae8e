"""`load()`: a path or preset name → a validated `Workload`, format detected or forced."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import polars as pl

from fleetplan.errors import InputFileError, UsageError
from fleetplan.workload._detect import (
    FORMATS,
    GZIP_ERRORS,
    damaged_gzip,
    detect_format,
    is_gzip,
    is_parquet,
    utf8_error,
)
from fleetplan.workload._model import Workload
from fleetplan.workload._readers import RawTrace, ragged_csv_line, read_raw
from fleetplan.workload._stream import STREAM_MIN_BYTES, UnsortedError, scan_workload, streamable
from fleetplan.workload._validate import to_workload

__all__ = ["load", "preset_path", "presets"]

# Preset name → (file under workload/presets/, format).
_PRESETS: dict[str, tuple[str, str]] = {
    "azure-code-2023": ("AzureLLMInferenceTrace_code.csv.gz", "azure"),
    "azure-conv-2023": ("AzureLLMInferenceTrace_conv.csv.gz", "azure"),
    "mooncake-synthetic": ("mooncake_synthetic_trace.jsonl.gz", "mooncake"),
}


def presets() -> list[str]:
    """Names of the bundled traces, usable wherever a trace path is."""
    return sorted(_PRESETS)


def preset_path(name: str) -> Path:
    """The file of a bundled trace."""
    if name not in _PRESETS:
        raise UsageError(f"unknown preset '{name}'; presets: {presets()}", where="workload")
    root = resources.files("fleetplan.workload") / "presets" / _PRESETS[name][0]
    return Path(str(root))


def _resolve(path_or_preset: str, fmt: str | None) -> tuple[Path, str | None]:
    if path_or_preset in _PRESETS:
        return preset_path(path_or_preset), fmt or _PRESETS[path_or_preset][1]
    path = Path(path_or_preset)
    if not path.exists():
        raise InputFileError(
            f"no such file (and not a preset; presets: {', '.join(presets())})",
            path=path_or_preset,
        )
    if path.is_dir():
        raise InputFileError("is a directory, not a trace file", path=path_or_preset)
    return path, fmt


def load(
    path_or_preset: str,
    *,
    format: str | None = None,  # the public name the planner uses
    mapping: dict[str, str] | None = None,
    on_error: str = "raise",
    streaming: bool | None = None,
) -> Workload:
    """Read a trace file (or a bundled preset) into the canonical `Workload`.

    `format` forces a reader (`fleetplan.workload.FORMATS`); `mapping` maps canonical names
    (timestamp, input_tokens, output_tokens, tenant, model, workflow_id, hash_ids) and the
    options timestamp_unit / block_tokens to a generic CSV / Parquet / JSONL file's columns.
    `on_error="skip"` leaves bad rows out and records them in `Workload.skipped`.
    `streaming`: None (default) streams plain files of at least `STREAM_MIN_BYTES` in bounded
    memory (the table is then read only when `.table` is used; `characterize` does not need
    it); True streams whenever the trace allows it; False always reads the table into memory.
    """
    if format is not None and format not in FORMATS:
        raise UsageError(f"unknown format '{format}'; formats: {list(FORMATS)}", where="--format")
    path, fmt = _resolve(path_or_preset, format)
    try:
        return _load_file(path, path_or_preset, fmt, mapping, on_error, streaming)
    except GZIP_ERRORS as e:  # wherever the file is read: detection, reading, streaming
        raise damaged_gzip(path, e) from e
    except UnicodeDecodeError as e:  # a reader that decodes the text itself (JSON, JSONL)
        raise (utf8_error(path) or InputFileError(f"invalid UTF-8: {e}", path=str(path))) from e
    except OSError as e:
        if is_gzip(path):  # polars' own decompressor: a cut-off stream or a bad checksum
            raise damaged_gzip(path, e) from e
        raise InputFileError(f"cannot read file: {e}", path=str(path)) from e


def _load_file(path: Path, path_or_preset: str, fmt: str | None,
               mapping: dict[str, str] | None, on_error: str, streaming: bool | None) -> Workload:
    if path.stat().st_size == 0:
        raise InputFileError("the file is empty: no requests", path=str(path), line=1)
    if is_gzip(path) and is_parquet(path, decompressed=True):
        raise InputFileError("a gzip-compressed Parquet file: Parquet compresses its columns "
                             "itself; gunzip it first", path=str(path))
    if fmt is None:
        fmt = detect_format(path, has_mapping=bool(mapping))
    stream = streaming if streaming is not None else (
        path.stat().st_size >= STREAM_MIN_BYTES and not is_gzip(path))

    def in_memory() -> pl.DataFrame:
        return load(str(path), format=fmt, mapping=mapping, on_error=on_error,
                    streaming=False).table

    def validated(raw: RawTrace) -> Workload:
        if stream and streamable(raw, fmt):
            try:
                return scan_workload(raw, path, fmt, on_error, path_or_preset, in_memory)
            except UnsortedError:
                pass  # the in-memory path sorts (and warns)
        return to_workload(raw, path, fmt, on_error, path_or_preset)

    try:
        try:
            return validated(read_raw(path, fmt, mapping, as_text=False))
        except pl.exceptions.PolarsError:
            # A value the typed scan could not parse: re-read as text to find the row.
            return validated(read_raw(path, fmt, mapping, as_text=True))
    except pl.exceptions.PolarsError as e:
        if "utf-8" in str(e).lower() or "utf8" in str(e).lower():
            bad_text = utf8_error(path)
            if bad_text is not None:
                raise bad_text from e
        ragged = ragged_csv_line(path)
        if ragged is not None:
            line, got, want = ragged
            raise InputFileError(f"{got} fields where the header has {want}", path=str(path),
                                 line=line) from e
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputFileError(f"cannot read as {fmt}: {first}", path=str(path)) from e

