"""The bundled traces against figures computed here independently (csv + json + numpy)."""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections import Counter
from datetime import datetime
from decimal import Decimal

import numpy as np
import pytest

from fleetplan.workload import characterize, load, preset_path, presets


def _azure_rows(name: str) -> tuple[list[Decimal], np.ndarray, np.ndarray]:
    """(seconds since the first request, input, output) with the csv module and Decimal."""
    with gzip.open(preset_path(name), "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    times = []
    for r in rows:
        day, frac = r["TIMESTAMP"].split(".")
        whole = datetime.strptime(day, "%Y-%m-%d %H:%M:%S").timestamp()
        times.append(Decimal(int(whole)) + Decimal("0." + frac))
    t0 = min(times)
    rel = [t - t0 for t in times]
    inp = np.array([int(r["ContextTokens"]) for r in rows])
    out = np.array([int(r["GeneratedTokens"]) for r in rows])
    return rel, inp, out


def test_presets_listed() -> None:
    assert presets() == ["azure-code-2023", "azure-conv-2023", "mooncake-synthetic"]


@pytest.mark.parametrize("name", ["azure-conv-2023", "azure-code-2023"])
def test_azure_2023_against_independent_figures(name: str) -> None:
    rel, inp, out = _azure_rows(name)
    c = characterize(load(name))
    assert c.requests == len(rel)
    span = float(max(rel))
    assert c.span_s == pytest.approx(span, abs=1e-6)
    assert c.rate_mean_per_s == pytest.approx(len(rel) / span)
    per_second = Counter(int(t) for t in rel)
    assert c.rate_peak_per_s["1s"] == max(per_second.values())
    per_minute = Counter(int(t // 60) for t in rel)
    assert c.rate_peak_per_s["1min"] == pytest.approx(max(per_minute.values()) / 60)
    assert c.burst_factor["1s"] == pytest.approx(max(per_second.values()) * span / len(rel))
    # the 1 h bin is longer than the ~58 min span: peak = mean, burst factor 1
    assert c.burst_factor["1h"] == 1.0
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        assert getattr(c.input_tokens, key) == pytest.approx(np.percentile(inp, q))
        assert getattr(c.output_tokens, key) == pytest.approx(np.percentile(out, q))
    assert c.input_tokens.max == inp.max()
    assert c.io_ratio == pytest.approx(inp.mean() / out.mean())
    gaps = np.diff(np.array(sorted(float(t) for t in rel)))
    assert c.interarrival_cv == pytest.approx(gaps.std() / gaps.mean(), rel=1e-6)


def test_azure_conv_2023_headline_figures() -> None:
    c = characterize(load("azure-conv-2023"))
    assert c.requests == 19_366
    assert 57 * 60 < c.span_s < 59 * 60
    assert c.input_tokens.p50 == 1020


def test_mooncake_prefix_reuse_against_plain_python() -> None:
    with gzip.open(preset_path("mooncake-synthetic"), "rt") as f:
        recs = [json.loads(line) for line in f if line.strip()]
    recs.sort(key=lambda r: r["timestamp"])
    seen: set[int] = set()
    all_blocks: list[int] = []
    hit_tokens = 0
    for r in recs:
        lead = 0
        for h in r["hash_ids"]:
            if h not in seen:
                break
            lead += 1
        hit_tokens += min(lead * 512, r["input_length"])
        seen.update(r["hash_ids"])
        all_blocks += r["hash_ids"]
    total = sum(r["input_length"] for r in recs)
    c = characterize(load("mooncake-synthetic"), cache_blocks=4096)
    p = c.prefix_reuse
    assert p is not None
    assert c.requests == len(recs)
    assert p.repeat_block_fraction == pytest.approx(1 - len(set(all_blocks)) / len(all_blocks))
    assert p.hit_rate_unbounded == pytest.approx(hit_tokens / total)
    assert p.hit_rate_lru is not None
    assert 0 < p.hit_rate_lru <= p.hit_rate_unbounded
    assert c.span_s == pytest.approx((recs[-1]["timestamp"] - recs[0]["timestamp"]) / 1000)


def test_histogram_and_tail_are_consistent() -> None:
    c = characterize(load("azure-conv-2023"))
    h = c.context_histogram
    assert sum(h["counts"]) == c.requests
    assert len(h["edges"]) == len(h["counts"]) + 1
    assert h["edges"][-1] > c.input_tokens.max
    tail = c.output_tail
    assert tail.lognormal_sigma is not None
    assert tail.hill_alpha is not None
    assert 0 <= (tail.lognormal_ks or 0) <= 1
    assert math.isfinite(tail.hill_alpha)


def test_tail_fit_matches_scipy() -> None:
    from scipy import stats

    out = load("azure-code-2023").table["output_tokens"].to_numpy()
    tail = characterize(load("azure-code-2023")).output_tail
    pos = out[out > 0].astype(float)
    mu, sigma = np.log(pos).mean(), np.log(pos).std()
    assert tail.lognormal_mu == pytest.approx(mu)
    assert tail.lognormal_sigma == pytest.approx(sigma)
    ks = stats.kstest(pos, "lognorm", args=(sigma, 0, np.exp(mu))).statistic
    assert tail.lognormal_ks == pytest.approx(ks)
    k = tail.hill_k
    top = np.sort(pos)[::-1][: k + 1]
    alpha = k / np.log(top[:k] / top[k]).sum()
    assert tail.hill_alpha == pytest.approx(alpha)
    assert tail.hill_ks == pytest.approx(
        stats.kstest(top[:k] / top[k], "pareto", args=(alpha,)).statistic)
