"""Hierarchical fit of the efficiency parameters, and group-held-out cross-validation.

Each fitted `Efficiency` field of a point with calibration group g = (gpu, engine, precision) is

  value = default x exp(global + gpu[g.gpu] + engine[g.engine] + precision[g.precision] + group[g]
                       + mode[engine x agg/disagg] + gpu_engine[g.gpu x g.engine] + model[m]
                       + version[engine x recorded engine version])

The offsets are fitted by `scipy.optimize.least_squares` on the relative error
pred / measured - 1 of TTFT and on log(pred / measured) of TPOT (soft-L1 loss with a small
`f_scale`, i.e. close to least absolute error, so a few broken runs do not steer the fit), with
bounds and a ridge penalty toward 0 (= the documented defaults) that is stronger the more
specific the level, so a group with few rows keeps what its GPU, engine and precision share
with the others. A group held out of the fit uses every level that other groups taught (its
GPU, engine, precision and, when another model shares its (gpu, engine, precision), that
group's residual, and the model level its other groups taught: what a model's points share on
every system, e.g. gpt-oss-120b's small experts and attention sinks, which the roofline does not
model and which would otherwise be learnt as a property of the GPU or engine it ran on), and
the version level its engine release's other groups taught (one release's kernels and scheduler
across the models and GPUs it served, e.g. SGLang 0.5.9 on DeepSeek-R1, Qwen3.5 and GLM-5;
rows that did not record the version share their engine's "unrecorded" label).

Why the relative error for TTFT: the reported metric is MAPE = mean |pred / measured - 1|,
which is unbounded above and at most 1 below, so a fit of the log error (whose optimum is the
median ratio, symmetric in log) over-predicts relative to the MAPE optimum wherever the spread
is wide, as it is for TTFT. Soft-L1 on the relative error approaches MAPE itself. TPOT keeps the
log error: its spread is narrow and the relative residual raised held-out dense TPOT
(docs/FIDELITY.md).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix

from fleetplan.calibrate.closedloop import FIT_FIELDS, LoopInputs, predict
from fleetplan.perf import DEFAULT_EFFICIENCY
from fleetplan.perf.efficiency import FRACTION_CAPS

__all__ = ["FitResult", "Levels", "cv_folds", "fit", "mape"]

F = len(FIT_FIELDS)
LEVELS = ("gpu", "engine", "precision", "group", "mode", "gpu_engine", "model", "version")
#: Ridge weight per level (residual units per unit log offset).
REG = {"global": 0.05, "gpu": 0.3, "engine": 0.3, "precision": 0.3, "group": 0.6, "mode": 0.3,
       "gpu_engine": 0.3, "model": 0.3, "version": 0.3}
#: Ridge scale of the model level (both classes; `reg_scale` scales the other levels), chosen by
#: the group-held-out cross-validation (docs/FIDELITY.md).
MODEL_REG_SCALE = 30.0
BOUND = 2.5  # |log offset| per level (a factor of ~12)
#: Soft-L1 scale: residuals (relative TTFT error, log TPOT error, ridge terms) above it are
#: weighted linearly (least absolute error), below it quadratically.
F_SCALE = 0.1
#: TTFT residual: "relative" (pred / measured - 1, aligned with MAPE) or "log".
TTFT_RESIDUAL = "relative"
ENGINES_W = ("sglang", "trtllm", "vllm")  # engines with their own start-up-wave weight
NE = len(ENGINES_W)
#: Benchmark parameters after the efficiency block, one per engine each: wave weights, log
#: disaggregated decode speed-ups, extra TTFT of disaggregated serving (in units of
#: OVERHEAD_UNIT_S), cohort fractions; then the held share of a padding slot (one per class,
#: `closedloop.padding_slot_held`), the log queue factor and the utilisation at which a
#: disaggregated prefill pool of unrecorded size is read (one per class). (The fixed request
#: overhead before the first token is the `request_overhead_s` efficiency field, fitted in the
#: hierarchy.)
NX = 4 * NE + 3
Q = F + 4 * NE + 1  # log queue factor
POOL = F + 4 * NE + 2  # load of prefill pools of unrecorded size
OVERHEAD_UNIT_S = 0.1
OVERHEAD_MAX_S = 0.5


@dataclass(frozen=True)
class Levels:
    """Per-point labels of each level of the hierarchy."""

    gpu: list[str]
    engine: list[str]
    precision: list[str]
    disagg: list[bool]
    #: model (catalog name) per point; None: the model level contributes nothing
    model: list[str] | None = None
    #: engine version per point as recorded ("" where unrecorded); None: the version level
    #: contributes nothing
    engine_version: list[str] | None = None

    @property
    def version(self) -> list[str]:
        """Engine x version ("sglang/0.5.9"; "trtllm/" where the version was not recorded):
        what one release's kernels and scheduler make of every model and GPU it serves."""
        if self.engine_version is None:
            return [""] * len(self.gpu)
        return [f"{e}/{v}" for e, v in zip(self.engine, self.engine_version, strict=True)]

    @property
    def group(self) -> list[str]:
        return [f"{g}/{e}/{p}" for g, e, p in zip(self.gpu, self.engine, self.precision,
                                                  strict=True)]

    @property
    def mode(self) -> list[str]:
        """Serving mode per engine: disaggregated recipes differ (e.g. speculative decoding)."""
        return [f"{e}/{'disagg' if d else 'agg'}" for e, d in zip(self.engine, self.disagg,
                                                                  strict=True)]

    @property
    def gpu_engine(self) -> list[str]:
        """GPU x engine: what an engine's kernels make of one GPU across precisions (e.g. its
        attention and MoE kernels for that architecture), shared by that pair's groups."""
        return [f"{g}/{e}" for g, e in zip(self.gpu, self.engine, strict=True)]

    def labels(self, level: str) -> list[str]:
        if level == "model" and self.model is None:
            return [""] * len(self.gpu)
        return list(getattr(self, level))


