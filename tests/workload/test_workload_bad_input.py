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


@pytest.mark.parametrize(
    ("text", "name", "line", "words"),
    [  # an infinite time, a mistyped year, a 1970 epoch beside 2023 rows
        ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
         "5,ChatGPT,472,18,490,x\ninf,ChatGPT,10,10,20,x\n", "b.csv", 3, "an infinite timestamp"),
        (HEADER + GOOD + "2203-11-16 18:15:47.1,100,20\n", "t.csv", 4,
         r"span 65,743 days after the first request \(line 2\), more than the 366"),
        (HEADER + "1970-01-01 00:00:00,1,1\n" + GOOD, "t.csv", None,
         r"after the first request \(line 2\)"),
    ],
)
def test_timestamps_that_would_exhaust_memory_are_errors(
        tmp_path: Path, text: str, name: str, line: int | None, words: str) -> None:
    """The rate statistics keep a counter per second of the span: an infinite or mistyped time
    used to raise a traceback or ask for tens of GiB; now it names the line."""
    path = _write(tmp_path, text, name)
    for streaming in (False, True):
        with pytest.raises(InputFileError, match=words) as e:
            load(path, streaming=streaming)
        assert e.value.line == line or line is None


def test_blank_lines_are_ignored_with_a_warning_naming_them(tmp_path: Path) -> None:
    """A blank line (or bare separators) holds nothing: ignored and named, not an error; the
    line numbers of later bad rows stay right."""
    text = HEADER + GOOD + "\n" + ",,\n" + "2023-11-16 18:15:49.0,-4,1\n" + LATER + "\n"
    for streaming in (False, True):
        with pytest.warns(UserWarning, match=r"ignored 3 blank line\(s\).*\(lines 4, 5, 9\)"):
            w = load(_write(tmp_path, text), on_error="skip", streaming=streaming)
        assert w.requests == 4 and w.skipped.first_lines == (6,)
        assert any("blank" in n for n in w.warnings)
    with pytest.raises(InputFileError, match="every line is blank"):
        load(_write(tmp_path, HEADER + "\n\n"))


def test_jsonl_lines_counted_across_blank_lines_bom_and_bad_json(tmp_path: Path) -> None:
    good = '{"timestamp": 0, "input_length": 5, "output_length": 1}\n'
    bad = '{"timestamp": 9, "input_length": -4, "output_length": 1}\n'
    with pytest.raises(InputFileError) as e:
        load(_write(tmp_path, good + "\n\n" + bad, "m.jsonl"))
    assert (e.value.line, e.value.field) == (4, "input_length")
    w = load(_write(tmp_path, "\ufeff" + good + good.replace('"timestamp": 0', '"timestamp": 7'),
                    "bom.jsonl"))
    assert w.requests == 2
    with pytest.raises(InputFileError, match="line 2: invalid JSON") as e:
        load(_write(tmp_path, good + good[:-2] + "\n", "cut.jsonl"))
    with pytest.raises(InputFileError, match="line 3: expected a JSON object"):
        load(_write(tmp_path, good + good + "[1, 2]\n", "arr.jsonl"))


def test_csv_lines_counted_across_quoted_newlines_and_ragged_rows(tmp_path: Path) -> None:
    text = HEADER + GOOD + '"2023-11-16 18:15:48.0","1\n2",4\n' + "2023-11-16 18:15:49.0,-1,1\n"
    w = load(_write(tmp_path, text), on_error="skip")
    assert w.skipped.first_lines == (4, 6)  # the quoted field spans lines 4-5
    with pytest.raises(InputFileError) as e:
        load(_write(tmp_path, HEADER + GOOD + "2023-11-16 18:15:48.0,1,2,99\n"))
    assert e.value.line == 4 and "4 fields where the header has 3" in str(e.value)
    with pytest.raises(InputFileError) as e:
        load(_write(tmp_path, HEADER + GOOD + "2023-11-16 18:15:48.0,99999999999999999999,2\n"))
    assert (e.value.line, e.value.field) == (4, "ContextTokens")
    assert "beyond the 64-bit integer range" in str(e.value)


