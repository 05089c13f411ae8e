"""Demand: the token distribution and arrival rate a plan must serve.

It comes from flags (`--rate --isl --osl`, fixed lengths), from a named preset (`presets.yaml`,
each the measured characterization of a bundled public trace), or from a trace file or trace
preset characterized by `fleetplan.workload` (then the burst factor is measured, not assumed).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fleetplan.errors import UsageError

#: Below this many requests a trace's arrival rate is flagged as uncertain (1/sqrt(n) > 10%).
FEW_ARRIVALS = 100

__all__ = ["Demand", "TokenStats", "demand_from_flags", "demand_presets", "resolve_demand"]


@dataclass(frozen=True, slots=True)
class TokenStats:
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def fixed(cls, n: float) -> TokenStats:
        return cls(n, n, n, n, n, n)

    def scaled_to_mean(self, mean: float) -> TokenStats:
        if not self.mean > 0:  # nothing to scale (a trace of empty outputs): fixed lengths
            return TokenStats(mean, mean, mean, mean, mean, mean)
        k = mean / self.mean
        return TokenStats(
            mean, self.p50 * k, self.p90 * k, self.p95 * k, self.p99 * k, self.max * k
        )


@dataclass(frozen=True, slots=True)
class Demand:
    rate_per_s: float
    input_tokens: TokenStats
    output_tokens: TokenStats
    source: str
    burst_factor: float | None = None  # measured peak-to-mean, when from a trace
    burst_bin: str | None = None
    trace: Any = field(default=None, compare=False, repr=False)  # the Workload, when from a trace
    #: a bundled trace whose request lengths a preset characterizes (`fleetplan.workload`
    #: preset name): the simulation check resamples its (input, output) pairs
    lengths_from: str | None = None

    def with_rate(self, rate: float) -> Demand:
        return replace(self, rate_per_s=rate)


def scaled_trace(table: Any, demand: Demand) -> Any:
    """A trace table with the lengths `demand`'s means give them: a column whose mean
    `--isl` / `--osl` changed is scaled by the ratio of the means (rounded, at least one
    token); one whose trace mean is 0 takes the demand's mean, fixed, as
    `TokenStats.scaled_to_mean` does."""
    import polars as pl

    cols = []
    for col, stats in (("input_tokens", demand.input_tokens),
                       ("output_tokens", demand.output_tokens)):
        mean = float(table[col].mean() or 0.0)
        if math.isclose(stats.mean, mean, rel_tol=1e-9):
            continue
        expr = ((pl.col(col) * (stats.mean / mean)).round(0).clip(lower_bound=1)
                if mean > 0 else pl.lit(round(stats.mean)))
        cols.append(expr.cast(pl.Int64).alias(col))
    return table.with_columns(cols) if cols else table


@functools.cache
def demand_presets() -> dict[str, Demand]:
    path = Path(str(resources.files("fleetplan.plan") / "presets.yaml"))
    out: dict[str, Demand] = {}
    for e in yaml.safe_load(path.read_text()):
        out[e["name"]] = Demand(
            rate_per_s=float(e["rate_per_s"]),
            input_tokens=TokenStats(**e["input_tokens"]),
            output_tokens=TokenStats(**e["output_tokens"]),
            source=f"preset '{e['name']}': {e['source']}",
            lengths_from=e.get("lengths_from"),
        )
    return out


def _positive(value: float | None, flag: str, form: str) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise UsageError(f"must be a finite number > 0, got {value:g}; expected {form}",
                         where=flag)


def demand_from_flags(rate: float, isl: int, osl: int) -> Demand:
    return Demand(
        rate_per_s=rate,
        input_tokens=TokenStats.fixed(isl),
        output_tokens=TokenStats.fixed(osl),
        source=f"flags: --rate {rate:g} --isl {isl} --osl {osl} (fixed lengths)",
    )


def _from_trace(name: str, burst_bin: str, given: frozenset[str] = frozenset(),
                fmt: str | None = None, mapping: dict[str, str] | None = None) -> Demand:
    """The demand of a trace file (read with `fmt` / `mapping` as `workload.load` takes them);
    `given`: the flags (--rate, --isl, --osl) that will replace the trace's own figure, so a
    trace without that figure is not an error."""
    from fleetplan import workload as wl

    w = wl.load(name, format=fmt, mapping=mapping)
    ch: Any = wl.characterize(w)
    d = ch.to_dict()

    def stats(k: str) -> TokenStats:
        s = d[k]
        return TokenStats(s["mean"], s["p50"], s["p90"], s["p95"], s["p99"], s["max"])

    bursts = d["burst_factor"]
    if d["rate_mean_per_s"] is None and "--rate" not in given:
        raise UsageError(
            f"the trace's {d['requests']:,} request(s) arrive at one instant: it has no arrival "
            "rate to plan for; give --rate (requests per second)", where=f"--workload {name}")
    for key, flag in (("input_tokens", "--isl"), ("output_tokens", "--osl")):
        if not d[key]["mean"] > 0 and flag not in given:
            raise UsageError(f"every request of the trace has 0 {key.replace('_', ' ')}: "
                             f"nothing to size for; give {flag}", where=f"--workload {name}")
    source = f"trace '{name}': {d['requests']:,} requests over {d['span_s']:.0f} s"
    measured = d["span_s"] >= wl.RATE_BINS_S[burst_bin]
    if not measured:
        source += f" (shorter than one {burst_bin} bin: no burst factor measured)"
    if d["requests"] < FEW_ARRIVALS and "--rate" not in given:
        # n Poisson arrivals estimate their rate to a relative standard error of 1/sqrt(n)
        source += (f" (a rate from {d['requests']} arrivals is uncertain by "
                   f"~{100 / math.sqrt(d['requests']):.0f}%; --rate sets it)")
    return Demand(
        rate_per_s=float(d["rate_mean_per_s"] or 0.0),
        input_tokens=stats("input_tokens"),
        output_tokens=stats("output_tokens"),
        source=source,
        burst_factor=float(bursts[burst_bin]) if measured else None,
        burst_bin=burst_bin,
        trace=w,
    )


def resolve_demand(
    workload: str | None,
    rate: float | None,
    isl: int | None,
    osl: int | None,
    *,
    burst_bin: str = "1min",
    fmt: str | None = None,
    mapping: dict[str, str] | None = None,
) -> Demand:
    """Combine `--workload` with `--rate/--isl/--osl` (flags override the workload's means)."""
    from fleetplan.workload import RATE_BINS_S

    if burst_bin not in RATE_BINS_S:  # checked whatever the demand, so a typo is not ignored
        raise UsageError(f"unknown bin '{burst_bin}'; expected one of {', '.join(RATE_BINS_S)}",
                         where="--burst-bin")
    _positive(rate, "--rate", "requests per second, e.g. --rate 20")
    _positive(isl, "--isl", "mean input tokens per request, e.g. --isl 2000")
    _positive(osl, "--osl", "mean output tokens per request, e.g. --osl 300")
    if workload is None and (fmt or mapping):
        raise UsageError("--format and --map describe a --workload trace file; none given",
                         where="--format/--map")
    if workload is None:
        missing = [f for f, v in (("--rate", rate), ("--isl", isl), ("--osl", osl)) if v is None]
        if missing:
            raise UsageError(
                "give --workload NAME|FILE, or all of --rate, --isl, --osl "
                f"(missing {', '.join(missing)})",
                where="plan",
            )
        assert rate is not None and isl is not None and osl is not None
        return demand_from_flags(rate, isl, osl)
    presets = demand_presets()
    given = frozenset(f for f, v in (("--rate", rate), ("--isl", isl), ("--osl", osl))
                      if v is not None)
    if workload in presets and (fmt or mapping):
        raise UsageError(f"'{workload}' is a demand preset, not a trace file: it takes no "
                         "--format or --map", where="--workload")
    d = (presets[workload] if workload in presets
         else _from_trace(workload, burst_bin, given, fmt, mapping))
    if rate is not None:
        d = d.with_rate(rate)
    if isl is not None:
        d = replace(d, input_tokens=d.input_tokens.scaled_to_mean(isl))
    if osl is not None:
        d = replace(d, output_tokens=d.output_tokens.scaled_to_mean(osl))
    return d
