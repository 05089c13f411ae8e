"""The streaming path (large files, bounded memory) gives the in-memory path's results."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from fleetplan.errors import InputFileError
from fleetplan.workload import Workload, _stream, characterize, load, presets
from fleetplan.workload import _load as load_module
from fleetplan.workload._stream import StreamedWorkload

MAPPING = {"timestamp": "ts", "input_tokens": "prompt", "output_tokens": "completion",
           "tenant": "team", "model": "llm"}


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal JSON, floats to 1e-9 relative."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=0.0), where
    else:
        assert a == b, where


def _both(path: str, **kw: Any) -> tuple[Workload, Workload]:
    return load(path, streaming=True, **kw), load(path, streaming=False, **kw)


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many batches even for small files, so the merging across batches is exercised."""
    monkeypatch.setattr(_stream, "CHUNK_ROWS", 997)


@pytest.mark.parametrize("name", presets())
def test_presets_same_json(name: str) -> None:
    s, m = _both(name)
    # Mooncake has hash_ids (prefix reuse needs every request): it stays in memory.
    assert isinstance(s, StreamedWorkload) == (name != "mooncake-synthetic")
    assert_same(characterize(s, cache_blocks=1000).to_dict(),
                characterize(m, cache_blocks=1000).to_dict())


def _trace(rows: int, *, seed: int = 0, epoch: bool = True) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.exponential(0.05, rows).cumsum() * rng.uniform(0.5, 2.0))
    completion = np.rint(rng.lognormal(5.0, 1.2, rows)).astype(np.int64)
    completion[::4001] = 2**27 + np.arange(completion[::4001].size)  # beyond the bincount
    return pl.DataFrame({
        "ts": ts + (1.7e9 if epoch else 0.0),
        "prompt": np.rint(rng.lognormal(7.0, 1.0, rows)).astype(np.int64),
        "completion": completion,
        "team": rng.choice(["a", "b", "c", None], rows).tolist(),
        "llm": rng.choice([f"m{i}" for i in range(60)], rows).tolist(),
    })


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_generated_file_same_json(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"t{suffix}"
    table = _trace(20_000)
    {".parquet": table.write_parquet, ".csv": table.write_csv,
     ".jsonl": table.write_ndjson}[suffix](path)
    s, m = _both(str(path), mapping=MAPPING)
    assert isinstance(s, StreamedWorkload)
    cs, cm = characterize(s).to_dict(), characterize(m).to_dict()
    assert cs["by_tenant"] and len(cs["by_model"]) == 50
    assert_same(cs, cm)
    assert s.start_epoch_s == m.start_epoch_s and s.requests == m.requests == 20_000
    assert s.table.equals(m.table)  # read on demand, the in-memory table


def test_long_relative_trace_has_a_profile(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    t = _trace(5000, seed=1, epoch=False)
    t.with_columns(pl.col("ts") * 2000).write_parquet(path)  # > 1 day, relative times
    s, m = _both(str(path), mapping=MAPPING)
    cs = characterize(s).to_dict()
    assert "profile" in cs and s.start_epoch_s is None
    assert_same(cs, characterize(m).to_dict())


def test_auto_streams_plain_files_above_threshold(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.csv"
    _trace(3000).write_csv(path)
    assert not isinstance(load(str(path), mapping=MAPPING), StreamedWorkload)
    monkeypatch.setattr(load_module, "STREAM_MIN_BYTES", 0)
    w = load(str(path), mapping=MAPPING)
    assert isinstance(w, StreamedWorkload)
    assert "StreamedWorkload" in repr(w)
    replaced = dataclasses.replace(w, table=w.table.head(10))
    assert replaced.requests == 10 and characterize(replaced).requests == 10


HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def _azure(tmp_path: Path, bad: dict[int, str], rows: int = 3000) -> str:
    lines = [f"2023-11-16 18:{15 + i // 3600:02d}:{i % 3600 // 60:02d}.{i % 60:07d},"
             f"{100 + i % 7},{20 + i % 5}\n" for i in range(rows)]
    for i, text in bad.items():
        lines[i] = text
    path = tmp_path / "a.csv"
    path.write_text(HEADER + "".join(lines))
    return str(path)


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ("2023-11-16 18:15:48.0000000,abc,5\n", "ContextTokens", "non-numeric"),
        ("2023-11-16 18:15:48.0000000,12,-3\n", "GeneratedTokens", "negative"),
        ("yesterday at noon,12,3\n", "TIMESTAMP", "unparseable timestamp"),
    ],
)
def test_bad_rows_same_errors(tmp_path: Path, row: str, field: str, words: str) -> None:
    path = _azure(tmp_path, {2500: row, 2700: row})
    errors = []
    for streaming in (True, False):
        with pytest.raises(InputFileError) as e:
            load(path, format="azure", streaming=streaming)
        errors.append((str(e.value), e.value.line, e.value.field))
    assert errors[0] == errors[1]
    assert errors[0][1:] == (2502, field) and words in errors[0][0]
    assert "2 bad rows" in errors[0][0]


def test_skip_same_report_and_figures(tmp_path: Path) -> None:
    bad = dict.fromkeys(range(5, 2900, 290), "2023-11-16 18:15:48.0000000,12,-3\n")
    s, m = _both(_azure(tmp_path, bad), format="azure", on_error="skip")
    assert isinstance(s, StreamedWorkload)
    assert s.skipped == m.skipped and s.skipped.count == 10
    assert s.skipped.first_lines == (7, 297, 587, 877, 1167)
    assert_same(characterize(s).to_dict(), characterize(m).to_dict())


def test_unsorted_falls_back_to_memory_with_warning(tmp_path: Path) -> None:
    lines = (HEADER + "".join(f"2023-11-16 18:15:{(i * 37) % 60:02d}.0000000,{i},{i + 1}\n"
                              for i in range(2000)))
    path = tmp_path / "u.csv"
    path.write_text(lines)
    with pytest.warns(UserWarning, match="not in order"):
        w = load(str(path), format="azure", streaming=True)
    assert not isinstance(w, StreamedWorkload)
    assert w.table["arrival_s"].is_sorted()
