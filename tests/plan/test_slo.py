from __future__ import annotations

import pytest

from fleetplan.errors import UsageError
from fleetplan.plan import parse_slo


def test_parse_units_and_percentiles() -> None:
    s = parse_slo("ttft_p95=1s,tpot_p95=50ms,e2e_p999=20s")
    assert [(t.metric, t.percentile, t.seconds) for t in s.targets] == [
        ("ttft", 95.0, 1.0),
        ("tpot", 95.0, 0.05),
        ("e2e", 99.9, 20.0),
    ]
    assert str(s) == "ttft_p95=1s,tpot_p95=50ms,e2e_p999=20s"


def test_strictest_target_per_metric() -> None:
    s = parse_slo("tpot_p50=30ms,tpot_p99=80ms")
    t = s.get("tpot")
    assert t is not None and t.percentile == 99.0
    assert s.get("ttft") is None


@pytest.mark.parametrize(
    "bad", ["", "ttft=1s", "ttft_p95=1", "ttft_p95=fast", "tpot_p97=1ms", "ttft_p95=1s,ttft_p95=2s"]
)
def test_malformed_slo_names_flag_and_form(bad: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_slo(bad)
    assert "--slo" in str(e.value)
