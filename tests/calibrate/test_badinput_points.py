"""`fleetplan validate` on malformed points files: each is an error naming file, line and field
(exit 2), or, for a cell the catalog cannot resolve, a row reason; never a silent misreading."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from fleetplan.calibrate import bundled_points_path, read_points
from fleetplan.cli import main
from fleetplan.errors import InputFileError

CONFIGS = (Path(__file__).resolve().parents[2] / "src" / "fleetplan" / "catalog" / "data"
           / "sources" / "model_configs")


def _lines(n: int) -> list[str]:
    """The header and the first `n` data rows of the bundled points (one physical line each)."""
    return bundled_points_path().read_text(encoding="utf-8").splitlines()[: n + 1]


def test_row_with_fewer_fields_than_the_header_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was padded with blanks and dropped out of the MAPE table without a word."""
    recs = list(csv.reader(_lines(3)))
    n = len(recs[0])
    recs[2] = recs[2][:-3]  # the last three fields cut off
    p = tmp_path / "points.csv"
    with p.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(recs)
    with pytest.raises(InputFileError) as e:
        read_points(p)
    assert e.value.path == str(p) and e.value.line == 3
    assert f"{n - 3} fields where the header has {n}" in str(e.value)
    assert main(["validate", "--points", str(p)]) == 2
    assert "points.csv, line 3" in " ".join(capsys.readouterr().err.split())


