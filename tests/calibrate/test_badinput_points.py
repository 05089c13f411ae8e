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
