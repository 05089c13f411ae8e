"""Measured serving points: read, check and normalise rows of the calibration CSV format.

The format is aiconfigurator's silicon table (`data/measured_serving_points.csv`): one
closed-loop benchmark run per row. The client concurrency is `silicon_concurrency=N` in
`silicon_data_source`, falling back to `batch_size` when that column is absent or has no such
token, then to `decode_batch_size` x `decode_num_workers`. `batch_size` alone is the engine's
configured batch size and differs from the concurrency in ~4% of rows.

Optional setting columns (`recipes.SETTING_COLUMNS`: TensorRT-LLM batch waiting, the token
budget per step, the KV memory fraction, SGLang's scheduler receive interval, the benchmark
client's random range ratio) describe how the engine and the
client were configured; where a row leaves them empty, a rule of `data/recipes.yaml` copied
from the public recipe that produced such runs may fill them (`ServingPoint.recipe` names it).
`isl` and `osl` are the lengths the benchmark was asked for; a client with a range ratio r < 1
drew each request's lengths from [int(r x L), L], and the models predict such a row at the
mean lengths (`ServingPoint.mean_isl`, `mean_osl`).

Aggregated rows whose concurrency is a multiple k > 1 of `batch_size` x attention-DP ranks
(`agg_layout`): the engine cannot have run more than its batch at once, and the measured TTFTs
show no wait for a slot, so the clients were spread over more engine ranks than the layout
columns say. When k equals the TP size (and attention DP is not recorded), `tp_size` is read as
the world size of an attention-data-parallel engine (TRT-LLM `enable_attention_dp`: one GPU per
rank, `batch_size` per rank); otherwise as k identical instances (`Layout.workers`), each with
concurrency / k clients.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from fleetplan.calibrate import recipes
from fleetplan.errors import InputFileError
from fleetplan.sim.load import drawn_length_range

__all__ = [
    "QUANT_MODES",
    "REQUIRED_COLUMNS",
    "Layout",
    "ServingPoint",
    "agg_layout",
    "bundled_points_path",
    "csv_records",
    "mean_length",
    "read_points",
    "read_utf8_text",
]

REQUIRED_COLUMNS = (
    "model_path",
    "system",
    "backend",
    "mode",
    "isl",
    "osl",
    "tp_size",
)
_CONC = re.compile(r"silicon_concurrency=([^;,\s]*)")


@dataclass(frozen=True, slots=True)
class Layout:
    """One engine instance: tensor, pipeline, attention-data and expert parallelism, and how
    many such instances (`workers`) serve the load."""

    tp: int = 1
    pp: int = 1
    attention_dp: int = 1
    ep: int = 1
    workers: int = 1
    moe_tp: int = 1  # tensor parallelism of the expert layers as recorded (`moe_tp_size`)

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.attention_dp


@dataclass(frozen=True, slots=True)
class ServingPoint:
    """One measured (or to-be-predicted) closed-loop run. Times in seconds."""

    line: int  # 1-based line in the file (header = 1)
    id: str
    model: str
    system: str
    backend: str
    precision: str
    mode: str  # "agg" or "disagg"
    isl: int
    osl: int
    concurrency: int
    agg: Layout | None
    prefill: Layout | None
    decode: Layout | None
    ttft_s: float | None
    tpot_s: float | None
    backend_version: str = ""  # as recorded ("1.0.0rc3", "0.5.9", "nightly-dev", ...)
    max_batch: int = 0  # the engine's batch limit per rank (`batch_size`, aggregated); 0 unknown
    #: disaggregated: whether `prefill_num_workers` was recorded (else read as 1, unknown)
    prefill_workers_recorded: bool = True
    #: disaggregated: whether `decode_num_workers` was recorded (else read as 1, unknown)
    decode_workers_recorded: bool = True
    #: TensorRT-LLM batch waiting: iterations a context request may wait for more to batch with
    #: (`batch_wait_timeout_iters`, 0 off) and the share of the token budget that ends the wait
    #: early (`batch_wait_max_tokens_ratio`, 0 none)
    batch_wait_iters: int = 0
    batch_wait_ratio: float = 0.0
    #: the engine's token budget per step (`max_num_tokens`); 0: the engine's default
    max_num_tokens: int = 0
    #: the engine's KV memory fraction (`kv_memory_fraction`, the engine's own sense, see
    #: `recipes.SETTING_COLUMNS`); 0: the engine's default
    kv_memory_fraction: float = 0.0
    #: the benchmark client's random range ratio (`range_ratio`): each request's ISL and OSL
    #: drawn uniformly from the integers [int(r x L), L] with L the recorded `isl` / `osl`
    #: (vLLM-lineage `benchmark_serving.py --random-range-ratio r`); 1: fixed lengths
    range_ratio: float = 1.0
    #: SGLang's scheduler receive interval (`scheduler_recv_interval`,
    #: `--scheduler-recv-interval`): the scheduler polls for new requests once every so many
    #: decode steps (and after every prefill); 0 or 1: every step (the default)
    recv_interval: int = 0
    #: the recipe rule(s) (`recipes.yaml`) that filled settings the row left empty; "" none
    recipe: str = ""
    # why the row's precision cannot be read from its empty columns (`unrecorded_precision`)
    precision_note: str = ""

    @property
    def mean_isl(self) -> int:
        """The mean prompt length the benchmark sent (`isl` where lengths were fixed)."""
        return mean_length(self.isl, self.range_ratio)

    @property
    def mean_osl(self) -> int:
        """The mean output length the benchmark asked for (`osl` where lengths were fixed)."""
        return mean_length(self.osl, self.range_ratio)

    @property
    def group(self) -> tuple[str, str, str, str]:
        """The cross-validation unit: (model, system, backend, precision)."""
        return (self.model, self.system, self.backend, self.precision)


def mean_length(length: int, range_ratio: float) -> int:
    """Mean of the integers a benchmark client draws lengths from uniformly
    (`sim.load.drawn_length_range`: [int(r x L), L]), rounded; `length` itself where r >= 1
    (fixed lengths)."""
    lo, hi = drawn_length_range(length, range_ratio)
    return round((lo + hi) / 2)


def bundled_points_path() -> Path:
    """The packaged copy of the measured points (aiconfigurator, Apache-2.0)."""
    base = resources.files("fleetplan.calibrate") / "data"
    return Path(str(base / "measured_serving_points.csv"))


def _number(row: dict[str, str], key: str, where: tuple[str, int]) -> float | None:
    """The value of `key` as a number; None where empty; an `InputFileError` naming the file,
    line and field where it is not a finite number."""
    raw = (row.get(key) or "").strip()
    if raw == "":
        return None
    try:
        v = float(raw)
    except ValueError:
        raise InputFileError(
            f"not a number: {raw!r}", path=where[0], line=where[1], field=key
        ) from None
    if not math.isfinite(v):
        raise InputFileError(f"not a number: {raw!r}", path=where[0], line=where[1], field=key)
    return v


#: The largest whole number a count of the format may hold (tokens, clients, GPUs).
MAX_INT = 2**31 - 1


def _int(row: dict[str, str], key: str, where: tuple[str, int], default: int | None = None) -> int:
    v = _number(row, key, where)
    if v is None:
        if default is None:
            raise InputFileError("missing value", path=where[0], line=where[1], field=key)
        return default
    if v != int(v):
        raise InputFileError(f"not an integer: {row[key].strip()!r}", path=where[0],
                             line=where[1], field=key)
    if abs(v) > MAX_INT:
        raise InputFileError(f"{row[key].strip()!r} is out of range (at most {MAX_INT:,})",
                             path=where[0], line=where[1], field=key)
    return int(v)


def _float(row: dict[str, str], key: str, where: tuple[str, int]) -> float | None:
    v = _number(row, key, where)
    if v is not None and v <= 0:
        raise InputFileError(f"must be > 0, got {row[key].strip()!r}", path=where[0],
                             line=where[1], field=key)
    return v


def _ratio(row: dict[str, str], key: str, where: tuple[str, int]) -> float:
    v = _number(row, key, where)
    if v is not None and not 0.0 <= v <= 1.0:
        raise InputFileError(f"must be in [0, 1], got {row[key].strip()!r}", path=where[0],
                             line=where[1], field=key)
    return v or 0.0


def _fraction(row: dict[str, str], key: str, where: tuple[str, int], empty: float,
              meaning: str) -> float:
    """A setting in (0, 1]; `empty` where the row leaves it empty (`meaning` says what that
    is in the error)."""
    v = _number(row, key, where)
    if v is None:
        return empty
    if not 0.0 < v <= 1.0:
        raise InputFileError(f"must be in (0, 1] ({meaning}), got {row[key].strip()!r}",
                             path=where[0], line=where[1], field=key)
    return v


def _setting(row: dict[str, str], key: str, where: tuple[str, int]) -> int:
    v = _int(row, key, where, 0)
    if v < 0:
        raise InputFileError(f"must be >= 0, got {v}", path=where[0], line=where[1], field=key)
    return v


def _layout(row: dict[str, str], prefix: str, where: tuple[str, int]) -> Layout:
    def get(name: str, unused_zero: bool = False) -> int:
        """The field, 1 where empty; 0 reads as 1 only where the source writes it for "not
        used" (attention DP, MoE TP and EP); a negative value, or 0 elsewhere, is an error."""
        v = _int(row, prefix + name, where, 1)
        if v < 0 or (v == 0 and not unused_zero):
            raise InputFileError(f"must be >= 1 (or empty), got {v}", path=where[0],
                                 line=where[1], field=prefix + name)
        return max(v, 1)

    return Layout(
        tp=get("tp_size"),
        pp=get("pp_size"),
        attention_dp=get("attention_dp_size", unused_zero=True),
        ep=get("moe_ep_size", unused_zero=True),
        workers=get("num_workers"),
        moe_tp=get("moe_tp_size", unused_zero=True),
    )


