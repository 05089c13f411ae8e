"""`fleetplan calibrate-steps` on step-time files with impossible values: an error naming the
file, line and field (exit 2), never a fit to them."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from fleetplan.calibrate.steps import bundled_steps_path, read_steps
from fleetplan.errors import InputFileError


def _recs() -> list[list[str]]:
    """Header, three prefill rows (1 x 32, 1 x 128, 1 x 512 tokens) and one decode row."""
    lines = bundled_steps_path().read_text().splitlines()
    decode = next(ln for ln in lines if ",decode," in ln)
    return list(csv.reader([*lines[:4], decode]))


def _write(tmp_path: Path, row: int, **edit: str) -> Path:
    recs = _recs()
    for k, v in edit.items():
        recs[row][recs[0].index(k)] = v
    p = tmp_path / "steps.csv"
    with p.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(recs)
    return p


@pytest.mark.parametrize(
    ("row", "edit", "field", "words"),
    [
        # 1e300 ms fitted garbage (MAPE 11,964%) and wrote the YAML
        (2, {"step_ms": "1e300"}, "step_ms", "is not a measured step time"),
        (2, {"step_ms": "4000000"}, "step_ms", "(an hour)"),
        (2, {"step_ms": "1e-9"}, "step_ms", "(a microsecond)"),
        (2, {"batch_size": "1000000"}, "batch_size",
         "1000000 sequences, but the step holds prefill_seqs 1 + decode_seqs 0"),
        (2, {"context_tokens": "0"}, "context_tokens", "must be >= 1"),
        (2, {"context_tokens": "99999999"}, "context_tokens",
         "99,999,999 tokens, beyond llama-3.1-8b's context of 131,072"),
        (2, {"prefill_seqs": "200"}, "prefill_seqs", "200 prefill sequences with 128 prompt"),
        (2, {"prefill_kv_read_tokens": "5"}, "prefill_kv_read_tokens",
         "fewer than the step's 128 prompt tokens"),
        (2, {"prefill_kv_read_tokens": "99999999"}, "prefill_kv_read_tokens",
         "beyond llama-3.1-8b's context of 131,072 each"),
        (2, {"decode_ctx_tokens": "7"}, "decode_ctx_tokens", "7 tokens with decode_seqs 0"),
        (2, {"prefill_attn_pairs": "0"}, "prefill_attn_pairs",
         "each token attends at least to itself"),
        (4, {"decode_ctx_tokens": "0"}, "decode_ctx_tokens", "fewer than the step's"),
        (4, {"decode_ctx_tokens": "1e15"}, "decode_ctx_tokens", "context of 131,072 each"),
        (4, {"batch_size": "10000000", "decode_seqs": "10000000",
             "decode_ctx_tokens": "5000000000"}, "decode_ctx_tokens",
         "the step cannot have run"),
    ],
)
def test_impossible_step_values_name_file_line_field(
        tmp_path: Path, row: int, edit: dict[str, str], field: str, words: str) -> None:
    p = _write(tmp_path, row, **edit)
    with pytest.raises(InputFileError) as e:
        read_steps(p)
    assert (e.value.path, e.value.line, e.value.field) == (str(p), row + 1, field)
    assert words in str(e.value)


def test_cli_refuses_an_absurd_step_time_and_writes_no_yaml(cli: Any, tmp_path: Path) -> None:
    p = _write(tmp_path, 2, step_ms="1e300")
    out = tmp_path / "fit.yaml"
    r = cli("calibrate-steps", str(p), "--yaml", str(out))
    assert r.code == 2 and "steps.csv, line 3, field 'step_ms'" in " ".join(r.err.split())
    assert not out.exists() and "Traceback" not in r.err


def test_duplicated_header_column_is_an_error(tmp_path: Path) -> None:
    recs = _recs()
    j = recs[0].index("step_ms")
    p = tmp_path / "steps.csv"
    with p.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([*r, r[j]] for r in recs)
    with pytest.raises(InputFileError, match="appears twice") as e:
        read_steps(p)
    assert e.value.line == 1 and e.value.field == "step_ms"


def test_bytes_that_are_not_utf8_name_their_line(tmp_path: Path) -> None:
    p = _write(tmp_path, 3, device_name="NVIDIA H100 XX")
    p.write_bytes(p.read_bytes().replace(b"H100 XX", b"H100 \xe9"))  # Latin-1 on line 4
    with pytest.raises(InputFileError) as e:
        read_steps(p)
    assert e.value.line == 4 and "byte 0xe9" in str(e.value)


def test_out_with_an_all_blank_row_and_a_byte_order_mark(cli: Any, tmp_path: Path) -> None:
    """A row of empty fields (skipped by the reader) made --out raise a zip() traceback; a
    byte-order mark ended up in the first column's name."""
    lines = bundled_steps_path().read_text().splitlines()
    src = tmp_path / "steps.csv"
    blank = "," * (len(lines[0].split(",")) - 1)
    src.write_bytes(b"\xef\xbb\xbf" + "\n".join([*lines[:12], blank, *lines[12:20]]).encode()
                    + b"\n")
    out = tmp_path / "pred.csv"
    r = cli("calibrate-steps", str(src), "--out", str(out))
    assert r.code == 0, r.err
    rows = list(csv.DictReader(out.read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 19 and "gpu" in rows[0] and rows[0]["pred_step_ms"]