def test_duplicated_header_column_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two `isl` columns: csv.DictReader kept the last one's values, silently."""
    recs = list(csv.reader(_lines(3)))
    j = recs[0].index("isl")
    p = tmp_path / "points.csv"
    with p.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([*recs[0][: j + 1], "isl", *recs[0][j + 1:]])
        w.writerows([*r[: j + 1], "99", *r[j + 1:]] for r in recs[1:])
    with pytest.raises(InputFileError) as e:
        read_points(p)
    assert e.value.line == 1 and e.value.field == "isl"
    assert f"appears twice (columns {j + 1} and {j + 2})" in str(e.value)
    assert main(["validate", "--points", str(p)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "points.csv, line 1, field 'isl'" in err and "Traceback" not in err


def test_bytes_that_are_not_utf8_name_their_line(tmp_path: Path) -> None:
    lines = _lines(3)
    p = tmp_path / "points.csv"
    data = "\n".join(lines).encode() + b"\n"
    row3 = data.index(lines[3].encode())
    p.write_bytes(data[:row3] + b"Caf\xe9 " + data[row3:])  # Latin-1 on line 4
    with pytest.raises(InputFileError) as e:
        read_points(p)
    assert e.value.line == 4
    assert f"byte 0xe9 at byte offset {row3 + 3}" in str(e.value)


def test_utf8_byte_order_mark_is_not_data_and_not_counted_wrong(tmp_path: Path) -> None:
    lines = _lines(2)
    p = tmp_path / "points.csv"
    p.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    header, _, pts = read_points(p)
    assert header[0] == "id" and len(pts) == 2
    p.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode() + b"\xff\n")
    with pytest.raises(InputFileError) as e:
        read_points(p)
    assert e.value.line == 4 and f"byte offset {p.stat().st_size - 2}" in str(e.value)


def test_empty_model_path_is_a_row_reason_not_the_working_directory_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty model_path cell read the config.json in the working directory (a Qwen3-8B
    predicted in place of the row's model); now the row is unsupported and says why, as an
    empty `system` cell is."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(CONFIGS / "Qwen--Qwen3-8B_config.json", work / "config.json")
    monkeypatch.chdir(work)
    rows = list(csv.DictReader(_lines(3)))
    rows[-1]["model_path"] = ""
    rows[0]["system"] = " "
    src = tmp_path / "points.csv"
    with src.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "pred.csv"
    assert main(["validate", "--points", str(src), "--out", str(out)]) == 0
    got = list(csv.DictReader(out.read_text().splitlines()))
    assert got[-1]["pred_ttft_ms"] == ""
    assert got[-1]["reason"] == "model_path: model name is empty"
    assert got[0]["pred_ttft_ms"] == "" and got[0]["reason"] == "system: gpu name is empty"
    assert got[1]["reason"] == "" and got[1]["pred_ttft_ms"] != ""


def _write(tmp_path: Path, header: list[str], rows: list[list[str]]) -> Path:
    p = tmp_path / "points.csv"
    with p.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return p


def _first_row_of(model: str) -> tuple[list[str], list[str]]:
    recs = list(csv.reader(bundled_points_path().read_text(encoding="utf-8").splitlines()))
    head = recs[0]
    row = next(r for r in recs[1:] if r[head.index("model_path")] == model
               and r[head.index("mode")] == "agg")
    return head, row


def test_tp_that_cannot_split_a_dense_models_heads_gets_a_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Llama-3.1-70B (64 heads) at TP 3 was predicted, silently at fractional heads per rank; a
    dense model has no attention-data-parallel reading."""
    head, row = _first_row_of("meta-llama/Llama-3.1-70B")
    row[head.index("tp_size")] = "3"
    p = _write(tmp_path, head, [row])
    out = tmp_path / "pred.csv"
    assert main(["validate", "--points", str(p), "--out", str(out)]) == 0
    got = next(csv.DictReader(out.read_text().splitlines()))
    assert got["pred_ttft_ms"] == "" and "tp_size 3 does not divide" in got["reason"]
    assert "64 attention heads" in got["reason"]


def test_unrecorded_precision_of_a_quantized_checkpoint_gets_a_reason(tmp_path: Path) -> None:
    """Empty precision columns read as bf16 (unquantized checkpoints leave them empty); a
    checkpoint named for FP8 was predicted as bf16 without a word."""
    head, row = _first_row_of("Qwen/Qwen3-32B")
    row[head.index("model_path")] = "Qwen/Qwen3-32B-FP8"
    for c in ("precision", "gemm_quant_mode", "moe_quant_mode"):
        if c in head:
            row[head.index(c)] = ""
    p = _write(tmp_path, head, [row])
    out = tmp_path / "pred.csv"
    assert main(["validate", "--points", str(p), "--out", str(out)]) == 0
    got = next(csv.DictReader(out.read_text().splitlines()))
    assert got["pred_ttft_ms"] == "" and "named for FP8" in got["reason"]


def test_records_are_named_by_their_first_line_and_blank_lines_hold_nothing(
        tmp_path: Path) -> None:
    head, row = _first_row_of("Qwen/Qwen3-32B")
    j = head.index("silicon_data_source")
    multi = list(row)
    multi[j] = "a note\nover\nthree lines"
    bad = list(row)
    bad[head.index("isl")] = "abc"
    p = tmp_path / "points.csv"
    with p.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([" " + h for h in head])  # spaces around names are not part of them
        w.writerow(multi)  # lines 2-4
        f.write("   \n")  # line 5: blank
        w.writerow(bad)  # line 6
    with pytest.raises(InputFileError) as e:
        read_points(p)
    assert e.value.line == 6 and e.value.field == "isl"  # was the record's last line
    p.write_text(p.read_text().rsplit("\n", 2)[0] + "\n")  # without the bad record
    header, _, pts = read_points(p)
    assert header == head and len(pts) == 1 and pts[0].line == 2


def test_out_of_range_counts_are_errors(tmp_path: Path) -> None:
    head, row = _first_row_of("Qwen/Qwen3-32B")
    row[head.index("tp_size")] = "1e30"
    with pytest.raises(InputFileError) as e:
        read_points(_write(tmp_path, head, [row]))
    assert e.value.field == "tp_size" and "out of range" in str(e.value)


def test_output_columns_in_the_input_and_unwritable_outputs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Validating an earlier --out file overwrote its prediction columns (and wrote them twice
    in the header); an --out the OS refuses ended in a traceback after the work."""
    head, row = _first_row_of("Qwen/Qwen3-32B")
    p = _write(tmp_path, head, [row])
    first = tmp_path / "first.csv"
    assert main(["validate", "--points", str(p), "--out", str(first)]) == 0
    capsys.readouterr()
    assert main(["validate", "--points", str(first), "--out", str(tmp_path / "again.csv")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "field 'pred_ttft_ms'" in err and "would overwrite" in err
    assert main(["validate", "--points", str(first)]) == 0  # without --out nothing is lost
    capsys.readouterr()
    assert main(["validate", "--points", str(p), "--out", "/proc/fleetplan-test.csv"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--out: cannot write '/proc/fleetplan-test.csv'" in err and "Traceback" not in err