def agg_layout(lay: Layout, concurrency: int, batch_size: int) -> Layout:
    """The aggregated layout that serves `concurrency` clients with an engine batch of
    `batch_size` per attention-DP rank (module docstring); `lay` when they agree or
    `batch_size` is unknown (0)."""
    per = batch_size * lay.attention_dp
    if batch_size < 1 or concurrency <= per or concurrency % per:
        return lay
    k = concurrency // per
    if lay.attention_dp == 1 and lay.tp > 1 and k == lay.tp:
        return replace(lay, tp=1, attention_dp=lay.tp)
    return replace(lay, workers=lay.workers * k)


#: aiconfigurator's GEMM / MoE quantization-mode names (`sdk.common.GEMMQuantMode`,
#: `MoEQuantMode`) -> the precision names of the calibration file: the weight format that
#: sets the bytes read, the GPU deciding whether it computes natively (`features`). INT8
#: weight-only (`int8_wo`, W8A16) has no catalog format and stays as written (a row
#: with it gets a reason, not a guess).
QUANT_MODES = {
    "bfloat16": "bf16", "float16": "bf16", "fp16": "bf16",
    "fp8_block": "fp8", "fp8_static": "fp8", "fp8_ootb": "fp8",
    "nvfp4": "fp4", "mxfp4": "fp4", "nvfp4_wo": "fp4", "w4a16_nvfp4": "fp4",
    "w4a16_mxfp4": "fp4", "w4a16_mxfp4_cutlass": "fp4", "w4a8_mxfp4_mxfp8": "fp4",
    "w4a8_mxfp4_mxfp8_trtllm": "fp4",
    "int4_wo": "int4", "sq": "int8",
}  # fmt: skip


