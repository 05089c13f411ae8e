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
        with pytest.warns(UserWarning, match=r"ignored 3 blank lines .*\(lines 4, 5, 9\)"):
            w = load(_write(tmp_path, text), on_error="skip", streaming=streaming)
        assert w.requests == 4 and w.skipped.first_lines == (6,)
        assert any("blank" in n for n in w.warnings)
    with pytest.warns(UserWarning, match=r"ignored 1 blank line without .*\(line 4\)"):
        load(_write(tmp_path, HEADER + GOOD + "\n" + LATER), on_error="skip")
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


def _gzip_variants(tmp_path: Path) -> dict[str, Path]:
    """A gzipped Azure trace (~250 KB of text) cut short (before and after the 64 KiB that
    format detection reads), with one corrupt byte, and with a wrong CRC."""
    import gzip

    rows = "".join(f"2023-11-16 18:{m // 60 % 60:02d}:{m % 60:02d}.0,{m % 997},{m % 89}\n"
                   for m in range(3600)) * 2
    data = gzip.compress((HEADER + rows).encode(), mtime=0)
    out = {"short": data[:3000], "cut": data[: len(data) // 2]}
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0x55
    out["flip"] = bytes(flipped)
    crc = bytearray(data)
    crc[-6] ^= 0x55  # the CRC-32 in the trailer
    out["crc"] = bytes(crc)
    paths = {}
    for name, content in out.items():
        paths[name] = tmp_path / f"{name}.csv.gz"
        paths[name].write_bytes(content)
    return paths


@pytest.mark.parametrize("case", ["short", "cut", "flip", "crc"])
def test_damaged_gzip_is_named_corrupt_or_truncated(tmp_path: Path, case: str) -> None:
    """A cut-off gzip gave no output and exit 130 (an EOFError the CLI took for Ctrl-D), a
    corrupt byte a zlib.error traceback; now all say the file is corrupt or truncated."""
    path = _gzip_variants(tmp_path)[case]
    with pytest.raises(InputFileError, match="gzip file is corrupt or truncated") as e:
        load(str(path))
    assert e.value.path == str(path)


def _mooncake(lines: list[str], tmp_path: Path, name: str = "m.jsonl") -> str:
    return _write(tmp_path, "".join(line + "\n" for line in lines), name)


def _mc(t: int, n_in: int, hashes: str) -> str:
    return f'{{"timestamp": {t}, "input_length": {n_in}, "output_length": 3, "hash_ids": {hashes}}}'


@pytest.mark.parametrize(
    ("hashes", "words"),
    [
        ("[null, 5]", "entry 1 of hash_ids is null"),
        ("[4, [5]]", "entry 2 is not an integer: \\[5\\]"),
        ("7", "hash_ids must be a list of integer block hashes, got 7"),
        ('[4, "x"]', 'entry 2 is not an integer: "x"'),
        ("[4, 99999999999999999999]", "beyond the 64-bit integer range"),
    ],
)
def test_hash_ids_of_the_wrong_type_name_line_and_field(tmp_path: Path, hashes: str,
                                                        words: str) -> None:
    """A null in hash_ids broke prefix reuse (numpy broadcast ValueError) and simulate (a
    TypeError); a nested list raised a polars TypeError; a scalar gave the CSV ragged-line
    message at line 2."""
    lines = [_mc(t, 1000, "[1, 2]") for t in range(4)] + [_mc(9, 1000, hashes)]
    path = _mooncake(lines, tmp_path)
    with pytest.raises(InputFileError, match=words) as e:
        load(path)
    assert (e.value.line, e.value.field) == (5, "hash_ids")


def test_null_hash_id_row_can_be_skipped(tmp_path: Path) -> None:
    lines = [_mc(0, 1000, "[1, 2]"), _mc(1, 1000, "[1, null]"), _mc(2, 1000, "[1, 3]")]
    w = load(_mooncake(lines, tmp_path), on_error="skip")
    assert w.requests == 2 and w.skipped.first_lines == (2,)
    assert "hash_ids" in w.skipped.reasons[0]


def test_more_hash_ids_than_blocks_is_an_error(tmp_path: Path) -> None:
    """One hash per 512-token block (the last may be partial): 10 tokens with 1,000 hashes
    was accepted; fewer hashes than blocks are allowed."""
    ok = [_mc(0, 1024, "[1, 2]"), _mc(1, 1025, "[1, 2, 3]"), _mc(2, 1025, "[1]"),
          _mc(3, 0, "[]")]
    assert load(_mooncake(ok, tmp_path, "ok.jsonl")).requests == 4
    bad = [*ok, _mc(4, 10, "[" + ", ".join(str(i) for i in range(1000)) + "]")]
    with pytest.raises(InputFileError, match="1,000 block hashes for 10 input tokens: at most 1 ") \
            as e:
        load(_mooncake(bad, tmp_path))
    assert (e.value.line, e.value.field) == (5, "hash_ids")


def test_duplicated_header_column_is_an_error(tmp_path: Path) -> None:
    """The first of two same-named columns was used silently."""
    text = "TIMESTAMP,ContextTokens,ContextTokens,GeneratedTokens\n" \
        "2023-11-16 18:15:46.6805900,374,5,44\n2023-11-16 18:15:47.0,396,7,109\n"
    with pytest.raises(InputFileError, match="names column 'ContextTokens' twice") as e:
        load(_write(tmp_path, text))
    assert (e.value.line, e.value.field) == (1, "ContextTokens")


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        ('{"timestamp": 9, "input_length": 5, "output_length": [1], "hash_ids": [1]}',
         "output_length", "output_tokens must be a single number or string, got a list"),
        ('{"timestamp": 9, "input_length": {"a": 1}, "output_length": 1, "hash_ids": [1]}',
         "input_length", "got an object"),
        ('{"timestamp": 9, "input_length": 5, "output_length": 1, "hash_ids": 3}',
         "hash_ids", "must be a list"),
    ],
)
def test_jsonl_values_of_the_wrong_type_name_their_line(tmp_path: Path, bad: str, field: str,
                                                        words: str) -> None:
    """These reported the CSV check's 'line 2: N fields where the header has M'."""
    lines = [_mc(t, 1000, "[1, 2]") for t in range(3)] + [bad, _mc(10, 1000, "[1, 2]")]
    with pytest.raises(InputFileError, match=words) as e:
        load(_mooncake(lines, tmp_path))
    assert (e.value.line, e.value.field) == (4, field)
    assert "fields where the header has" not in str(e.value)


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("late", [False, True])
def test_whole_token_counts_written_as_floats(tmp_path: Path, streaming: bool,
                                              late: bool) -> None:
    """12.0 and 1e3 were read where the typed scan saw them (the first 10,000 rows) and
    refused after them (the text re-read; also what a large streamed file took); now both
    read them, and 12.5 is refused in both with its line and field."""
    many = "".join(f"{i * 0.01:.2f},{100 + i % 7},{5 + i % 3}\n" for i in range(12_000))
    for value, ok in (("12.0", True), ("1e3", True), ("12.5", False)):
        row = f"200,{value},4\n"
        text = "arrival_s,input_tokens,output_tokens\n" + (many + row if late else
                                                           row.replace("200", "0") + many)
        path = _write(tmp_path, text, f"f{ok}.csv")
        line = 12_002 if late else 2
        if ok:
            w = load(path, streaming=streaming)
            assert w.requests == 12_001
            continue
        with pytest.raises(InputFileError, match="non-integer token count") as e:
            load(path, streaming=streaming)
        assert (e.value.line, e.value.field) == (line, "input_tokens")