@dataclass
class FitResult:
    """Fitted offsets (log factors on the defaults) by level and label."""

    global_: np.ndarray
    offsets: dict[str, dict[str, np.ndarray]]
    wave_weights: dict[str, float]  # per engine
    queue_factor: float
    disagg_speedups: dict[str, float]  # per engine
    rows: int
    cost: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)
    #: extra TTFT of disaggregated serving per engine (hand-off to the decode pool), seconds
    disagg_ttft_overheads: dict[str, float] = field(default_factory=dict)
    #: share of a token budget's prompts that come back together per engine (clients in step)
    cohort_fracs: dict[str, float] = field(default_factory=dict)
    #: share of one batch slot per rank held by a CUDA-graph padding request (engines that did)
    held_slot: float = 0.0
    #: utilisation at which a prefill pool of unrecorded size is read (0: read as 1 worker)
    pool_load: float = 0.0
    #: benchmark parameters taken from the other model class's fit ("cohort_fracs[sglang]
    #: from moe"; `runner.borrow_engine_params`)
    borrowed: list[str] = field(default_factory=list)

    def efficiency_arrays(self, lv: Levels) -> dict[str, np.ndarray]:
        """Per-point efficiency values (unknown labels contribute nothing)."""
        n = len(lv.gpu)
        logv = np.tile(self.global_, (n, 1))
        for level in LEVELS:
            table = self.offsets.get(level, {})
            for i, lab in enumerate(lv.labels(level)):
                off = table.get(lab)
                if off is not None:
                    logv[i] += off
        base = np.array([float(getattr(DEFAULT_EFFICIENCY, f)) for f in FIT_FIELDS])
        vals = base * np.exp(logv)
        return {f: vals[:, j] for j, f in enumerate(FIT_FIELDS)}

    def group_params(self, gpu: str, engine: str, precision: str) -> dict[str, float]:
        """Composed parameters of one (gpu, engine, precision) group in aggregated serving,
        with the fractions capped as the step time caps them (`FRACTION_CAPS`)."""
        lv = Levels([gpu], [engine], [precision], [False])
        return {k: min(float(v[0]), FRACTION_CAPS.get(k, float("inf")))
                for k, v in self.efficiency_arrays(lv).items()}

    def wave_weight_of(self, engines: Sequence[str]) -> np.ndarray:
        return np.array([value_or_mean(self.wave_weights, e, 0.15) for e in engines])

    def disagg_overhead_of(self, engines: Sequence[str], disagg: Sequence[bool]) -> np.ndarray:
        """Extra TTFT of disaggregated serving (the hand-off to the decode pool) per point: the
        engine's (the mean over engines for an unknown one) where `disagg`, else 0."""
        return np.array([value_or_mean(self.disagg_ttft_overheads, e) if d else 0.0
                         for e, d in zip(engines, disagg, strict=True)], dtype=float)

    def cohort_frac_of(self, engines: Sequence[str]) -> np.ndarray:
        return np.array([value_or_mean(self.cohort_fracs, e, 1.0) for e in engines])

    def predict(self, x: LoopInputs, lv: Levels) -> tuple[np.ndarray, np.ndarray]:
        sp = np.array([self.disagg_speedups.get(e, 1.0) for e in lv.engine])
        return predict(x, self.efficiency_arrays(lv), self.wave_weight_of(lv.engine),
                       self.queue_factor, sp, self.disagg_overhead_of(lv.engine, lv.disagg),
                       self.cohort_frac_of(lv.engine), self.held_slot, self.pool_load)