def _precision(row: dict[str, str]) -> str:
    p = (row.get("precision") or "").strip().lower()
    if p:
        return QUANT_MODES.get(p, p)
    gemm = (row.get("gemm_quant_mode") or "").strip().lower()
    if gemm == "":
        return "bf16"  # unquantized checkpoints leave both quant columns empty
    return QUANT_MODES.get(gemm, gemm)


#: A quantization format in a checkpoint's name (`Qwen3-32B-FP8`, `...-AWQ`, `..._w4a16`).
_NAME_QUANT = re.compile(
    r"(?:^|[-_.])(fp8|fp4|nvfp4|mxfp4|int8|int4|w4a16|w8a8|w4a8|awq|gptq)(?:$|[-_.])", re.I)


def unrecorded_precision(row: dict[str, str]) -> str:
    """Why a row cannot be read as bf16 (empty where it can): the empty precision columns mean
    an unquantized checkpoint, which a checkpoint named for a quantized format is not."""
    if (row.get("precision") or "").strip() or (row.get("gemm_quant_mode") or "").strip():
        return ""
    name = (row.get("model_path") or "").strip().rsplit("/", 1)[-1]
    m = _NAME_QUANT.search(name)
    if m is None:
        return ""
    return (f"no precision recorded (precision and gemm_quant_mode are empty, which reads as "
            f"bf16), but the checkpoint {name!r} is named for {m.group(1)}: record its precision")


