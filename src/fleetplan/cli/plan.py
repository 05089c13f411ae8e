"""`fleetplan plan`: the capacity worksheet and the ranked, priced candidate table."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from fleetplan.catalog import get_engine, get_gpu, get_model, get_quant, load_catalog
from fleetplan.cli._app import ENGINES, app, console, err_console
from fleetplan.cli.workload import FormatOpt, MapOpt, parse_mapping, reported_warnings
from fleetplan.errors import UsageError
from fleetplan.plan import (
    PlanFactors,
    demand_presets,
    make_plan,
    pareto,
    parse_slo,
    resolve_demand,
)
from fleetplan.plan.slo import SLO_FORM
from fleetplan.plan.verify import DEFAULT_REQUESTS
from fleetplan.plan.worksheet import Plan
from fleetplan.workload import RATE_BINS_S, presets

DEFAULT_GPUS = "h100-sxm,h200-sxm,b200,a100-sxm-80gb,l40s,mi300x"


#: Upper bounds of the simulation check (a guard against typos: 1e9 runs would not end).
MAX_MC_RUNS = 1000
MAX_SIM_REQUESTS = 1_000_000
#: The simulation check's settings when their flags are not given.
DEFAULT_MC_RUNS = 3
DEFAULT_BURST_BIN = "1min"
#: Exit status of a plan that ran but found no feasible candidate (bad input exits with 2).
NO_FEASIBLE_EXIT = 1


def _split(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _tps(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in _split(text))
    except ValueError:
        raise UsageError(
            f"expected comma-separated integers such as 1,2,4,8, got '{text}'", where="--tp"
        ) from None
    if not out or any(t < 1 for t in out):
        raise UsageError(f"each TP size must be >= 1, got '{text}'", where="--tp")
    return tuple(dict.fromkeys(out))  # a size given twice is tried once


@app.command()
def plan(
    model: Annotated[
        str, typer.Option("--model", help="catalog name, alias, Hugging Face id, or a "
                          "config.json (the file or its folder)")
    ] = "llama-3.1-70b",
    gpus: Annotated[
        str, typer.Option("--gpus", help="comma-separated GPU names ('all' for every GPU)")
    ] = DEFAULT_GPUS,
    workload: Annotated[
        str | None,
        typer.Option(
            "--workload", help="preset (chat, code, long-context), trace preset or trace file"
        ),
    ] = None,
    rate: Annotated[float | None, typer.Option(
        "--rate", help="mean requests per second; with --workload it replaces the workload's "
        "mean rate (a trace's arrivals are replayed faster or slower to match it)")] = None,
    isl: Annotated[int | None, typer.Option(
        "--isl", help="input tokens per request: without --workload every request has this "
        "many; with it, the workload's input lengths are scaled so their mean is this")] = None,
    osl: Annotated[int | None, typer.Option(
        "--osl", help="output tokens per request: without --workload every request has this "
        "many; with it, the workload's output lengths are scaled so their mean is this")] = None,
    slo: Annotated[
        str, typer.Option("--slo", help=f"latency targets: {SLO_FORM}")
    ] = "ttft_p95=2s,tpot_p95=50ms",
    engine: Annotated[str, typer.Option(
        "--engine", help=f"serving engine: {', '.join(ENGINES)}")] = "vllm",
    precisions: Annotated[
        str | None,
        typer.Option(
            "--precision", help="comma-separated; default: every one the engine and GPU support"
        ),
    ] = None,
    tp: Annotated[str, typer.Option("--tp", help="TP sizes to try")] = "1,2,4,8",
    kv_precision: Annotated[
        str | None,
        typer.Option(
            "--kv-precision",
            help="KV-cache dtype (bf16, fp8); default: the weight precision's (FP8 KV with "
            "FP8/FP4 weights: vLLM and SGLang need their --kv-cache-dtype flag for it)",
        ),
    ] = None,
    max_quality_cost: Annotated[
        float | None,
        typer.Option(
            "--max-quality-cost",
            help="skip precisions whose typical accuracy drop exceeds this fraction (e.g. 0.01)",
        ),
    ] = None,
    burst: Annotated[
        float | None,
        typer.Option("--burst", help="peak/mean arrival-rate factor the fleet is sized for "
                     "(default: measured from a trace --workload, else 3)"),
    ] = None,
    burst_bin: Annotated[
        str | None, typer.Option(
            "--burst-bin", help=f"bin of the burst factor measured from a trace --workload: "
            f"{', '.join(RATE_BINS_S)} (default: {DEFAULT_BURST_BIN}; not with --burst)")
    ] = None,
    headroom: Annotated[float, typer.Option(
        "--headroom", help="spare capacity above the burst peak: GPUs x(1 + headroom); "
        "0.4 = 40% more")] = 0.40,
    efficiency_tax: Annotated[float, typer.Option(
        "--efficiency-tax", help="multiplicative tax on the theoretical minimum: GPUs "
        "x(1 + tax); 0.2 = 20% more, in [0, 1)")] = 0.20,
    check: Annotated[
        bool,
        typer.Option("--check/--no-check", help="verify the best candidate in the simulator"),
    ] = True,
    mc_runs: Annotated[
        int | None,
        typer.Option("--mc-runs",
                     help="Monte Carlo runs of the check: Poisson draws, or windows of a trace "
                     f"(default: {DEFAULT_MC_RUNS})"),
    ] = None,
    sim_requests: Annotated[int | None, typer.Option(
        "--sim-requests",
        help=f"requests per run of the check (default: at least {DEFAULT_REQUESTS:,}, and "
        "enough arrivals at the peak rate for 3 request lifetimes, at most 10,000)")] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="seed of the check's random draws: lengths, trace windows, arrivals "
        "(default: 0)")] = None,
    top: Annotated[int, typer.Option("--top", help="rows of the ranked table")] = 15,
    fmt: FormatOpt = None,
    mapping: MapOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
) -> None:
    """Size and price a fleet for a model, a workload and SLO targets.

    Exits with status 1 when no candidate is feasible (the table says why each one fails),
    2 on bad input.
    """
    targets = parse_slo(slo)
    if top < 1:
        raise UsageError(f"must be >= 1, got {top}", where="--top")
    _refuse_ignored(workload, burst, burst_bin, check, mc_runs=mc_runs,
                    sim_requests=sim_requests, seed=seed)
    mc_runs = DEFAULT_MC_RUNS if mc_runs is None else mc_runs
    seed = 0 if seed is None else seed
    if not 1 <= mc_runs <= MAX_MC_RUNS:
        raise UsageError(f"must be in [1, {MAX_MC_RUNS}], got {mc_runs}", where="--mc-runs")
    if seed < 0:
        raise UsageError(f"must be >= 0, got {seed}", where="--seed")
    if sim_requests is not None and not 10 <= sim_requests <= MAX_SIM_REQUESTS:
        raise UsageError(f"must be in [10, {MAX_SIM_REQUESTS:,}], got {sim_requests}",
                         where="--sim-requests")
    with (reported_warnings(),
          err_console.status(f"reading workload {workload} ..." if workload else "planning ...")):
        demand = resolve_demand(workload, rate, isl, osl, burst_bin=burst_bin or DEFAULT_BURST_BIN,
                                fmt=fmt, mapping=parse_mapping(mapping))
    m = get_model(model, where="--model")
    gpu_names = list(load_catalog().gpus) if gpus.strip().lower() == "all" else _split(gpus)
    if not gpu_names:
        raise UsageError("no GPU given; name one or more (e.g. h100-sxm,b200) or 'all'",
                         where="--gpus")
    gpu_list = [get_gpu(g, where="--gpus") for g in gpu_names]
    eng = get_engine(engine, where="--engine")
    if precisions is not None and not _split(precisions):
        raise UsageError("no precision given; name one or more (e.g. fp8,bf16) or leave the "
                         "flag out", where="--precision")
    quants = [get_quant(q, where="--precision") for q in _split(precisions)] if precisions else None
    kvq = get_quant(kv_precision, where="--kv-precision") if kv_precision else None
    if burst is not None:
        factors = PlanFactors(efficiency_tax, burst, headroom, "set with --burst")
    elif demand.burst_factor is not None:
        factors = PlanFactors(
            efficiency_tax,
            max(1.0, demand.burst_factor),
            headroom,
            f"measured from the trace (peak/mean at {demand.burst_bin} bins)",
        )
    else:
        factors = PlanFactors(efficiency_tax, 3.0, headroom)
    if max_quality_cost is not None and not 0 <= max_quality_cost < 1:
        raise UsageError(
            f"must be a fraction in [0, 1), got {max_quality_cost:g}", where="--max-quality-cost"
        )
    with err_console.status("searching and simulating ..."):
        result = make_plan(
            m,
            gpu_list,
            eng,
            demand,
            targets,
            factors,
            tps=_tps(tp),
            precisions=quants,
            max_quality_cost=max_quality_cost,
            kv_precision=kvq,
            check=check,
            mc_runs=mc_runs,
            sim_requests=sim_requests,
            seed=seed,
        )
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, allow_nan=False, default=_jsonable))
    else:
        render(result, top)
    if not any(c.feasible for c in result.candidates):
        raise typer.Exit(NO_FEASIBLE_EXIT)  # the table above says why each one fails


def _refuse_ignored(workload: str | None, burst: float | None, burst_bin: str | None,
                    check: bool, **check_flags: int | None) -> None:
    """Refuse flags given where they would be ignored: a plan must not look as asked when it
    is not (`check_flags`: the simulation check's flags by parameter name, None when not given)."""
    if not check:
        for name, value in check_flags.items():
            if value is not None:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} applies to the simulation check, which --no-check "
                                 "turns off", where=flag)
    if burst_bin is None:
        return
    measured = "--burst-bin applies to a burst factor measured from a trace"
    if burst is not None:
        raise UsageError(f"{measured}; with --burst none is measured", where="--burst-bin")
    if workload is None:
        raise UsageError(f"{measured}; no --workload given (without one the factor is the "
                         "default 3, or --burst)", where="--burst-bin")
    if workload in demand_presets():
        raise UsageError(f"{measured}; '{workload}' is a demand preset without arrival times "
                         f"(give --burst, or a trace: {', '.join(presets())} or a file)",
                         where="--burst-bin")


