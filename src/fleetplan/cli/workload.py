"""`fleetplan workload characterize|synth`: read traces, measure them, make synthetic ones."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleetplan.cli._app import app, check_writable, console, err_console, write_text, writing
from fleetplan.errors import UsageError
from fleetplan.workload import FORMATS, Characterization, Workload, characterize, load
from fleetplan.workload.report_html import render_html
from fleetplan.workload.synthetic import (
    ARRIVALS,
    LENGTHS,
    check_arrival_options,
    generate,
    write,
)

workload_app = typer.Typer(help="Read request traces, characterize them, synthesize workloads.")
app.add_typer(workload_app, name="workload")

T = TypeVar("T")

FormatOpt = Annotated[str | None, typer.Option(
    "--format", help=f"Trace reader, instead of detecting it: {', '.join(FORMATS)}.")]
MapOpt = Annotated[str | None, typer.Option(
    "--map", help="Column mapping, e.g. timestamp=ts,input_tokens=prompt,output_tokens=completion")]
OnErrorOpt = Annotated[str, typer.Option(
    "--on-error", help="raise: stop at the first bad row; skip: leave bad rows out, report them")]


def parse_mapping(text: str | None) -> dict[str, str] | None:
    """`a=b,c=d` → {"a": "b", "c": "d"}."""
    if not text:
        return None
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"expected name=column, got '{part}'", where="--map")
        if key.strip() in out:
            raise UsageError(f"'{key.strip()}' is mapped twice", where="--map")
        out[key.strip()] = value.strip()
    return out


@contextmanager
def _progress() -> Iterator[Callable[[str, Callable[[], T]], T]]:
    cols = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    # a spinner only on a terminal: elsewhere Rich ends a progress display with a blank line
    with Progress(*cols, console=err_console, transient=True,
                  disable=not err_console.is_interactive) as bar:

        def step(what: str, fn: Callable[[], T]) -> T:
            task = bar.add_task(what, total=None)
            try:
                return fn()
            finally:
                bar.remove_task(task)

        yield step


@contextmanager
def reported_warnings() -> Iterator[None]:
    """Print the warnings raised inside (a trace's ignored blank lines, ...) as `warning: ...`
    lines, without Python's source location; also when the body raises."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warn in caught:
                err_console.print(f"[yellow]warning:[/] {escape(str(warn.message))}",
                                  highlight=False)


def _load(path: str, fmt: str | None, mapping: str | None, on_error: str) -> Workload:
    with reported_warnings():
        w = load(path, format=fmt, mapping=parse_mapping(mapping), on_error=on_error)
    if w.skipped:
        err_console.print(f"[yellow]warning:[/] {escape(w.skipped.describe(path))}",
                          highlight=False)
    return w


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) < 1e-9:  # rounding noise of an exact zero (e.g. the CV of regular arrivals)
            return "0"
        # three significant digits below 1,000 (999.5 would round to "1e+03"), whole above
        return f"{v:,.3g}" if abs(v) < 999.5 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _print_tables(c: Characterization) -> None:
    d = c.to_dict()
    t = Table("figure", "value", title=f"Workload {c.source} ({c.format})")
    t.add_row("requests", _num(c.requests))
    t.add_row("span", f"{c.span_s:,.1f} s ({c.span_s / 60:,.1f} min)")
    t.add_row("mean rate", f"{_num(c.rate_mean_per_s)} req/s")
    for k in ("1s", "1min", "1h"):
        t.add_row(f"peak rate ({k} bins)", f"{_num(c.rate_peak_per_s[k])} req/s, burst "
                  f"factor {_num(c.burst_factor[k])}")
    t.add_row("inter-arrival CV", _num(c.interarrival_cv))
    t.add_row("input:output ratio of means", _num(c.io_ratio))
    tail = c.output_tail
    t.add_row("output tail", f"lognormal sigma {_num(tail.lognormal_sigma)} (KS "
              f"{_num(tail.lognormal_ks)}), Hill alpha {_num(tail.hill_alpha)} (KS "
              f"{_num(tail.hill_ks)})")
    if c.prefix_reuse:
        p = c.prefix_reuse
        t.add_row("repeated blocks", _num(p.repeat_block_fraction))
        t.add_row("prefix hit rate (unbounded)", _num(p.hit_rate_unbounded))
        if p.hit_rate_lru is not None:
            t.add_row(f"prefix hit rate (LRU {p.cache_blocks:,} blocks)", _num(p.hit_rate_lru))
    if c.workflows:
        wf = c.workflows
        t.add_row("workflows", _num(wf["workflows"]))
        t.add_row("calls per workflow (mean)", _num(wf["calls_per_workflow"]["mean"]))
        if "token_inflation" in wf:
            t.add_row("token inflation (mean)", _num(wf["token_inflation"]["mean"]))
    console.print(t)
    tok = Table("tokens", "p50", "p90", "p95", "p99", "p99.9", "max", "mean")
    for side in ("input_tokens", "output_tokens"):
        s = d[side]
        tok.add_row(side, *(_num(s[k]) for k in ("p50", "p90", "p95", "p99", "p999", "max",
                                                   "mean")))
    console.print(tok)
    for key, rows in (("tenant", c.by_tenant), ("model", c.by_model)):
        if rows:
            g = Table(key, "requests", "share", "input mean", "output mean")
            for r in rows[:15]:
                g.add_row(escape(_num(r[key])), _num(r["requests"]), f"{r['share']:.1%}",
                          _num(r["input_tokens_mean"]), _num(r["output_tokens_mean"]))
            console.print(g)


