"""Repeatability floor: hand-calculated best constants and repeated-set accounting."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetplan.calibrate import Layout, ServingPoint
from fleetplan.calibrate.repeats import (
    best_constant,
    config_key,
    repeatability,
    same_run_other_name,
)


def _pt(line: int, ttft: float | None, tpot: float | None, **kw: object) -> ServingPoint:
    base = ServingPoint(line=line, id=f"r{line}", model="m", system="h100_sxm", backend="vllm",
                        precision="fp8", mode="agg", isl=1024, osl=128, concurrency=8,
                        agg=Layout(tp=1), prefill=None, decode=None, ttft_s=ttft, tpot_s=tpot)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_best_constant_by_hand() -> None:
    # c = 1: |1/1 - 1| + |1/2 - 1| = 0.5; c = 2: 1 + 0 = 1 -> 1 wins (weights 1 and 0.5)
    assert best_constant([2.0, 1.0]) == (1.0, 0.5)
    # 1, 2, 4: c = 2 gives 1 + 0 + 0.5 = 1.5; c = 1 gives 0 + .5 + .75 = 1.25 -> 1
    c, err = best_constant([4.0, 1.0, 2.0])
    assert c == 1.0 and err == pytest.approx(1.25)
    assert best_constant([3.0]) == (3.0, 0.0)
    with pytest.raises(ValueError, match="> 0"):
        best_constant([1.0, 0.0])


@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=12),
       st.floats(0.01, 100.0))
def test_best_constant_is_the_least(values: list[float], other: float) -> None:
    _, err = best_constant(values)
    assert err <= sum(abs(other / v - 1.0) for v in values) + 1e-9


def test_repeatability_counts_sets_duplicates_and_floor() -> None:
    pts = [
        _pt(2, 0.2, 0.010), _pt(3, 0.1, 0.010),  # one set: TTFT differs
        _pt(4, 0.1, 0.010, osl=256), _pt(5, 0.1, 0.010, osl=256),  # exact duplicate
        _pt(6, 0.3, 0.020, isl=2048),  # alone
        _pt(7, None, 0.020, isl=2048),  # not measured: ignored
        _pt(8, 0.3, 0.040, backend_version="0.12.0"),  # version differs: another configuration
    ]
    r = repeatability(pts)
    assert (r.points, r.sets, r.rows, r.duplicate_rows) == (6, 1, 2, 1)
    assert r.floor_ttft_sum == pytest.approx(0.5) and r.floor_tpot_sum == 0.0
    assert r.floor_ttft_pct == pytest.approx(100 * 0.5 / 6)
    assert r.floor_ttft_in_sets_pct == pytest.approx(25.0)
    # each against the other: |0.1/0.2 - 1| = 0.5, |0.2/0.1 - 1| = 1 -> 75%
    assert r.mean_of_others_ttft_pct == pytest.approx(75.0)
    assert config_key(pts[0]) == config_key(pts[1]) != config_key(pts[6])


def test_bundled_points_have_repeats_with_a_floor() -> None:
    from fleetplan.calibrate import bundled_points_path, read_points

    _, _, pts = read_points(bundled_points_path())
    r = repeatability(pts)
    assert r.sets > 100 and 0.5 < r.floor_ttft_pct < 5.0
    dis = repeatability([p for p in pts if p.mode == "disagg"])
    agg = repeatability([p for p in pts if p.mode == "agg"])
    assert dis.mean_of_others_ttft_pct > 5 * agg.mean_of_others_ttft_pct


def test_same_run_under_another_model_name() -> None:
    """One measured run exported under two checkpoint names is one run; different measurements,
    another system or an unmeasured row are not."""
    pts = [
        _pt(2, 0.2, 0.010, model="deepseek-ai/DeepSeek-R1"),
        _pt(3, 0.2, 0.010, model="deepseek-ai/DeepSeek-V3"),  # the same run again
        _pt(4, 0.2, 0.010, model="deepseek-ai/DeepSeek-R1"),  # and again under the first name
        _pt(5, 0.3, 0.010, model="deepseek-ai/DeepSeek-V3"),  # another measurement
        _pt(6, 0.2, 0.010, model="a", system="b200_sxm"),  # another system
        _pt(7, 0.2, 0.010, model="b", system="b200_sxm"),  # ... shared by two names
        _pt(8, None, 0.010, model="c"),  # not measured
    ]
    runs, rows, names = same_run_other_name(pts)
    assert (runs, rows) == (2, 5)
    assert names == [("a", "b"), ("deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-V3")]
    assert same_run_other_name(pts[:1] + pts[3:4]) == (0, 0, [])
