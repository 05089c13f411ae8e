"""Bad input: every user mistake is an InputFileError naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetplan.errors import InputFileError, UsageError
from fleetplan.workload import load

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
GOOD = "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:47.0000000,396,109\n"
LATER = "2023-11-16 18:15:49.0000000,374,44\n2023-11-16 18:15:50.0000000,396,109\n"


def _write(tmp_path: Path, text: str, name: str = "t.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_missing_required_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "TIMESTAMP,ContextTokens,Other\n2023-11-16 18:15:46.68,1,2\n")
    with pytest.raises(InputFileError) as e:
        load(path, format="azure")
    assert (e.value.path, e.value.line, e.value.field) == (path, 1, "GeneratedTokens")
    assert "missing required column" in str(e.value)


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ("2023-11-16 18:15:48.0000000,abc,5\n", "ContextTokens", "non-numeric"),
        ("2023-11-16 18:15:48.0000000,12,-3\n", "GeneratedTokens", "negative"),
        ("yesterday at noon,12,3\n", "TIMESTAMP", "unparseable timestamp"),
        ("2023-11-16 18:15:48.0000000,,3\n", "ContextTokens", "missing value"),
    ],
)
def test_bad_value_names_line_and_field(tmp_path: Path, row: str, field: str, words: str) -> None:
    path = _write(tmp_path, HEADER + GOOD + row + LATER)
    with pytest.raises(InputFileError) as e:
        load(path)
    assert e.value.line == 4  # header is line 1, two good rows, then the bad one
    assert e.value.field == field
    assert words in str(e.value)
    assert path in str(e.value)


def test_bad_value_after_schema_inference_window(tmp_path: Path) -> None:
    rows = "".join(f"2023-11-16 18:{m:02d}:00.0000000,{m},1\n" for m in range(60)) * 200
    path = _write(tmp_path, HEADER + rows + "2023-11-16 19:00:00.0000000,1.5e3x,1\n")
    with pytest.raises(InputFileError) as e:
        load(path)
    assert (e.value.line, e.value.field) == (12_002, "ContextTokens")


def test_empty_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "")
    with pytest.raises(InputFileError, match="empty") as e:
        load(path)
    assert e.value.line == 1


def test_header_only(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no requests"):
        load(_write(tmp_path, HEADER))


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        load(str(tmp_path / "nope.csv"))
    with pytest.raises(UsageError, match="unknown format"):
        load(_write(tmp_path, HEADER + GOOD), format="excel")
    with pytest.raises(UsageError, match="--format"):
        load(_write(tmp_path, "a,b\n1,2\n", "u.csv"))


def test_on_error_skip_reports_lines(tmp_path: Path) -> None:
    text = HEADER + GOOD + "2023-11-16 18:15:48.0000000,x,5\n" + LATER + "bad,1,1\n"
    w = load(_write(tmp_path, text), on_error="skip")
    assert w.requests == 4
    assert w.skipped.count == 2
    assert w.skipped.first_lines == (4, 7)
    assert "ContextTokens" in w.skipped.reasons[0]
    assert "TIMESTAMP" in w.skipped.reasons[1]


def test_unsorted_timestamps_are_sorted_with_a_warning(tmp_path: Path) -> None:
    text = HEADER + "2023-11-16 18:15:50.0000000,1,1\n2023-11-16 18:15:46.0000000,2,2\n"
    with pytest.warns(UserWarning, match="not in order"):
        w = load(_write(tmp_path, text))
    assert w.table["input_tokens"].to_list() == [2, 1]
    assert w.table["arrival_s"].to_list() == [0.0, 4.0]
    assert w.warnings


def test_jsonl_bad_line(tmp_path: Path) -> None:
    text = ('{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [1]}\n'
            '{"timestamp": 5, "input_length": "many", "output_length": 1, "hash_ids": [2]}\n')
    with pytest.raises(InputFileError) as e:
        load(_write(tmp_path, text, "m.jsonl"))
    assert (e.value.line, e.value.field) == (2, "input_length")


def test_mapping_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, "ts,p,c\n1,2,3\n")
    with pytest.raises(InputFileError) as e:
        load(path, mapping={"timestamp": "ts", "input_tokens": "prompt", "output_tokens": "c"})
    assert e.value.field == "prompt"
    with pytest.raises(UsageError, match="lacks 'output_tokens'"):
        load(path, mapping={"timestamp": "ts", "input_tokens": "p"})
    with pytest.raises(UsageError, match="unknown mapping keys"):
        load(path, mapping={"timestamp": "ts", "input_tokens": "p", "output_tokens": "c",
                            "colour": "x"})


def test_otel_bad_token_count_names_span(tmp_path: Path) -> None:
    doc = ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "t", "startTimeUnixNano": '
           '"1000", "attributes": [{"key": "gen_ai.usage.input_tokens", "value": {"stringValue":'
           ' "lots"}}, {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "3"}}]}]}]}]}')
    with pytest.raises(InputFileError) as e:
        load(_write(tmp_path, doc, "o.json"))
    assert e.value.field == "gen_ai.usage.input_tokens"
    assert "span 1" in str(e.value)
