"""Prefix caching on the Mooncake trace saves the prefill work its hash_ids promise.

The expected saving is the workload characterization's unbounded-cache hit rate
(`fleetplan.workload.characterize(...).prefix_reuse.hit_rate_unbounded`: the share of prompt
blocks whose hash prefix an earlier request already had), and, independently, the same figure
computed here from the hash_ids. The simulated replica has a KV pool far larger than the slice,
so nothing is evicted and the two should agree up to block granularity (vLLM caches 16-token
blocks, the trace hashes 512-token blocks, and the last prompt token is always recomputed).
"""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from fleetplan.sim import FleetConfig, TraceLoad, simulate
from tests.sim.toy import ToyModel, toy_replica

# Requests 3000-3399 of the trace: a window with heavy reuse (about half the prompt blocks).
START, N = 3000, 400


@pytest.fixture(scope="module")
def mooncake() -> object:
    workload = pytest.importorskip("fleetplan.workload")
    w = workload.load("mooncake-synthetic")
    return dataclasses.replace(w, table=w.table.slice(START, N))


def _reuse_from_hashes(table: pl.DataFrame) -> float:
    seen: set[tuple[int, ...]] = set()
    hit = total = 0
    for ids in table["hash_ids"].to_list():
        lead, prefix = True, ()
        for h in ids:
            prefix = (*prefix, h)
            total += 1
            if lead and prefix in seen:
                hit += 1
            else:
                lead = False
            seen.add(prefix)
    return hit / total


def test_prefix_caching_saves_the_characterized_reuse(mooncake: object) -> None:
    from fleetplan.workload import characterize

    table: pl.DataFrame = mooncake.table  # type: ignore[attr-defined]
    expected = characterize(mooncake).prefix_reuse.hit_rate_unbounded  # type: ignore[arg-type]
    # The characterization counts a block id seen anywhere earlier, this count a whole prefix.
    assert expected == pytest.approx(_reuse_from_hashes(table), abs=0.01)
    assert expected > 0.3
    runs = {}
    for caching in (False, True):
        rep = toy_replica(ToyModel(), kv_blocks=2_000_000, max_num_batched_tokens=8192,
                          prefix_caching=caching)
        res = simulate(FleetConfig.homogeneous(rep, 1), TraceLoad.from_workload(mooncake))
        assert res.preemptions == 0
        df = res.requests
        runs[caching] = int((df["input_tokens"] - df["cached_tokens"]).sum())
    saving = 1 - runs[True] / runs[False]
    assert runs[False] == int(table["input_tokens"].sum())
    # Measured: 0.4106 simulated against 0.4106 characterized.
    assert saving == pytest.approx(expected, abs=0.01), (saving, expected)