def _jsonable(o: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _fmt_gpus(x: float) -> str:
    return f"{x:,.2f}"


def _usd(x: float) -> str:
    """Dollars without the sign: cents below $100 ("3.70"), whole dollars above ("1,642")."""
    return f"{x:,.2f}" if round(x, 2) < 100 else f"{x:,.0f}"


def _count(n: int, noun: str) -> str:
    """"1 replica", "2 replicas"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _render_check(s7: dict[str, Any]) -> None:
    need = s7["replicas_needed"]
    console.print(
        f"7. Simulated  {s7['load']}; {_count(s7['runs'], 'run')} x "
        f"{_count(s7['requests_per_run'], 'request')}: "
        f"fewest replicas meeting every target P50 {need['p50']} / P90 {need['p90']} / "
        f"P99 {need['p99']} (planned {s7['planned_replicas']})"
    )
    first = s7["attainment_at_planned"][0]["targets"]
    parts = [
        f"{k} {v['achieved_s'] * 1e3:.0f} ms ({v['attainment']:.1%} within target)"
        if v["achieved_s"] is not None
        else f"{k} n/a"
        for k, v in first.items()
    ]
    verdict = "meets" if s7["met_at_planned"] else "[red]misses[/]"
    console.print(f"   at the planned size the fleet {verdict} the SLO: " + ", ".join(parts))
    console.print(
        f"   final: {_count(s7['final_replicas'], 'replica')}, {_count(s7['final_gpus'], 'GPU')}, "
        f"${_usd(s7['final_usd_per_hour'])}/hour"
    )
    for note in s7["notes"]:
        console.print(f"   [yellow]{escape(note)}[/]")
    if s7.get("runs_unmet_at_any_size"):
        console.print(f"   [red]the SLO was not met in {s7['runs_unmet_at_any_size']} of "
                      f"{_count(s7['runs'], 'simulated run')} at any size tried[/]")


_LEFT = {"gpu", "prec", "feasible / reason", "bottleneck", "efficiency"}
_COLUMNS = (
    "#",
    "gpu",
    "tp",
    "prec",
    "feasible / reason",
    "GPUs",
    "$/hour",
    "$/month",
    "$/1M in",
    "$/1M out",
    "TPOT ms",
    "TTFT s",
    "bottleneck",
    "efficiency",
)


def render(result: Plan, top: int) -> None:
    """Print the worksheet, the ranked table and the Pareto set."""
    _render_worksheet(result)
    _render_table(result, top)
    front = pareto(result.candidates)
    if front:
        console.print(
            "Pareto set ($/hour vs TPOT at mean load): "
            + "; ".join(
                f"{c.gpu} TP{c.tp} {c.precision} ${_usd(c.usd_per_hour)}/h "
                f"{c.tpot_at_mean_load_s * 1e3:.1f} ms"
                for c in front
            )
        )


def _render_worksheet(result: Plan) -> None:
    ws = result.worksheet()
    console.rule(f"[bold]Capacity worksheet: {result.model.name}")
    w1 = ws[0]
    i, o = w1["input_tokens"], w1["output_tokens"]
    console.print(f"1. Workload   {w1['source']}")
    console.print(
        f"   rate {w1['rate_per_s']:.3g} req/s; input mean {i['mean']:.0f} (p50 {i['p50']:.0f}, "
        f"p99 {i['p99']:.0f}); output mean {o['mean']:.0f} (p50 {o['p50']:.0f}, p99 {o['p99']:.0f})"
    )
    console.print(f"2. SLO        {result.slo}")
    if len(ws) == 2:
        console.print("[red]No feasible candidate.[/]")
        return
    s3, s4, s5, s6 = ws[2:6]
    console.print(
        f"3. Theoretical minimum  {s3['candidate']}: batch {s3['batch_per_replica']} "
        f"per replica, TPOT {s3['pred_tpot_s'] * 1e3:.1f} ms, "
        f"TTFT {s3['pred_ttft_s']:.3f} s, {s3['replica_requests_per_s']:.3g} req/s per "
        f"replica -> {_fmt_gpus(s3['theoretical_gpus'])} GPUs; "
        f"x(1+{s3['efficiency_tax']:g} tax) = {_fmt_gpus(s3['after_tax_gpus'])}"
    )
    console.print(f"   efficiency: {s3['efficiency_source']}")
    console.print(f"   KV cache: {s3['kv_cache']}")
    console.print(
        f"4. Burst      x{s4['burst_factor']:.2f} = {_fmt_gpus(s4['after_burst_gpus'])} GPUs; "
        f"{escape(s4['burst_source'])}"
    )
    console.print(
        f"5. Headroom   x(1+{s5['headroom']:g}) = {_fmt_gpus(s5['after_headroom_gpus'])} "
        f"GPUs -> {_count(s5['replicas'], 'replica')}, {_count(s5['gpus_total'], 'GPU')}"
    )
    console.print(f"6. Bottleneck {s6['resource']} ({s6['limit']}): {s6['why']}")
    if len(ws) > 6:
        _render_check(ws[6])


def _render_table(result: Plan, top: int) -> None:
    best = result.best
    checked = best is not None and best.planned_replicas != best.replicas
    t = Table(title="Candidates (cheapest feasible first by the worksheet"
              + ("; #1 at the size the simulation check needs)" if checked else ")"))
    for col in _COLUMNS:
        t.add_column(col, justify="left" if col in _LEFT else "right")
    for n, c in enumerate(result.candidates[:top], 1):
        p = c.point
        if not (c.feasible and p):
            t.add_row(str(n), c.gpu, str(c.tp), c.precision, f"no: {c.reason}", *[""] * 8,
                      c.efficiency_kind)
            continue
        t.add_row(
            str(n),
            c.gpu,
            str(c.tp),
            c.precision,
            "yes" if c.planned_replicas == c.replicas else
            f"yes; checked: {c.planned_replicas} -> {_count(c.replicas, 'replica')}",
            str(c.gpus_total),
            _usd(c.usd_per_hour),
            _usd(c.usd_per_month),
            f"{c.usd_per_million_input_tokens:.3f}",
            f"{c.usd_per_million_output_tokens:.2f}",
            f"{p.tpot_s * 1e3:.1f}",
            f"{p.ttft_s:.3f}",
            c.bottleneck,
            c.efficiency_kind,
        )
    console.print(t)
    if any(c.efficiency_kind == "defaults" for c in result.candidates[:top]):
        console.print("efficiency 'defaults': no measurement calibrates that GPU and engine; "
                      "its figures are the documented defaults, not comparable with fitted "
                      "candidates (on the bundled measurements the defaults' in-sample TPOT MAPE "
                      "is ~18% for dense and ~94% for MoE models, docs/FIDELITY.md)")
