"""`fleetplan workload ...` end to end through `fleetplan.cli.main`, with a golden JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from fleetplan.cli import main
from fleetplan.workload import load

GOLDEN = Path(__file__).parent / "golden"
FIXTURES = Path(__file__).parent / "fixtures"


def _close(a: Any, b: Any, where: str = "") -> None:
    """Equal JSON trees, floats to 1e-9 relative (last-digit differences across platforms)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {a} != {b}"
    else:
        assert a == b, where


def test_characterize_json_matches_golden(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workload", "characterize", "azure-conv-2023", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = json.loads((GOLDEN / "characterize_azure_conv_2023.json").read_text())
    _close(got, want)
    for key in ("requests", "span_s", "rate_mean_per_s", "rate_peak_per_s", "burst_factor",
                "input_tokens", "output_tokens", "io_ratio"):
        assert key in got
    assert set(got["rate_peak_per_s"]) == {"1s", "1min", "1h"}
    assert set(got["input_tokens"]) == {"p50", "p90", "p95", "p99", "p999", "max", "mean"}


def test_characterize_prefix_reuse_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workload", "characterize", "mooncake-synthetic", "--json",
                 "--cache-blocks", "1000"]) == 0
    got = json.loads(capsys.readouterr().out)
    p = got["prefix_reuse"]
    assert {"repeat_block_fraction", "hit_rate_unbounded", "hit_rate_lru"} <= set(p)
    assert p["hit_rate_lru"] <= p["hit_rate_unbounded"]


@pytest.mark.parametrize(("trace", "blocks", "needle"), [
    ("azure-conv-2023", "100", "has no block hashes"),
    ("mooncake-synthetic", "0", "must be >= 1 block"),
])
def test_cache_blocks_with_nothing_to_simulate_is_refused(
        capsys: pytest.CaptureFixture[str], trace: str, blocks: str, needle: str) -> None:
    """--cache-blocks on a trace without hash_ids only warned, then printed the figures as if
    it had simulated a cache; a size below one block was accepted."""
    assert main(["workload", "characterize", trace, "--cache-blocks", blocks]) == 2
    err = capsys.readouterr().err
    assert "--cache-blocks" in err and needle in err


def test_characterize_table_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    assert main(["workload", "characterize", str(FIXTURES / "burstgpt.csv"),
                 "--html", str(out)]) == 0
    text = capsys.readouterr().out
    assert "requests" in text and "p99.9" in text and "ChatGPT" in text
    page = out.read_text()
    assert page.count("<svg") == 3
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page and "<script" not in page


def test_mapping_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workload", "characterize", str(FIXTURES / "mapped.csv"), "--json", "--map",
                 "timestamp=ts,input_tokens=prompt,output_tokens=completion,tenant=team"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["requests"] == 4
    assert got["by_tenant"][0]["tenant"] == "a"