def _concurrency(row: dict[str, str], where: tuple[str, int]) -> int:
    m = _CONC.search(row.get("silicon_data_source") or "")
    if m:
        text = m.group(1)
        if not text.isdigit() or int(text) < 1:
            raise InputFileError(
                f"silicon_concurrency must be a whole number of clients >= 1, got {text!r}",
                path=where[0], line=where[1], field="silicon_data_source",
            )
        return int(text)
    if (row.get("batch_size") or "").strip():
        return _int(row, "batch_size", where)
    if (row.get("decode_batch_size") or "").strip():  # disaggregated: per-worker batch x workers
        return _int(row, "decode_batch_size", where) * _int(row, "decode_num_workers", where, 1)
    raise InputFileError(
        "no client concurrency: give 'silicon_concurrency=N' in silicon_data_source or a "
        "batch_size",
        path=where[0],
        line=where[1],
        field="silicon_data_source",
    )


def _row(row: dict[str, str], where: tuple[str, int]) -> ServingPoint:
    mode = (row.get("mode") or "").strip().lower()
    if mode not in ("agg", "disagg"):
        # an empty cell is not read as "agg": the mode decides which layout columns count
        raise InputFileError(
            f"must be 'agg' or 'disagg', got {mode!r}" + (" (empty)" if not mode else ""),
            path=where[0], line=where[1], field="mode"
        )
    isl, osl = _int(row, "isl", where), _int(row, "osl", where)
    conc = _concurrency(row, where)
    for name, v in (("isl", isl), ("osl", osl), ("concurrency", conc)):
        if v < 1:
            raise InputFileError(f"must be >= 1, got {v}", path=where[0], line=where[1], field=name)
    if mode == "agg":
        bs = _int(row, "batch_size", where, 0) if (row.get("batch_size") or "").strip() else 0
        if bs < 0:
            raise InputFileError(f"must be >= 0 (0 or empty: unknown), got {bs}",
                                 path=where[0], line=where[1], field="batch_size")
        agg, pre, dec = agg_layout(_layout(row, "", where), conc, bs), None, None
    else:
        agg, pre, dec = None, _layout(row, "prefill_", where), _layout(row, "decode_", where)
    ttft = _float(row, "silicon_ttft_ms", where)
    tpot = _float(row, "silicon_tpot_ms", where)
    add, recipe = recipes.fill(row, conc)
    row = {**row, **add}
    return ServingPoint(
        line=where[1],
        id=(row.get("id") or f"line{where[1]}").strip(),
        model=row["model_path"].strip(),
        system=row["system"].strip(),
        backend=row["backend"].strip().lower(),
        precision=_precision(row),
        precision_note=unrecorded_precision(row),
        mode=mode,
        isl=isl,
        osl=osl,
        concurrency=conc,
        agg=agg,
        prefill=pre,
        decode=dec,
        ttft_s=None if ttft is None else ttft / 1e3,
        tpot_s=None if tpot is None else tpot / 1e3,
        backend_version=(row.get("backend_version") or "").strip(),
        max_batch=bs if mode == "agg" else 0,
        prefill_workers_recorded=mode == "agg"
        or _int(row, "prefill_num_workers", where, 0) >= 1,
        decode_workers_recorded=mode == "agg"
        or _int(row, "decode_num_workers", where, 0) >= 1,
        batch_wait_iters=_setting(row, "batch_wait_timeout_iters", where),
        batch_wait_ratio=_ratio(row, "batch_wait_max_tokens_ratio", where),
        max_num_tokens=_setting(row, "max_num_tokens", where),
        kv_memory_fraction=_fraction(row, "kv_memory_fraction", where, 0.0,
                                     "empty: the engine's default"),
        range_ratio=_fraction(row, "range_ratio", where, 1.0, "1: fixed lengths"),
        recv_interval=_setting(row, "scheduler_recv_interval", where),
        recipe=recipe,
    )


