"""The hierarchical fit: what it reports for benchmark parameters the data cannot inform."""

from __future__ import annotations

import numpy as np
import pytest

from fleetplan.calibrate import Prepared, bundled_points_path, prepare, read_points
from fleetplan.calibrate.closedloop import FIT_FIELDS
from fleetplan.calibrate.fit import FitResult, fit
from fleetplan.calibrate.runner import borrow_engine_params


@pytest.fixture(scope="module")
def dense_subset() -> Prepared:
    """Dense points: the three SGLang ones (all disaggregated) and 30 aggregated vLLM and
    TensorRT-LLM ones (no disaggregated vLLM or TensorRT-LLM point)."""
    _, _, pts = read_points(bundled_points_path())
    sg = [p for p in pts if p.backend == "sglang" and "Qwen3-32B" in p.model]
    vl = [p for p in pts if p.backend == "vllm" and p.mode == "agg" and "70B" in p.model][:15]
    tr = [p for p in pts if p.backend == "trtllm" and p.mode == "agg" and "70B" in p.model][:15]
    assert len(sg) == 3 and all(p.mode == "disagg" for p in sg)
    return prepare(sg + vl + tr)


def _fit(prep: Prepared, keep_engines: set[str]) -> FitResult:
    m, t, o = prep.measured()
    sel = m & np.array([e in keep_engines for e in prep.levels.engine])
    x, lv = prep.subset(sel)
    return fit(x, lv, t[sel], o[sel], max_nfev=4)


def test_parameters_no_point_informs_are_not_reported_as_fitted(dense_subset: Prepared) -> None:
    res = _fit(dense_subset, {"sglang", "trtllm", "vllm"})
    # SGLang has disaggregated points only and the cohort fraction acts on aggregated steps
    # only: an aggregated SGLang prediction takes the mean of the engines the data fitted
    # (before, the fraction's start value 0.9 was stored as if fitted)
    assert set(res.cohort_fracs) == {"trtllm", "vllm"}
    assert res.cohort_frac_of(["sglang"])[0] == pytest.approx(
        np.mean([res.cohort_fracs["trtllm"], res.cohort_fracs["vllm"]]))
    # no disaggregated vLLM or TensorRT-LLM point: no speed-up or hand-off time for them
    assert set(res.disagg_speedups) == {"sglang"}
    assert set(res.disagg_ttft_overheads) == {"sglang"}
    assert res.disagg_overhead_of(["vllm"], [True])[0] == res.disagg_ttft_overheads["sglang"]
    # every engine has points: each has its own start-up wave weight
    assert set(res.wave_weights) == {"sglang", "trtllm", "vllm"}


def test_an_engine_without_points_takes_the_fitted_engines_mean(dense_subset: Prepared) -> None:
    res = _fit(dense_subset, {"trtllm", "vllm"})
    assert set(res.wave_weights) == {"trtllm", "vllm"}
    assert res.wave_weight_of(["sglang"])[0] == pytest.approx(
        np.mean(list(res.wave_weights.values())))
    assert res.disagg_speedups == {} and res.disagg_ttft_overheads == {}


def test_unfitted_engine_parameters_come_from_the_other_class_fit() -> None:
    def res(coh: dict[str, float], sp: dict[str, float]) -> FitResult:
        return FitResult(np.zeros(1), {}, {"vllm": 0.1}, 1.0, sp, 1, cohort_fracs=coh)

    dense = res({"trtllm": 0.01, "vllm": 0.0}, {"sglang": 1.1})
    moe = res({"sglang": 0.4, "trtllm": 0.09, "vllm": 0.02}, {"trtllm": 1.4})
    borrow_engine_params({"dense": dense, "moe": moe})
    assert dense.cohort_fracs == {"trtllm": 0.01, "vllm": 0.0, "sglang": 0.4}  # only the gap
    assert moe.cohort_fracs == {"sglang": 0.4, "trtllm": 0.09, "vllm": 0.02}
    assert dense.disagg_speedups == {"sglang": 1.1, "trtllm": 1.4}
    assert moe.disagg_speedups == {"trtllm": 1.4, "sglang": 1.1}
    assert dense.borrowed == ["cohort_fracs[sglang] from moe", "disagg_speedups[trtllm] from moe"]
    assert moe.borrowed == ["disagg_speedups[sglang] from dense"]
    # a class fitted alone keeps the mean of its own engines
    alone = res({"trtllm": 0.01, "vllm": 0.03}, {})
    borrow_engine_params({"dense": alone})
    assert alone.cohort_frac_of(["sglang"])[0] == pytest.approx(0.02)


def test_engine_release_is_a_level_of_its_own(dense_subset: Prepared) -> None:
    """The version level: one label per engine release as recorded ("trtllm/" where the row
    recorded none), fitted like the other levels; its factor multiplies every field of a point
    of that release, and a point whose release is not given (None) or was never fitted gets
    none."""
    lv = dense_subset.levels
    assert lv.engine_version is not None
    assert lv.version == [f"{e}/{v}" for e, v in zip(lv.engine, lv.engine_version, strict=True)]
    res = _fit(dense_subset, {"sglang", "trtllm", "vllm"})
    table = res.offsets["version"]
    assert set(table) == set(lv.version)
    label = next(lab for lab in sorted(table) if np.any(table[lab] != 0.0))
    engine, version = label.split("/", 1)
    from fleetplan.calibrate.fit import Levels

    def arrays(ver: list[str] | None) -> dict[str, np.ndarray]:
        return res.efficiency_arrays(Levels(["h100-sxm"], [engine], ["fp8"], [False],
                                            ["llama-3.1-70b"], ver))

    with_ver, without = arrays([version]), arrays(None)
    for j, f in enumerate(FIT_FIELDS):
        assert with_ver[f][0] == pytest.approx(without[f][0] * np.exp(table[label][j]), rel=1e-12)
    unknown = arrays(["no-such-release"])
    assert all(unknown[f][0] == without[f][0] for f in FIT_FIELDS)


def test_cv_folds_keep_groups_whole_and_a_salt_draws_another_assignment() -> None:
    """The reported assignment is the CRC32 of the group key mod k (hand-computed here); a salt
    hashes the key with it: every group still lies in one fold, the assignment differs, and
    the same salt gives the same assignment."""
    import zlib

    from fleetplan.calibrate.fit import cv_folds

    groups = [("m", f"gpu{i % 7}", "vllm", "fp8") for i in range(200)]
    plain = cv_folds(groups, 5)
    assert plain.tolist() == [zlib.crc32("|".join(g).encode()) % 5 for g in groups]
    salted = cv_folds(groups, 5, "repeat-1")
    assert salted.tolist() == [zlib.crc32(("repeat-1#" + "|".join(g)).encode()) % 5
                               for g in groups]
    assert np.array_equal(salted, cv_folds(groups, 5, "repeat-1"))
    for fold in (plain, salted):
        by_group: dict[tuple[str, ...], set[int]] = {}
        for g, f in zip(groups, fold, strict=True):
            by_group.setdefault(g, set()).add(int(f))
        assert all(len(v) == 1 for v in by_group.values())
    assert not np.array_equal(plain, salted)
