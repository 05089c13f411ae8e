"""Synthetic workloads: stretch, lengths from a characterization, errors."""

from __future__ import annotations

import pytest

from fleetplan.errors import UsageError
from fleetplan.workload import characterize, load
from fleetplan.workload.synthetic import generate


def test_time_stretch_divides_rate_and_extends_span() -> None:
    src = load("azure-conv-2023")
    c = characterize(src)
    w = generate(src, seed=7, time_stretch=2.0)
    s = characterize(w)
    assert s.span_s == pytest.approx(2 * c.span_s, rel=0.01)
    assert s.rate_mean_per_s == pytest.approx(c.rate_mean_per_s / 2, rel=0.05)  # type: ignore[operator]


def test_empirical_lengths_follow_source() -> None:
    src = load("azure-code-2023")
    s = characterize(generate(src, seed=1, rate_scale=4.0))
    c = characterize(src)
    assert s.input_tokens.p50 == pytest.approx(c.input_tokens.p50, rel=0.1)
    assert s.io_ratio == pytest.approx(c.io_ratio, rel=0.2)


def test_lognormal_lengths_from_characterization() -> None:
    c = characterize(load("azure-conv-2023"))
    w = generate(c, seed=3, lengths="lognormal", duration_s=3600.0)
    s = characterize(w)
    assert s.input_tokens.p50 == pytest.approx(c.input_tokens.p50, rel=0.1)
    assert s.output_tokens.max <= c.output_tokens.max
    assert w.table["input_tokens"].min() >= 1  # type: ignore[operator]


def test_bad_arguments() -> None:
    c = characterize(load("azure-conv-2023"))
    with pytest.raises(UsageError, match="--lengths"):
        generate(c, seed=1)  # empirical needs the trace
    with pytest.raises(UsageError, match="--arrivals"):
        generate(c, seed=1, lengths="lognormal", arrivals="weibull")
    with pytest.raises(UsageError, match="--burst"):
        generate(c, seed=1, lengths="lognormal", arrivals="mmpp", burst=9.0)
    with pytest.raises(UsageError, match="--rate-scale"):
        generate(c, seed=1, lengths="lognormal", rate_scale=0.0)


def test_cv_and_burst_only_with_their_arrival_process() -> None:
    """generate() ignored cv with poisson or mmpp arrivals, and burst with poisson or gamma."""
    c = characterize(load("azure-conv-2023"))
    with pytest.raises(UsageError, match="--cv"):
        generate(c, seed=1, lengths="lognormal", cv=2.0)
    with pytest.raises(UsageError, match="--burst"):
        generate(c, seed=1, lengths="lognormal", arrivals="gamma", burst=2.0)


def test_negative_seed_is_a_usage_error() -> None:
    w = load("azure-conv-2023")
    with pytest.raises(UsageError, match="must be >= 0, got -1"):
        generate(w, seed=-1)