@workload_app.command("characterize")
def characterize_cmd(
    trace: Annotated[str, typer.Argument(help="Trace file or preset name.")],
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write an HTML report.")] = None,
    cache_blocks: Annotated[int | None, typer.Option(
        "--cache-blocks", help="Also simulate an LRU prefix cache of N KV blocks; needs a trace "
        "with hash_ids (e.g. Mooncake), one per block (Mooncake: 512 tokens; --map "
        "block_tokens=N for other files).")] = None,
    fmt: FormatOpt = None,
    mapping: MapOpt = None,
    on_error: OnErrorOpt = "raise",
) -> None:
    """Measure a trace: rates, burstiness, token percentiles, tails, prefix reuse."""
    check_writable(html_out, "--html", (".html", ".htm"))
    if cache_blocks is not None and cache_blocks < 1:
        raise UsageError(f"must be >= 1 block, got {cache_blocks}", where="--cache-blocks")
    with _progress() as step:
        w = step(f"reading {trace}", lambda: _load(trace, fmt, mapping, on_error))
        if cache_blocks is not None and not w.has_hashes:
            raise UsageError(f"{trace} has no block hashes (hash_ids, as Mooncake traces "
                             "have): there is no prefix cache to simulate", where="--cache-blocks")
        c = step("characterizing", lambda: characterize(w, cache_blocks=cache_blocks))
    if html_out is not None:
        write_text(html_out, render_html(c), "--html")
        err_console.print(f"wrote {html_out}", highlight=False)
    if as_json:
        print(json.dumps(c.to_dict(), indent=2))
    else:
        _print_tables(c)


@workload_app.command("synth")
def synth_cmd(
    *,
    source: Annotated[str, typer.Option("--from", help="Trace file or preset to imitate.")],
    out: Annotated[Path, typer.Option("--out", help="Output CSV (or .parquet).")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    rate_scale: Annotated[float, typer.Option("--rate-scale", help="Multiply the rate.")] = 1.0,
    time_stretch: Annotated[float, typer.Option(
        "--time-stretch", help="Stretch time (divides the rate).")] = 1.0,
    duration: Annotated[float | None, typer.Option(
        "--duration", help="Seconds to generate (default: source span x stretch).")] = None,
    arrivals: Annotated[str, typer.Option(
        "--arrivals", help=f"Arrival process: {', '.join(ARRIVALS)}.")] = "poisson",
    cv: Annotated[float | None, typer.Option(
        "--cv", help="Gamma inter-arrival CV (default: measured).")] = None,
    burst: Annotated[float | None, typer.Option(
        "--burst", help="MMPP high-state rate / mean (default: measured 1 min burst).")] = None,
    lengths: Annotated[str, typer.Option(
        "--lengths", help=f"Length model: {', '.join(LENGTHS)}.")] = "empirical",
    fmt: FormatOpt = None,
    mapping: MapOpt = None,
    on_error: OnErrorOpt = "raise",
) -> None:
    """Generate a seeded synthetic workload shaped like a trace."""
    check_writable(out, "--out", (".csv", ".parquet"))
    check_arrival_options(arrivals, cv, burst)  # before the trace is read
    if out.exists() and Path(source).exists() and out.samefile(source):
        raise UsageError(f"'{out}' is the --from trace: writing it would overwrite the input; "
                         "give another file", where="--out")
    with _progress() as step:
        w = step(f"reading {source}", lambda: _load(source, fmt, mapping, on_error))
        s = step("generating", lambda: generate(
            w, seed=seed, duration_s=duration, rate_scale=rate_scale, time_stretch=time_stretch,
            arrivals=arrivals, cv=cv, burst=burst, lengths=lengths))
        step(f"writing {out}", lambda: writing(out, "--out", lambda: write(s, out)))
    span = float(s.table["arrival_s"][-1]) if s.requests else 0.0
    err_console.print(f"wrote {s.requests:,} requests over {span:,.1f} s to {out}",
                      highlight=False)
