"""Decode runs in closed form for the event loop, over any `StepTimeModel`.

The simulator asks a step-time model for thousands of decode runs and, when an arrival cuts a
run short, for the step in flight at a given time. For the common case where a decode-only step
is affine in the context tokens read, `t(c) = a + b c` (the roofline model without sliding
windows), `DecodeRuns` probes the model once per batch size and then answers both questions in
closed form:

    T(k) = k a + b (k c0 + s k (k - 1) / 2)       (k steps of s sequences from c0 tokens)

and the first step in flight at time `gap` solves `T(k) >= gap` as a quadratic. The probe checks
three context sizes and `decode_run_time_s` itself; a model that is not affine there (sliding
windows, a measured table) is asked directly every time, and the step is found by bisection.
"""

from __future__ import annotations

import math

from fleetplan.perf.step import StepBatch, StepTimeModel

__all__ = ["DecodeRuns"]

_PROBE_CTX = (1, 4096, 131072)  # context tokens per sequence at the three probes
_RTOL = 1e-9


class DecodeRuns:
    """`decode_run_time_s` and `steps_until` of one step-time model, cached per batch size."""

    __slots__ = ("_coef", "affine", "model")

    def __init__(self, model: StepTimeModel) -> None:
        self.model = model
        self._coef: dict[int, tuple[float, float] | None] = {}
        self.affine: dict[int, tuple[float, float]] = {}  # the affine ones only

    def _probe(self, s: int) -> tuple[float, float] | None:
        m = self.model
        c0, c1, c2 = (s * c for c in _PROBE_CTX)
        t0, t1, t2 = (m.decode_run_time_s(s, c, 1) for c in (c0, c1, c2))
        b = (t1 - t0) / (c1 - c0)
        a = t0 - b * c0
        if not math.isclose(a + b * c2, t2, rel_tol=_RTOL, abs_tol=1e-15):
            return None
        k = 37
        run = m.decode_run_time_s(s, c1, k)
        if not math.isclose(k * a + b * (k * c1 + s * k * (k - 1) / 2), run, rel_tol=_RTOL):
            return None
        return a, b

    def coef(self, s: int) -> tuple[float, float] | None:
        """(a, b) of the affine decode step for `s` sequences, or None when not affine."""
        try:
            return self._coef[s]
        except KeyError:
            co = self._coef[s] = self._probe(s)
            if co is not None:
                self.affine[s] = co
            return co

    def step_time_s(self, batch: StepBatch) -> float:
        return self.model.step_time_s(batch)

    def run_s(self, s: int, ctx: int, k: int) -> float:
        """Total time of `k` decode steps of `s` sequences from `ctx` context tokens."""
        co = self.coef(s)
        if co is None:
            return self.model.decode_run_time_s(s, ctx, k)
        a, b = co
        return k * a + b * (k * ctx + s * k * (k - 1) / 2)

    def steps_until(self, s: int, ctx: int, gap_s: float, k_max: int) -> int:
        """Smallest k in [1, k_max] with run_s(s, ctx, k) >= gap_s (k_max if none)."""
        co = self.coef(s)
        if co is not None:
            a, b = co
            qa, qb = b * s / 2, a + b * ctx - b * s / 2  # T(k) = qa k^2 + qb k
            if qa > 0:
                k = math.ceil((-qb + math.sqrt(qb * qb + 4 * qa * gap_s)) / (2 * qa))
            else:
                k = math.ceil(gap_s / qb) if qb > 0 else 1
            k = min(max(k, 1), k_max)
            # Guard against rounding at the boundary.
            while k > 1 and (qa * (k - 1) + qb) * (k - 1) >= gap_s:
                k -= 1
            while k < k_max and (qa * k + qb) * k < gap_s:
                k += 1
            return k
        lo, hi = 1, k_max
        while lo < hi:
            mid = (lo + hi) // 2
            if self.model.decode_run_time_s(s, ctx, mid) >= gap_s:
                hi = mid
            else:
                lo = mid + 1
        return lo
