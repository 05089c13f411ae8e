"""Predict measured serving points with the named peer, NVIDIA's aiconfigurator, for comparison.

    python3 -m venv /tmp/aic && /tmp/aic/bin/pip install aiconfigurator==0.12.0
    /tmp/aic/bin/python bench/peer_aiconfigurator.py --models meta-llama/Llama-3.1-70B \\
        --out src/fleetplan/calibrate/data/peer_aiconfigurator.csv

Runs where aiconfigurator is installed (fleetplan does not depend on it; `make bench` skips this
script). For each aggregated row of the bundled measured points of the given models, calls
aiconfigurator's own single-point estimator (`aiconfigurator.cli.api.cli_estimate`, the
`aiconfigurator cli estimate` command) with the row's system, backend, ISL, OSL, concurrency as
the batch size, TP and PP sizes and GEMM quantization, the model's published `config.json` from
the catalog's sources (no download), and the perf database of the row's backend version where
aiconfigurator has one, else its default. Writes one line per row: the row id, the measured TTFT
and TPOT, the peer's, and what was used (or why it failed). `tests/calibrate/test_peer.py` then
compares fleetplan's cross-validated error with the peer's on the same rows (docs/FIDELITY.md).
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
POINTS = ROOT / "src" / "fleetplan" / "calibrate" / "data" / "measured_serving_points.csv"
CONFIGS = ROOT / "src" / "fleetplan" / "catalog" / "data" / "sources" / "model_configs"
FIELDS = ["id", "model_path", "system", "backend", "silicon_ttft_ms", "silicon_tpot_ms",
          "peer_ttft_ms", "peer_tpot_ms", "peer_version", "note"]
_CONC = re.compile(r"silicon_concurrency=(\d+)")


def _config_dir(model_path: str, base: Path) -> Path:
    """A directory holding the model's published config.json (catalog sources)."""
    name = model_path.rsplit("/", 1)[-1].replace("Meta-", "")
    while True:  # "Llama-3.1-8B-Instruct-FP8" -> "Llama-3.1-8B"
        short = name
        for suffix in ("-Instruct", "-FP8", "-NVFP4"):
            short = short.removesuffix(suffix)
        if short == name:
            break
        name = short
    hits = [p for p in CONFIGS.glob("*_config.json")
            if p.name.split("--", 1)[-1].removesuffix("_config.json").replace("Meta-", "")
            == name]
    if not hits:
        sys.exit(f"peer_aiconfigurator: no published config for {model_path} in {CONFIGS}")
    d = base / model_path
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(hits[0].read_text())
    return d


def _estimate(job: tuple[dict[str, str], str]) -> dict[str, Any]:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from aiconfigurator.cli.api import cli_estimate

    r, model_dir = job
    m = _CONC.search(r["silicon_data_source"])
    conc = int(m[1]) if m else int(float(r["batch_size"]))
    kw = {"mode": "agg", "backend_name": r["backend"], "isl": int(r["isl"]),
          "osl": int(r["osl"]), "batch_size": conc, "tp_size": int(float(r["tp_size"] or 1)),
          "pp_size": int(float(r["pp_size"] or 1)),
          "gemm_quant_mode": r["gemm_quant_mode"] or None}
    for col, key in (("attention_dp_size", "attention_dp_size"), ("moe_tp_size", "moe_tp_size"),
                     ("moe_ep_size", "moe_ep_size")):
        if (r.get(col) or "").strip():
            kw[key] = int(float(r[col]))
    if (r.get("moe_quant_mode") or "").strip():
        kw["moe_quant_mode"] = r["moe_quant_mode"]
    out = {k: r.get(k, "") for k in FIELDS if k in r}
    out.update(peer_ttft_ms="", peer_tpot_ms="", peer_version="", note="")
    # The row's version where the peer has a database for it, else its default; its default
    # SILICON database mode, else HYBRID (its SOL + empirical fill-in) where measured kernel
    # data is missing.
    for mode in ("SILICON", "HYBRID"):
        for version in [*([r["backend_version"]] if r["backend_version"] else []), None]:
            try:
                res = cli_estimate(model_dir, r["system"], backend_version=version,
                                   database_mode=mode, **kw)
            except Exception as e:  # the peer's own refusal: record it, try the next
                out["note"] = f"{type(e).__name__}: {str(e)[:200]}"
                continue
            out.update(peer_ttft_ms=f"{res.ttft:.4f}", peer_tpot_ms=f"{res.tpot:.4f}",
                       peer_version=f"{version or 'default'} {mode}", note="")
            return out
        if "does not fit" in out["note"]:  # the mode does not change the memory check
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="meta-llama/Llama-3.1-70B",
                    help="comma-separated model_path values of the measured points")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--points", type=Path, default=POINTS,
                    help="points CSV (default: the bundled calibration file)")
    ap.add_argument("--all-models", action="store_true", help="every model of --points")
    args = ap.parse_args()
    rows = [r for r in csv.DictReader(args.points.read_text(encoding="utf-8-sig").splitlines())
            if r["mode"] == "agg"
            and (args.all_models or r["model_path"] in args.models.split(","))]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {m: str(_config_dir(m, Path(tmp))) for m in {r["model_path"] for r in rows}}
        with ProcessPoolExecutor(args.jobs) as ex:
            results = list(ex.map(_estimate, [(r, dirs[r["model_path"]]) for r in rows]))
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(results)
    ok = sum(1 for r in results if r["peer_ttft_ms"])
    print(f"{ok} of {len(rows)} rows estimated in {time.perf_counter() - t0:.0f} s; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