def value_or_mean(table: dict[str, float], key: str, default: float = 0.0) -> float:
    """`table[key]`, else the mean over the table, else `default`."""
    if key in table:
        return table[key]
    return float(np.mean(list(table.values()))) if table else default


def mape(pred: np.ndarray, meas: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    if len(meas) == 0:
        return float("nan")
    return float(np.mean(np.abs(pred / meas - 1.0)) * 100.0)


def _index(lv: Levels) -> tuple[dict[str, list[str]], dict[str, np.ndarray], int]:
    names: dict[str, list[str]] = {}
    idx: dict[str, np.ndarray] = {}
    start = F + NX
    for level in LEVELS:
        labs = lv.labels(level)
        uniq = sorted(set(labs))
        pos = {u: i for i, u in enumerate(uniq)}
        names[level] = uniq
        idx[level] = np.array([start + pos[lab] * F for lab in labs], dtype=int)
        start += len(uniq) * F
    return names, idx, start


def fit(
    x: LoopInputs,
    lv: Levels,
    ttft: np.ndarray,
    tpot: np.ndarray,
    *,
    max_nfev: int = 60,
    ttft_residual: str = TTFT_RESIDUAL,
    f_scale: float = F_SCALE,
    reg_scale: float = 1.0,
    ttft_weight: float = 1.0,
) -> FitResult:
    """Fit the hierarchy on points with measured `ttft` and `tpot` (seconds); `ttft_residual`
    and `f_scale` as the module constants (the previous fit: "log", 0.25); `reg_scale`
    multiplies the ridge weights of every level below the global one; `ttft_weight` weighs the
    TTFT residuals against the TPOT ones."""
    if ttft_residual not in ("relative", "log"):
        raise ValueError(f"ttft_residual must be 'relative' or 'log', got {ttft_residual!r}")
    n = len(ttft)
    names, idx, npar = _index(lv)
    lt, lp = np.log(ttft), np.log(tpot)
    reg_w = np.zeros(npar)
    reg_w[:F] = REG["global"]
    for level in LEVELS:
        cols = np.unique(idx[level])
        for c in cols:
            reg_w[c : c + F] = REG[level] * (MODEL_REG_SCALE if level == "model" else reg_scale)
    reg_w[F : F + NX] = 0.0
    eng_col = np.array([F + ENGINES_W.index(e) if e in ENGINES_W else F for e in lv.engine])
    dis = np.array(lv.disagg, dtype=float)
    cols_f = np.arange(F)

    def unpack(theta: np.ndarray) -> dict[str, np.ndarray]:
        logv = np.tile(theta[:F], (n, 1))
        for level in LEVELS:
            logv += theta[idx[level][:, None] + cols_f[None, :]]
        base = np.array([float(getattr(DEFAULT_EFFICIENCY, f)) for f in FIT_FIELDS])
        vals = base * np.exp(logv)
        return {f: vals[:, j] for j, f in enumerate(FIT_FIELDS)}

    def resid(theta: np.ndarray) -> np.ndarray:
        w = theta[eng_col]
        sp = np.exp(theta[eng_col + NE])
        q = float(np.exp(theta[Q]))
        ov = OVERHEAD_UNIT_S * dis * theta[eng_col + 2 * NE]
        a, b = predict(x, unpack(theta), w, q, sp, ov, theta[eng_col + 3 * NE],
                       float(theta[F + 4 * NE]), float(theta[POOL]))
        rt = a / ttft - 1.0 if ttft_residual == "relative" else np.log(a) - lt
        return np.concatenate([ttft_weight * rt, np.log(b) - lp, reg_w * theta])

    # Sparsity: a residual depends on the global block and on its own labels' blocks.
    jac = lil_matrix((2 * n + npar, npar), dtype=int)
    jac[: 2 * n, : F + NX] = 1
    rows = np.arange(n)
    for level in LEVELS:
        for j in range(F):
            jac[rows, idx[level] + j] = 1
            jac[rows + n, idx[level] + j] = 1
    for c in range(npar):
        jac[2 * n + c, c] = 1
    theta0 = np.zeros(npar)
    theta0[F : F + NE] = 0.15
    lo = np.full(npar, -BOUND)
    hi = np.full(npar, BOUND)
    lo[F : F + NE], hi[F : F + NE] = 0.0, 1.0
    lo[F + NE : F + 2 * NE], hi[F + NE : F + 2 * NE] = 0.0, np.log(3.0)
    theta0[F + 2 * NE : F + 3 * NE] = 0.03 / OVERHEAD_UNIT_S
    lo[F + 2 * NE : F + 3 * NE], hi[F + 2 * NE : F + 3 * NE] = 0.0, OVERHEAD_MAX_S / OVERHEAD_UNIT_S
    theta0[F + 3 * NE : F + 4 * NE] = 0.9
    lo[F + 3 * NE : F + 4 * NE], hi[F + 3 * NE : F + 4 * NE] = 0.0, 1.0
    # held padding slot: from half a slot where some points' engines held one, else fixed at 0
    can_hold = bool(np.any(x.slot_ranks > 0))
    theta0[F + 4 * NE] = 0.5 if can_hold else 0.0
    lo[F + 4 * NE], hi[F + 4 * NE] = 0.0, 1.0 if can_hold else 1e-12
    lo[Q], hi[Q] = np.log(0.05), np.log(20.0)
    # utilisation of prefill pools sized to their load (points without recorded workers); held
    # out of the optimisation (at 0: the recorded single worker stands) where every point
    # recorded its pool
    free = np.ones(npar, dtype=bool)
    if np.any(x.pool_unknown):
        theta0[POOL], lo[POOL], hi[POOL] = 0.7, 0.2, 0.95
    else:
        free[POOL] = False
    base = np.where(free, 0.0, theta0)

    def resid_free(t: np.ndarray) -> np.ndarray:
        full = base.copy()
        full[free] = t
        return resid(full)

    sol = least_squares(
        resid_free, theta0[free], bounds=(lo[free], hi[free]),
        jac_sparsity=jac.tocsc()[:, np.flatnonzero(free)], loss="soft_l1", f_scale=f_scale,
        max_nfev=max_nfev, x_scale=1.0, method="trf",
    )
    th = base.copy()
    th[free] = sol.x
    offsets = {
        level: {lab: th[idx_start : idx_start + F].copy()
                for lab, idx_start in _starts(names[level], idx[level], lv.labels(level))}
        for level in LEVELS
    }
    # A benchmark parameter no training point informs keeps its start value and has no
    # gradient: it is left out, so predictions take the same engine's value from the other
    # model class's fit (`runner.borrow_engine_params`), else the mean of the engines the data
    # did fit (`value_or_mean`), or the neutral value (speed-up 1). The wave weight is
    # informed by any point of its engine, the cohort fraction by aggregated points only
    # (disaggregated TTFT has no mixed steps), the disaggregated speed-up and extra TTFT by
    # disaggregated points.
    eng = np.array(lv.engine, dtype=object)
    seen_any = {e for e in ENGINES_W if np.any(eng == e)}
    seen_agg = {e for e in ENGINES_W if np.any((eng == e) & (dis == 0))}
    seen_dis = {e for e in ENGINES_W if np.any((eng == e) & (dis == 1))}
    waves = {e: float(th[F + i]) for i, e in enumerate(ENGINES_W) if e in seen_any}
    speed = {e: float(np.exp(th[F + NE + i])) for i, e in enumerate(ENGINES_W) if e in seen_dis}
    over_d = {e: float(OVERHEAD_UNIT_S * th[F + 2 * NE + i]) for i, e in enumerate(ENGINES_W)
              if e in seen_dis}
    coh = {e: float(th[F + 3 * NE + i]) for i, e in enumerate(ENGINES_W) if e in seen_agg}
    return FitResult(th[:F].copy(), offsets, waves, float(np.exp(th[Q])), speed, n,
                     float(sol.cost), disagg_ttft_overheads=over_d,
                     cohort_fracs=coh, held_slot=float(th[F + 4 * NE]),
                     pool_load=float(th[POOL]))


def _starts(uniq: Sequence[str], idx: np.ndarray, labs: Sequence[str]) -> list[tuple[str, int]]:
    first: dict[str, int] = {}
    for lab, i in zip(labs, idx, strict=True):
        first.setdefault(lab, int(i))
    return [(u, first[u]) for u in uniq]


def cv_folds(groups: Sequence[tuple[str, ...]], k: int = 5, salt: str = "") -> np.ndarray:
    """Fold of each point: whole groups go to one fold, by a stable hash of the group key
    (the assignment does not depend on the order or the number of points). A non-empty `salt`
    is hashed before the key: another assignment of the same groups, equally valid, for
    repeated cross-validation (`bench/cv_repeats.py`); the empty salt is the reported one."""
    keys = ("|".join(g) for g in groups)
    return np.array([zlib.crc32((f"{salt}#{key}" if salt else key).encode()) % k for key in keys],
                    dtype=int)