def test_bad_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "b.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,x,1\n")
    assert main(["workload", "characterize", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "ContextTokens" in err
    assert main(["workload", "characterize", str(bad), "--on-error", "skip"]) == 2  # none left


def test_skip_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "b.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,x,1\n"
                   "2023-11-16 18:15:47.1,5,1\n2023-11-16 18:15:48.1,6,1\n")
    assert main(["workload", "characterize", str(bad), "--on-error", "skip", "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["skipped_rows"] == 1
    assert "skipped 1 bad row of" in cap.err and "(line 2: " in cap.err


def test_skip_report_counts_read_as_written(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """One skipped row is "1 bad row (line 2: ...)", several "2 bad rows (lines 2, 3: ...)"
    (one read "1 bad rows (lines 2: ...)")."""
    bad = tmp_path / "b.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,x,1\n"
                   "2023-11-16 18:15:47.1,y,1\n2023-11-16 18:15:48.1,6,1\n")
    assert main(["workload", "characterize", str(bad), "--on-error", "skip", "--json"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"warning: skipped 2 bad rows of {bad} (lines 2, 3: ContextTokens:" in err


@pytest.mark.parametrize("args", [["azure-conv-2023", "--json"], ["no-such-trace.csv"]])
def test_no_stray_blank_line_on_stderr(capsys: pytest.CaptureFixture[str],
                                       args: list[str]) -> None:
    """The progress display, off a terminal, ended with a blank line on stderr: after the
    JSON of `characterize --json`, and before an error message."""
    main(["workload", "characterize", *args])
    err = capsys.readouterr().err
    assert "\n\n" not in "\n" + err


def test_synth_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.csv"
    args = ["workload", "synth", "--from", "azure-conv-2023", "--rate-scale", "2",
            "--duration", "600", "--arrivals", "gamma", "--cv", "2", "--seed", "1",
            "--out", str(out)]
    assert main(args) == 0
    first = out.read_bytes()
    assert main(args) == 0
    assert out.read_bytes() == first  # seeded: identical file
    w = load(str(out))
    assert 0.7 * 2 * 5.53 < w.requests / 600 < 1.3 * 2 * 5.53
    assert "wrote" in capsys.readouterr().err


def test_regular_arrivals_print_a_zero_cv(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Evenly spaced arrivals have an inter-arrival CV of 0; the table prints 0, not the
    floating-point remainder (~1e-14)."""
    trace = tmp_path / "regular.csv"
    rows = [f"2024-05-10 00:00:{i // 10:02d}.{i % 10}000000,{100 + i},{10 + i}" for i in range(50)]
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    assert main(["workload", "characterize", str(trace)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "inter-arrival CV" in x)
    assert line.split("│")[2].strip() == "0"


def test_tenant_names_with_brackets_print_verbatim(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Tenant names come from the user's trace: square brackets in them are text, not console
    markup ('team[/a]' used to raise a markup error, '[bold]' vanished)."""
    src = (FIXTURES / "mapped.csv").read_text().replace(",a\n", ",team[/a]\n").replace(
        ",b\n", ",x[bold]y\n")
    trace = tmp_path / "brackets.csv"
    trace.write_text(src)
    assert main(["workload", "characterize", str(trace), "--map",
                 "timestamp=ts,input_tokens=prompt,output_tokens=completion,tenant=team"]) == 0
    out = capsys.readouterr().out
    assert "team[/a]" in out and "x[bold]y" in out


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--rate-scale", "nan"], "--rate-scale: must be a finite number > 0, got nan"),
        (["--rate-scale", "inf"], "--rate-scale: must be a finite number > 0, got inf"),
        (["--time-stretch", "0"], "--time-stretch: must be a finite number > 0"),
        (["--duration", "1e12"], "--duration: 5.53 requests/s for 1e+12 s"),
    ],
)
def test_synth_bad_numbers_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  extra: list[str], needle: str) -> None:
    """NaN/inf scales raised a traceback; a huge duration tried to allocate terabytes."""
    out = tmp_path / "s.csv"
    assert main(["workload", "synth", "--from", "azure-conv-2023", "--out", str(out),
                 *extra]) == 2
    assert needle in " ".join(capsys.readouterr().err.split())
    assert not out.exists()


def test_map_key_given_twice_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workload", "characterize", str(FIXTURES / "mapped.csv"), "--map",
                 "timestamp=ts,timestamp=prompt,input_tokens=prompt,output_tokens=completion"]
                ) == 2
    assert "--map: 'timestamp' is mapped twice" in capsys.readouterr().err


def test_even_arrivals_have_a_burst_factor_of_at_least_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """3 requests 1 s apart: mean 1.5/s over the 2 s span; the 1 s bins each hold 1, which
    read as a burst factor of 0.667 before the peak was held to at least the mean."""
    f = tmp_path / "even.csv"
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1,1\n"
                 "2023-11-16 18:15:47,1,1\n2023-11-16 18:15:48,1,1\n")
    assert main(["workload", "characterize", str(f), "--json"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["rate_mean_per_s"] == 1.5
    assert c["burst_factor"]["1s"] == 1.0 and c["rate_peak_per_s"]["1s"] == 1.5


def test_truncated_gzip_exits_2_not_130(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The EOFError of a cut-off gzip reached the CLI, which took it for Ctrl-D: no message,
    exit 130."""
    import gzip

    rows = "".join(f"2023-11-16 18:15:{s:02d}.0,{s + 1},1\n" for s in range(60))
    data = gzip.compress(("TIMESTAMP,ContextTokens,GeneratedTokens\n" + rows).encode())
    trace = tmp_path / "t.csv.gz"
    trace.write_bytes(data[: len(data) - 20])
    assert main(["workload", "characterize", str(trace)]) == 2
    assert "gzip file is corrupt or truncated" in " ".join(capsys.readouterr().err.split())


def test_synth_refuses_to_overwrite_its_source(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.csv"
    src.write_bytes((FIXTURES / "azure_2023.csv").read_bytes())
    before = src.read_bytes()
    assert main(["workload", "synth", "--from", str(src), "--out",
                 str(tmp_path / "." / "a.csv")]) == 2
    assert "--out" in capsys.readouterr().err
    assert src.read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--cv", "2"], "--cv: applies only to --arrivals gamma, not poisson"),
        (["--burst", "3"], "--burst: applies only to --arrivals mmpp, not poisson"),
        (["--arrivals", "gamma", "--burst", "3"], "--burst: applies only to --arrivals mmpp"),
        (["--arrivals", "mmpp", "--cv", "2"], "--cv: applies only to --arrivals gamma"),
    ],
)
def test_synth_refuses_flags_the_arrival_process_ignores(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
        needle: str) -> None:
    """--cv and --burst were silently ignored with the default poisson arrivals."""
    out = tmp_path / "s.csv"
    assert main(["workload", "synth", "--from", "azure-conv-2023", "--out", str(out),
                 *extra]) == 2
    assert needle in " ".join(capsys.readouterr().err.split())
    assert not out.exists()


def test_figures_near_a_power_of_ten_print_as_numbers_not_exponents() -> None:
    """`.3g` (terminal) and `.4g` (HTML) turn 999.7 and 9,999.7 into "1e+03" and "1e+04";
    a missing tenant or model shows as "-" in both, as JSON's null."""
    from fleetplan.cli.workload import _num
    from fleetplan.workload.report_html import _fmt

    assert _num(999.7) == "1,000" and _num(999.4) == "999" and _num(12.345) == "12.3"
    assert _fmt(9999.7) == "10,000" and _fmt(9999.4) == "9,999" and _fmt(12.345) == "12.35"
    assert _num(None) == "-" and _fmt(None) == "-"
    for v in (999.5, 1000.0, 123456.7, 9999.5):
        assert "e+" not in _num(v) and "e+" not in _fmt(v)