def read_utf8_text(p: Path) -> str:
    """The text of a UTF-8 file (a spreadsheet's leading byte-order mark is not data); an
    `InputFileError` naming the file, and for bytes that are not UTF-8 the line and byte."""
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputFileError(f"cannot read: {e.strerror or e}", path=str(p)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        # `e.object` is the data after any byte-order mark; `e.start` an offset into it
        bom = len(data) - len(e.object)
        raise InputFileError(
            f"not UTF-8 text: byte {e.object[e.start]:#04x} at byte offset {bom + e.start} (the "
            "file must be UTF-8; was it saved as Latin-1 or cp1252?)",
            path=str(p), line=e.object.count(b"\n", 0, e.start) + 1) from None


def csv_records(path: Path, required: Sequence[str],
                expected: str = "") -> list[tuple[int, dict[str, str]]]:
    """The non-blank records of a UTF-8 CSV as (first file line of the record, {stripped header:
    field}), checked: each column named once, the `required` columns present (`expected`, when
    given, describes the format in that error), as many fields as the header, at least one
    record; every problem an `InputFileError` naming the file and line."""
    p = str(path)
    reader = csv.reader(io.StringIO(read_utf8_text(path), newline=""))
    header = [h.strip() for h in next(reader, [])]
    for j, name in enumerate(header):
        if name in header[:j]:  # the row's dict would keep the last column's value, silently
            raise InputFileError(
                f"column {name!r} appears twice (columns {header.index(name) + 1} and {j + 1}); "
                "each column must be named once", path=p, line=1, field=name)
    missing = [c for c in required if c not in header]
    if missing:
        raise InputFileError(f"missing column(s) {', '.join(missing)}"
                             + (f"; expected {expected}" if expected else ""), path=p, line=1)
    out = []
    line = reader.line_num + 1  # the file line where the next record starts
    for rec in reader:
        if any(f.strip() for f in rec):  # blank lines hold nothing
            if len(rec) != len(header):
                raise InputFileError(f"{len(rec)} fields where the header has {len(header)}",
                                     path=p, line=line)
            out.append((line, dict(zip(header, rec, strict=True))))
        line = reader.line_num + 1
    if not out:
        raise InputFileError("no rows after the header", path=p, line=1)
    return out


def read_points(path: str | Path) -> tuple[list[str], list[dict[str, str]], list[ServingPoint]]:
    """Read a points CSV: (header, raw rows, parsed points). Raises `InputFileError` naming the
    file, line and field of the first problem."""
    p = Path(path)
    records = csv_records(p, REQUIRED_COLUMNS, expected=(
        f"the calibration CSV format ({', '.join(REQUIRED_COLUMNS)}, ...)"))
    header = list(records[0][1])
    raws = [row for _, row in records]
    points = [_row(row, (str(p), line)) for line, row in records]
    return header, raws, points
