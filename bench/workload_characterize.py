"""Benchmark: characterize a 10M-row trace from CSV and Parquet, fleetplan vs plain pandas.

    python bench/workload_characterize.py [--rows 10000000] [--keep DIR]
                                          [--scaling 10000000,30000000,100000000]

Writes a synthetic trace (arrival over one day, lognormal token counts; seed 0) as CSV and
Parquet in a temporary folder, then runs each implementation on each file in its own
subprocess and prints rows/s (load + characterize, timed inside the subprocess, interpreter
start-up excluded) and the subprocess's peak RSS. Implementations: `fleetplan` (the default,
which streams files this large in bounded memory), `fleetplan-mem` (`streaming=False`: the
whole table in memory) and `pandas`.

`--scaling` then writes Parquet traces of each row count (in 10M-row parts, so the writer
stays small too) and characterizes each with the default `fleetplan`: peak RSS should stay
flat as rows grow. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAPPING = {"timestamp": "ts", "input_tokens": "prompt", "output_tokens": "completion"}
QS = (0.5, 0.9, 0.95, 0.99, 0.999)


def make_trace(rows: int, folder: Path) -> tuple[Path, Path]:
    """The same trace as CSV and Parquet (columns ts, prompt, completion)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    ts = np.sort(rng.uniform(0.0, 86_400.0, rows)) + 1.7e9  # Unix seconds
    table = pl.DataFrame({
        "ts": ts,
        "prompt": np.rint(rng.lognormal(7.0, 1.0, rows)).astype(np.int64),
        "completion": np.rint(rng.lognormal(5.0, 0.9, rows)).astype(np.int64),
    })
    csv, parquet = folder / "trace.csv", folder / "trace.parquet"
    table.write_csv(csv)
    table.write_parquet(parquet)
    return csv, parquet


def make_parquet(rows: int, path: Path, part_rows: int = 10_000_000) -> None:
    """A `rows`-row Parquet trace like `make_trace`'s, written part by part (sorted times)."""
    import numpy as np
    import polars as pl

    parts = []
    n_parts = -(-rows // part_rows)
    for k in range(n_parts):
        n = min(part_rows, rows - k * part_rows)
        rng = np.random.default_rng(k)
        lo, width = k * 86_400.0 / n_parts, 86_400.0 / n_parts
        part = path.parent / f"{path.stem}.part{k}.parquet"
        pl.DataFrame({
            "ts": np.sort(rng.uniform(lo, lo + width, n)) + 1.7e9,
            "prompt": np.rint(rng.lognormal(7.0, 1.0, n)).astype(np.int64),
            "completion": np.rint(rng.lognormal(5.0, 0.9, n)).astype(np.int64),
        }).write_parquet(part)
        parts.append(part)
    pl.scan_parquet(parts).sink_parquet(path)
    for part in parts:
        part.unlink()


def run_fleetplan(path: str, streaming: bool | None = None) -> dict[str, object]:
    from fleetplan.workload import characterize, load

    c = characterize(load(path, mapping=MAPPING, streaming=streaming))
    return {"requests": c.requests, "p99_in": c.input_tokens.p99,
            "peak_1s": c.rate_peak_per_s["1s"]}


def run_pandas(path: str) -> dict[str, object]:
    """The straightforward pandas version of the same core statistics."""
    import numpy as np
    import pandas as pd

    df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    df = df.sort_values("ts", kind="stable")
    t = df["ts"] - df["ts"].iloc[0]
    span = float(t.iloc[-1])
    mean = len(df) / span
    peaks = {}
    for key, width in (("1s", 1), ("1min", 60), ("1h", 3600)):
        counts = (t // width).value_counts()
        peaks[key] = counts.max() / width if span >= width else mean
    gaps = t.diff().dropna()
    _cv = gaps.std(ddof=0) / gaps.mean()
    stats = {}
    for col in ("prompt", "completion"):
        s = df[col]
        stats[col] = [*s.quantile(list(QS)).tolist(), s.max(), s.mean()]
    out = df["completion"][df["completion"] > 0].astype(float)
    logs = np.log(out)
    _ln = (logs.mean(), logs.std(ddof=0))
    _hist = np.histogram(df["prompt"], bins=[0, *[2**k for k in range(25)]])
    return {"requests": len(df), "p99_in": stats["prompt"][3], "peak_1s": peaks["1s"]}


def worker(impl: str, path: str) -> None:
    """Run in the subprocess: time one implementation and report its own peak RSS."""
    if impl.startswith("fleetplan"):  # imports are not timed
        import scipy.special  # noqa: F401

        import fleetplan.workload  # noqa: F401
    else:
        import pandas  # noqa: F401
    start = time.perf_counter()
    if impl == "pandas":
        result = run_pandas(path)
    else:
        result = run_fleetplan(path, streaming=False if impl == "fleetplan-mem" else None)
    elapsed = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"elapsed_s": elapsed, "peak_rss_bytes": peak_kib * 1024, **result}))


def measure(impl: str, path: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", impl, str(path)],
        check=True, capture_output=True, text=True,
    )
    out: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="write the trace here")
    parser.add_argument("--scaling", default="", help="comma-separated Parquet row counts")
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "PATH"))
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        files = make_trace(args.rows, folder)
        print(f"wrote {args.rows:,} rows as CSV and Parquet in {time.perf_counter() - t0:.1f} s")
        print(f"{'file':<8} {'impl':<14} {'seconds':>8} {'rows/s':>14} {'peak RSS':>10}  check")
        for path in files:
            for impl in ("fleetplan", "fleetplan-mem", "pandas"):
                _report(path.suffix[1:], impl, args.rows, measure(impl, path))
        for path in files:
            path.unlink()
        for rows in (int(x) for x in args.scaling.split(",") if x.strip()):
            path = folder / f"scale{rows}.parquet"
            t0 = time.perf_counter()
            make_parquet(rows, path)
            size = path.stat().st_size / 2**20
            print(f"wrote {rows:,} rows as Parquet ({size:,.0f} MiB) in "
                  f"{time.perf_counter() - t0:.1f} s")
            _report(f"{rows // 1_000_000}M", "fleetplan", rows, measure("fleetplan", path))
            path.unlink()


def _report(label: str, impl: str, rows: int, r: dict[str, float]) -> None:
    rate = rows / r["elapsed_s"]
    print(f"{label:<8} {impl:<14} {r['elapsed_s']:>8.2f} {rate:>14,.0f} "
          f"{r['peak_rss_bytes'] / 2**30:>8.2f} GB  p99_in={r['p99_in']:.1f} "
          f"peak_1s={r['peak_1s']:.0f}", flush=True)


if __name__ == "__main__":
    main()
