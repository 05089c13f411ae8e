"""The simulator as a predictor of measured points (`simpredict`, `simcheck`, `validate
--predictor sim`) on a small fixed subset of the bundled rows (a few seconds)."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fleetplan.calibrate import bundled_points_path, read_points
from fleetplan.calibrate.features import resolve
from fleetplan.calibrate.points import Layout, ServingPoint
from fleetplan.calibrate.runner import stored_benchmark_params
from fleetplan.calibrate.simcheck import simulate_point
from fleetplan.calibrate.simpredict import (
    benchmark_requests,
    predict_point,
    prefill_capacity_tokens_s,
    sim_fleet,
    wave_weight_for,
)
from fleetplan.cli import main
from fleetplan.perf.calibration import efficiency_for, model_class_of
from fleetplan.sim import ClosedLoop, DisaggFleetConfig, FleetConfig, simulate


@pytest.fixture(scope="module")
def subset() -> list[ServingPoint]:
    """The first row of each (mode, engine, short/long prompt, low/mid concurrency) with at
    most 64 clients: 23 rows, aggregated and disaggregated, all three engines."""
    seen: dict[tuple[object, ...], ServingPoint] = {}
    for p in read_points(bundled_points_path())[2]:
        k = (p.mode, p.backend, p.isl <= 1024, p.concurrency <= 8)
        if p.concurrency <= 64 and k not in seen:
            seen[k] = p
    return [seen[k] for k in sorted(seen, key=str)]


def test_request_count_gives_the_wave_its_weight() -> None:
    assert benchmark_requests(10, 0.2) == 50  # the wave is 10 of 50 = 0.2
    assert benchmark_requests(10, 0.8) == 20  # at least one steady round
    assert benchmark_requests(3000, 0.1, max_requests=4000) == 6000  # capped, >= 2N
    assert benchmark_requests(100, 0.07, max_requests=1000) == 1000
    bench = stored_benchmark_params()
    for eng in ("vllm", "sglang", "trtllm", "no-such-engine"):
        assert 0.0 < wave_weight_for(eng, bench) <= 1.0


def test_subset_predictions_track_measurements(subset: list[ServingPoint]) -> None:
    assert len(subset) >= 20
    assert {p.mode for p in subset} == {"agg", "disagg"}
    rt, ro = [], []
    for p in subset:
        pr = predict_point(p)
        assert pr.reason is None, (p.line, pr.reason)
        assert pr.ttft_s is not None and pr.tpot_s is not None
        assert pr.requests >= 2 * p.concurrency
        assert p.ttft_s is not None and p.tpot_s is not None
        rt.append(pr.ttft_s / p.ttft_s)
        ro.append(pr.tpot_s / p.tpot_s)
    rt_a, ro_a = np.array(rt), np.array(ro)
    # Loose: the calibration is refitted by others; these catch a broken mapping, not drift.
    assert np.all((ro_a > 0.4) & (ro_a < 2.5)), ro
    # Lower bound 0.02: dsr1_gb300_trtllm_fp8_disagg_1024x1024_c24 measures a 4.1 s TTFT
    # (the same recipe at 4 clients: 0.24 s); both predictors give ~0.2 s.
    assert np.all((rt_a > 0.02) & (rt_a < 20.0)), rt
    assert 0.7 < float(np.median(ro_a)) < 1.3
    assert float(np.mean(np.abs(ro_a - 1.0))) < 0.35  # TPOT MAPE of the subset


def test_uncapped_prediction_is_the_plain_mean(subset: list[ServingPoint]) -> None:
    p = next(q for q in subset if q.mode == "agg" and q.backend == "vllm" and q.isl <= 1024)
    pr = predict_point(p)
    res = simulate(sim_fleet(p, resolve(p)), ClosedLoop(p.concurrency, p.isl, p.osl,
                                                         requests=pr.requests,
                                                         range_ratio=p.range_ratio))
    assert pr.ttft_s is not None and pr.tpot_s is not None
    # The prediction adds the calibrated request overhead before the first token to the
    # simulated mean (aggregated: no disaggregated hand-off).
    r = resolve(p)
    over = efficiency_for(*r.key, model_class_of(r.model), r.model.name,
                          engine_version=p.backend_version).request_overhead_s
    assert over > 0.0
    assert math.isclose(pr.ttft_s - over, res.mean_ttft_s, rel_tol=0.05)
    assert math.isclose(pr.tpot_s, res.mean_tpot_s, rel_tol=0.05)


def test_disaggregated_fleet_has_the_rows_pools(subset: list[ServingPoint]) -> None:
    p = next(q for q in subset if q.mode == "disagg" and q.backend == "sglang")
    assert p.prefill is not None and p.decode is not None
    fleet = sim_fleet(p, resolve(p))
    assert isinstance(fleet, DisaggFleetConfig)
    assert len(fleet.prefill) == p.prefill.workers and len(fleet.decode) == p.decode.workers
    assert fleet.prefill[0].gpus == p.prefill.gpus and fleet.decode[0].gpus == p.decode.gpus
    assert fleet.decode[0].engine == "sglang"
    cls = model_class_of(resolve(p).model)
    sp = stored_benchmark_params(cls).speedups.get("sglang", 1.0)
    if sp != 1.0:  # the stored disaggregated decode speed-up divides the decode step
        assert type(fleet.decode[0].step_model).__name__ == "_Scaled"
    agg = next(q for q in subset if q.mode == "agg" and q.backend == "trtllm")
    fa = sim_fleet(agg, resolve(agg))
    assert isinstance(fa, FleetConfig) and len(fa.replicas) == 1
    assert fa.replicas[0].engine == "trtllm" and not fa.replicas[0].chunked_prefill
    assert fa.replicas[0].max_num_batched_tokens >= agg.isl  # the prompt is admitted whole
    cap = prefill_capacity_tokens_s(agg, resolve(agg))
    assert cap is not None and cap > 0


def test_simulate_point_runs_disaggregated_rows(subset: list[ServingPoint]) -> None:
    p = next(q for q in subset if q.mode == "disagg" and q.concurrency <= 8)
    pr = simulate_point(p, rounds=2)
    assert pr.ttft_s is not None and pr.ttft_s > 0
    assert pr.tpot_s is not None and pr.tpot_s > 0
    assert pr.requests == 2 * p.concurrency


def test_row_the_simulator_cannot_run_has_a_reason(subset: list[ServingPoint]) -> None:
    p = next(q for q in subset if "DeepSeek-V3" in q.model and q.mode == "agg")
    small = replace(p, agg=Layout(tp=1), concurrency=2)  # 671B parameters on one GPU
    pr = predict_point(small)
    assert pr.ttft_s is None and pr.tpot_s is None
    assert pr.reason


def _rows(tmp_path: Path, lines: list[int]) -> Path:
    text = bundled_points_path().read_text().splitlines()
    out = tmp_path / "points.csv"
    out.write_text("\n".join([text[0], *(text[i - 1] for i in lines)]) + "\n")
    return out


def test_validate_predictor_sim(tmp_path: Path, subset: list[ServingPoint],
                                capsys: pytest.CaptureFixture[str]) -> None:
    src = _rows(tmp_path, [p.line for p in subset[:6]])
    out = tmp_path / "pred.csv"
    assert main(["validate", "--points", str(src), "--out", str(out), "--predictor", "sim"]) == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 6
    for r in rows:
        assert (r["pred_ttft_ms"] != "") != (r["reason"] != "")
        if r["pred_ttft_ms"]:
            assert float(r["pred_ttft_ms"]) > 0 and float(r["pred_tpot_ms"]) > 0
    assert "sim" in capsys.readouterr().out
    assert main(["validate", "--points", str(src), "--predictor", "oracle"]) == 2


def test_prefill_pool_of_unrecorded_size_is_sized_to_its_load() -> None:
    """A disaggregated row without `prefill_num_workers` gets the prefill workers its load
    needs at the stored utilisation, as the analytic path reads it; hand calculation."""
    from fleetplan.calibrate.simpredict import sized_prefill_workers

    p = next(q for q in read_points(bundled_points_path())[2]
             if q.mode == "disagg" and not q.prefill_workers_recorded and q.concurrency >= 1000)
    # 1,000 clients, 1 s prefill (first token), 100 x 10 ms decode (OSL 101): 1000 x 1 / 2 = 500
    # busy workers
    q = replace(p, concurrency=1000, osl=101, range_ratio=1.0)
    assert sized_prefill_workers(q, 1.0, 0.01, 0.8) == math.ceil(500 / 0.8)
    assert sized_prefill_workers(replace(q, concurrency=1), 0.1, 0.01, 0.9) == 1
    assert sized_prefill_workers(q, 100.0, 0.01, 0.2) == 1000  # at most one per client
    bench = stored_benchmark_params(model_class_of(resolve(p).model))
    assert bench.pool_load > 0
    fleet = sim_fleet(p, resolve(p), bench)
    assert isinstance(fleet, DisaggFleetConfig) and len(fleet.prefill) > 1
    # the recorded reading (one worker) where the stored fit sizes none
    one = sim_fleet(p, resolve(p), replace(bench, pool_load=0.0))
    assert isinstance(one, DisaggFleetConfig) and len(one.prefill) == 1


def test_decode_pool_of_unrecorded_size_holds_its_clients_kv() -> None:
    from fleetplan.calibrate.closedloop import held_context, kv_capacity

    def cap_of(q: ServingPoint) -> int:
        dec = resolve(q).decode
        assert dec is not None
        return kv_capacity(dec, held_context(dec, q.mean_isl, q.mean_osl)) or q.concurrency

    # DeepSeek-R1 on 8 B200 (TP 8, MLA: the KV replicated on every rank), 4,096 clients
    p = next(q for q in read_points(bundled_points_path())[2]
             if q.mode == "disagg" and not q.decode_workers_recorded and q.concurrency >= 4000
             and q.backend == "sglang" and q.system == "b200_sxm" and cap_of(q) < q.concurrency)
    fleet = sim_fleet(p, resolve(p))
    assert isinstance(fleet, DisaggFleetConfig)
    # as many workers as the clients' KV needs, in the layout reading the simulator runs (the
    # recorded TP one, or its attention-DP one, which shards the KV)
    from fleetplan.calibrate.closedloop import attention_dp_variant

    dec = resolve(p).decode
    assert dec is not None
    alt = attention_dp_variant(dec)
    assert alt is not None
    need = {math.ceil(p.concurrency
                      / (kv_capacity(d, held_context(d, p.mean_isl, p.mean_osl))
                         or p.concurrency)) for d in (dec, alt)}
    assert len(fleet.decode) in need and len(fleet.decode) > 1
