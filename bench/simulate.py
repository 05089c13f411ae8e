"""Simulator speed: requests simulated per wall second, wall time and peak RSS.

Run apart from the tests: `.venv/bin/python bench/simulate.py [--case NAME] [--quick]`.
Each case runs in its own process so that its peak RSS is its own.

Cases (targets from GitHub issue 4; Vidur's figures for the same class of machine are
220-560 simulated requests per wall second, 10k Azure-conv requests on one Llama-2-7B replica
at 2 QPS in 39-46 s and 1.3 GB peak RSS, 5k saturated requests in 8.9 s):
- azure-conv-1h: the one-hour Azure conversation trace (19,366 requests) on 4 replicas of
  Llama-3.1-70B TP4 on H100 (target < 1 s);
- vidur-10k-2qps: 10,000 Azure-conv requests on one Llama-3.1-8B H100 replica at 2 QPS
  (Vidur's setup with the closest catalog model);
- vidur-5k-saturated: 5,000 Azure-conv requests all at t=0 on the same replica;
- poisson-1m: one million requests, Azure-conv lengths resampled, Poisson at 21.5 req/s on 16
  replicas of Llama-3.1-70B TP4 (target < 60 s and < 4 GB peak RSS);
- closed-fixed / closed-random: an InferenceMAX-style benchmark, 256 clients and 10 x 256
  requests of ISL / OSL 1,024 / 1,024 on one Llama-3.1-70B TP4 H100 replica, with fixed lengths
  and with lengths drawn as `--random-range-ratio 0.8` draws them (the calibration's simulator
  predictor runs such loads; drawn lengths finish at different steps, so fewer decode steps are
  skipped in closed form).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import polars as pl

CASES = ("azure-conv-1h", "vidur-10k-2qps", "vidur-5k-saturated", "poisson-1m", "closed-fixed",
         "closed-random")


def _azure() -> pl.DataFrame:
    from fleetplan.workload import load

    return load("azure-conv-2023").table


def run_case(name: str, quick: bool) -> dict[str, object]:
    from fleetplan.sim import ClosedLoop, FleetConfig, PoissonLoad, TraceLoad, simulate

    table = _azure()
    if name == "azure-conv-1h":
        fleet = FleetConfig.build("llama-3.1-70b", "h100-sxm", tp=4, replicas=4)
        load: object = TraceLoad(table)
        n = table.height
    elif name.startswith("vidur"):
        fleet = FleetConfig.build("llama-3.1-8b", "h100-sxm", tp=1, replicas=1)
        n = 10_000 if "10k" in name else 5_000
        sub = table.head(n)
        if "2qps" in name:
            load = PoissonLoad(2.0, n, sub["input_tokens"].to_list(),
                               sub["output_tokens"].to_list())
        else:
            load = TraceLoad(sub.with_columns(pl.lit(0.0).alias("arrival_s")))
    elif name.startswith("closed"):
        fleet = FleetConfig.build("llama-3.1-70b", "h100-sxm", tp=4, replicas=1)
        n = 10 * 256
        load = ClosedLoop(256, 1024, 1024, requests=n,
                          range_ratio=0.8 if name == "closed-random" else 1.0)
    else:
        n = 100_000 if quick else 1_000_000
        fleet = FleetConfig.build("llama-3.1-70b", "h100-sxm", tp=4, replicas=16)
        load = PoissonLoad(21.5, n, table["input_tokens"].to_list(),
                           table["output_tokens"].to_list())
    t, cpu = time.perf_counter(), time.process_time()
    res = simulate(fleet, load, seed=0)  # type: ignore[arg-type]
    wall = time.perf_counter() - t
    cpu = time.process_time() - cpu
    s = res.summary()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {
        "case": name, "requests": n, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
        "requests_per_wall_s": round(n / wall), "peak_rss_bytes": rss,
        "peak_rss_gib": round(rss / 2**30, 3), "simulated_s": round(s["duration_s"], 1),
        "steps": s["sim_steps"], "ttft_p50_s": round(s["ttft_s"]["p50"], 4),
        "tpot_p50_s": round(s["tpot_s"]["p50"], 4), "preemptions": s["preemptions"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=CASES)
    ap.add_argument("--quick", action="store_true", help="100k instead of 1M requests")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.quick)))
        return 0
    rows = []
    for case in CASES:
        cmd = [sys.executable, __file__, "--case", case] + (["--quick"] if args.quick else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'case':<20} {'requests':>9} {'wall s':>8} {'cpu s':>8} {'req/s':>9} "
          f"{'peak RSS GiB':>13} {'steps':>10} {'sim s':>9}")
    for r in rows:
        print(f"{r['case']:<20} {r['requests']:>9} {r['wall_s']:>8} {r['cpu_s']:>8} "
              f"{r['requests_per_wall_s']:>9} {r['peak_rss_gib']:>13} {r['steps']:>10} "
              f"{r['simulated_s']:>9}")
    print("Vidur (same machine class): 220-560 req/s; 10k @2 QPS 39-46 s, 1.3 GB; 5k saturated "
          "8.9 s")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
