"""SLO targets: TTFT / TPOT / end-to-end latency at a percentile, parsed from `--slo`.

Accepted form: comma-separated `METRIC_pNN=DURATION`, METRIC in ttft, tpot, e2e; NN in 50, 90,
95, 99, 99.9 (written p999); DURATION a number with a unit s or ms (`ttft_p95=1s,tpot_p95=50ms`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from fleetplan.errors import UsageError

__all__ = ["SLO_FORM", "SLOTarget", "SLOTargets", "parse_slo"]

SLO_FORM = ("METRIC_pNN=DURATION[,...] with METRIC in ttft|tpot|e2e, NN in 50|90|95|99|999 "
            "(99.9) and DURATION in s or ms, e.g. ttft_p95=1s,tpot_p95=50ms")
_MAX_TARGET_S = 86400.0 * 365  # a latency target beyond a year is a typo
_ITEM = re.compile(r"^(ttft|tpot|e2e)_p(50|90|95|99|999)=(\d+(?:\.\d+)?)(ms|s)$")


@dataclass(frozen=True, slots=True)
class SLOTarget:
    metric: str  # ttft | tpot | e2e
    percentile: float  # 50, 90, 95, 99, 99.9
    seconds: float

    @property
    def key(self) -> str:
        p = "999" if self.percentile == 99.9 else f"{self.percentile:g}"
        return f"{self.metric}_p{p}"

    def __str__(self) -> str:
        v = f"{self.seconds * 1e3:g}ms" if self.seconds < 1 else f"{self.seconds:g}s"
        return f"{self.key}={v}"


@dataclass(frozen=True, slots=True)
class SLOTargets:
    targets: tuple[SLOTarget, ...]

    def get(self, metric: str) -> SLOTarget | None:
        """The strictest target of `metric` (highest percentile)."""
        own = [t for t in self.targets if t.metric == metric]
        return max(own, key=lambda t: t.percentile) if own else None

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.targets)


def parse_slo(text: str, *, where: str = "--slo") -> SLOTargets:
    """Parse an SLO string; an error names the flag, the bad item and the accepted form."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise UsageError(f"empty SLO; expected {SLO_FORM}", where=where)
    out: list[SLOTarget] = []
    for item in items:
        m = _ITEM.match(item.lower().replace(" ", ""))
        if not m:
            raise UsageError(f"cannot parse '{item}'; expected {SLO_FORM}", where=where)
        metric, pct, num, unit = m.groups()
        seconds = float(num) / (1000.0 if unit == "ms" else 1.0)
        if not (math.isfinite(seconds) and 0 < seconds <= _MAX_TARGET_S):
            raise UsageError(f"'{item}': the target must be > 0 and at most "
                             f"{_MAX_TARGET_S / 86400:.0f} days", where=where)
        out.append(SLOTarget(metric, 99.9 if pct == "999" else float(pct), seconds))
    keys = [t.key for t in out]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise UsageError(f"target given twice: {', '.join(sorted(dup))}", where=where)
    return SLOTargets(tuple(out))