def test_mapping_values_checked(tmp_path: Path) -> None:
    """A block size below 1 and hash ids that are not integer lists are errors; date-time
    strings are read as times without timestamp_unit (the documented default)."""
    text = ('{"t": 0, "i": 100, "o": 10, "h": [0, 1]}\n'
            '{"t": 1, "i": 100, "o": 20, "h": [0, 1]}\n')
    path = _write(tmp_path, text, "j.jsonl")
    base = {"timestamp": "t", "input_tokens": "i", "output_tokens": "o", "hash_ids": "h"}
    for bad in ("0", "-16"):
        with pytest.raises(UsageError, match="block_tokens must be >= 1"):
            load(path, mapping={**base, "block_tokens": bad})
    csv_path = _write(tmp_path, "ts,i,o,team\n2024-01-01 00:00:00,10,1,a\n"
                      "2024-01-01T00:00:02Z,20,2,b\n", "d.csv")
    cols = {"timestamp": "ts", "input_tokens": "i", "output_tokens": "o"}
    with pytest.raises(InputFileError, match="hash_ids must hold a list of integer") as e:
        load(csv_path, mapping={**cols, "hash_ids": "team", "block_tokens": "16"})
    assert e.value.field == "team"
    one = _write(tmp_path, "ts,i,o\n2024-01-01 00:00:00,10,1\n2024-01-01 00:00:02,20,2\n",
                 "e.csv")
    w = load(one, mapping=cols)
    assert w.table["arrival_s"].to_list() == [0.0, 2.0] and w.start_epoch_s == 1704067200.0


def test_gzipped_parquet_is_refused_with_the_fix(tmp_path: Path) -> None:
    import gzip

    import polars as pl

    pq = tmp_path / "t.parquet"
    pl.DataFrame({"arrival_s": [0.0, 1.0], "input_tokens": [1, 2],
                  "output_tokens": [3, 4]}).write_parquet(pq)
    gz = tmp_path / "t.parquet.gz"
    gz.write_bytes(gzip.compress(pq.read_bytes()))
    with pytest.raises(InputFileError, match="gunzip it first"):
        load(str(gz))


def _otel(spans: str) -> str:
    return '{"resourceSpans": [{"scopeSpans": [{"spans": [' + spans + ']}]}]}'


def _span(i: int, attrs: str, t: str | None = None, span_id: str | None = None) -> str:
    return (f'{{"traceId": "t", "spanId": "{span_id or f"s{i}"}", "startTimeUnixNano": '
            f'"{t or 1_700_000_000_000_000_000 + i * 10**9}", "attributes": [{attrs}]}}')


_TOKENS = ('{"key": "gen_ai.usage.input_tokens", "value": {"intValue": "10"}}, '
           '{"key": "gen_ai.usage.output_tokens", "value": {"intValue": "3"}}')


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ('{"resourceSpans": {"a": 1}}', "'resourceSpans' must be a list"),
        (_otel('"x"'), "each of 'spans' must be an object"),
        (_otel(_span(0, _TOKENS) + ', 5'), "each of 'spans' must be an object, got 5"),
        (_otel(_span(0, '{"key": "gen_ai.usage.input_tokens", "value": 5}')),
         "span 1: an attribute value must be an OTLP AnyValue object"),
        (_otel(_span(0, _TOKENS).replace('"attributes": [', '"attributes": {"a": [')
               .replace(']}', ']}}', 1)), "'attributes' must be a list"),
    ],
)
def test_otel_objects_of_the_wrong_type_name_the_span(tmp_path: Path, doc: str,
                                                      words: str) -> None:
    """These raised AttributeError / TypeError tracebacks, or dropped the span silently."""
    with pytest.raises(InputFileError, match=words):
        load(_write(tmp_path, doc, "o.json"))


def test_otel_call_reporting_only_output_tokens_is_a_bad_row_not_dropped(tmp_path: Path) -> None:
    out_only = '{"key": "gen_ai.usage.output_tokens", "value": {"intValue": "3"}}'
    path = _write(tmp_path, _otel(_span(0, _TOKENS) + ", " + _span(1, out_only)), "o.json")
    with pytest.raises(InputFileError, match="span 2: missing value for input_tokens"):
        load(path)
    assert load(path, on_error="skip").skipped.count == 1


def test_otel_duplicate_spans_counted_once_and_whole_doubles_read(tmp_path: Path) -> None:
    double = _TOKENS.replace('{"intValue": "10"}', '{"doubleValue": 10.0}')
    spans = ", ".join([_span(0, _TOKENS), _span(1, double), _span(0, _TOKENS)])
    with pytest.warns(UserWarning, match=r"ignored 1 span\(s\).*span 3 repeats span 1"):
        w = load(_write(tmp_path, _otel(spans), "o.json"))
    assert w.requests == 2 and w.table["input_tokens"].to_list() == [10, 10]


def test_otel_times_in_seconds_are_a_unit_mistake(tmp_path: Path) -> None:
    spans = ", ".join(_span(i, _TOKENS, t=str(1_700_000_000 + i)) for i in range(3))
    with pytest.raises(InputFileError, match="look like seconds or milliseconds"):
        load(_write(tmp_path, _otel(spans), "o.json"))