def test_otel_null_attributes_and_repeated_keys_are_errors(tmp_path: Path) -> None:
    """A span with "attributes": null was dropped silently; a key given twice in one span
    took its last value silently."""
    null = '{"traceId": "t", "spanId": "s1", "startTimeUnixNano": "1", "attributes": null}'
    with pytest.raises(InputFileError, match="span 2: 'attributes' must be a list") as e:
        load(_write(tmp_path, _otel(_span(0, _TOKENS) + ", " + null), "o.json"))
    assert e.value.field == "attributes"
    twice = _TOKENS + ', {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "99"}}'
    with pytest.raises(InputFileError,
                       match=r"attribute 'gen_ai\.usage\.input_tokens' appears twice") as e:
        load(_write(tmp_path, _otel(_span(0, _TOKENS) + ", " + _span(1, twice)), "o.json"))
    assert e.value.field == "gen_ai.usage.input_tokens"


def test_byte_order_mark_accepted_everywhere(tmp_path: Path) -> None:
    """A UTF-8 BOM was read in CSV and JSONL but refused in OTel and LiteLLM JSON."""
    bom = "\ufeff"
    otel = _otel(", ".join(_span(i, _TOKENS) for i in range(2)))
    assert load(_write(tmp_path, bom + otel, "o.json")).requests == 2
    rows = ('[{"startTime": "2024-01-01T00:00:00", "prompt_tokens": 5, "completion_tokens": 2},'
            ' {"startTime": "2024-01-01T00:00:01", "prompt_tokens": 6, "completion_tokens": 3}]')
    assert load(_write(tmp_path, bom + rows, "l.json")).requests == 2
    assert load(_write(tmp_path, bom + HEADER + GOOD)).requests == 2


@pytest.mark.parametrize(("where", "line", "offset"), [("row", 3, 94), ("header", 1, 17)])
def test_latin1_bytes_name_line_and_offset(tmp_path: Path, where: str, line: int,
                                           offset: int) -> None:
    """Latin-1 bytes gave 'cannot read as azure: invalid utf-8 sequence' (no line), or in the
    header an unknown-format error showing a replacement character."""
    text = (HEADER + GOOD).encode()
    if where == "row":
        text = text.replace(b"18:15:47", b"18:15:47\xe9", 1)
    else:
        text = text.replace(b"ContextTokens", b"Context\xe9Tokens", 1)
    path = tmp_path / "l.csv"
    path.write_bytes(text)
    with pytest.raises(InputFileError, match=f"invalid UTF-8 byte 0xe9 at byte offset {offset}") \
            as e:
        load(str(path))
    assert e.value.line == line


@pytest.mark.parametrize("streaming", [False, True])
def test_token_count_beyond_any_context_is_a_bad_row_naming_line_and_field(
        tmp_path: Path, streaming: bool) -> None:
    """2^62 tokens in one request is a wrong column, not a request: it was read, wrapped the
    64-bit per-tenant sums and fell out of the context histogram."""
    huge = "2023-11-16 18:15:48.0,4611686018427387904,5\n"
    with pytest.raises(InputFileError, match=r"4,611,686,018,427,387,904 tokens in one request, "
                                             r"beyond 2,147,483,647") as e:
        load(_write(tmp_path, HEADER + GOOD + huge + LATER), streaming=streaming)
    assert e.value.line == 4 and e.value.field == "ContextTokens"
    w = load(_write(tmp_path, HEADER + GOOD + huge + LATER), on_error="skip",
             streaming=streaming)
    assert w.requests == 4 and w.skipped.first_lines == (4,)
    ok = "2023-11-16 18:15:48.0,2147483647,5\n"  # at the limit: a request
    assert load(_write(tmp_path, HEADER + GOOD + ok + LATER), streaming=streaming).requests == 5
