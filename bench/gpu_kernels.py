"""Measure the linear-layer GEMMs of dense catalog models, and HBM streaming, on this GPU.

    python3 bench/gpu_kernels.py --out kernels.csv                        # GPU: bf16 and fp8
    python3 bench/gpu_kernels.py --smoke --device cpu --out /tmp/k.csv    # tiny shapes, any host

Runs only where a GPU is present (the device machine of a session that is lent one); it needs
`torch` only. For each model of `--models` (published `config.json` in the catalog's sources) and
each tensor-parallel size of `--tp`, the four GEMMs of one transformer layer as one TP rank runs
them (fused QKV projection, attention output, fused gate/up projection, down projection; column-
parallel layers split their output, row-parallel layers their input) are timed for M = tokens in
the step from 1 to 16,384:

- bf16: `torch.mm` (cuBLAS) of an (M, K) activation by a (K, N) weight;
- fp8: `torch._scaled_mm` (cuBLASLt FP8, E4M3 operands, per-tensor scales, bf16 output), the
  GEMM of FP8-weight, FP8-activation serving (Hopper and later; skipped where the device has none).

Weights are cycled through enough copies to exceed twice the L2 cache, so every product streams
its weight from HBM as a serving step does. The products are replayed from a CUDA graph (no host
launch gaps, as in serving engines) and timed with CUDA events; each row gives the median, min
and max over `--repeats` replays after warm-up, per product. `hbm` rows time a device-to-device
copy of a 4 GiB buffer (bytes read plus written) and a sum over it (bytes read). `attn` rows
time one layer's attention on one rank (PyTorch's scaled_dot_product_attention, bf16, GQA):
causal prefill (`gemm` prefill; `m` prompts of `n` tokens, `k` query heads, `flops` of the causal
half) and decode (`gemm` decode; one token for each of `m` sequences over `n` cached tokens,
`bytes` the KV read).
`fleetplan calibrate-kernels FILE.csv` fits the roofline's GEMM terms to them: the efficiency
curve (compute_max, compute_half_tokens), the weight-streaming bandwidth and a fixed time per
layer.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src" / "fleetplan" / "catalog" / "data" / "sources" / "model_configs"
#: catalog model name -> published config in the catalog's sources
MODEL_CONFIGS = {
    "llama-3.1-8b": "meta-llama--Meta-Llama-3.1-8B_config.json",
    "llama-3.1-70b": "meta-llama--Meta-Llama-3.1-70B_config.json",
    "qwen3-32b": "Qwen--Qwen3-32B_config.json",
}
GPU_NAMES = (("H200", "h200-sxm"), ("H100 PCIe", "h100-pcie"),
             ("H100", "h100-sxm"), ("A100", "a100-sxm-80gb"), ("GB300", "gb300"),
             ("B300", "b300"), ("GB200", "gb200"), ("B200", "b200"), ("L40S", "l40s"),
             ("L4", "l4"), ("MI325X", "mi325x"), ("MI300X", "mi300x"))
M_GRID = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
SMOKE_M = [1, 4, 16]
GEMMS = ("qkv", "o", "gate_up", "down")

FIELDS = [
    "gpu", "device_name", "kind", "model", "tp", "gemm", "precision", "m", "n", "k", "flops",
    "bytes", "time_ms", "time_ms_min", "time_ms_max", "repeats", "run", "torch_version",
    "measured_at",
]


def gemm_shapes(cfg: dict[str, Any], tp: int) -> dict[str, tuple[int, int]]:
    """(K, N) of each GEMM of one layer on one of `tp` ranks (Megatron-style sharding)."""
    h = int(cfg["hidden_size"])
    nq = int(cfg["num_attention_heads"])
    nkv = int(cfg.get("num_key_value_heads") or nq)
    hd = int(cfg.get("head_dim") or h // nq)
    ffn = int(cfg["intermediate_size"])
    if nq % tp or ffn % tp:
        raise ValueError(f"TP {tp} does not split {nq} heads / FFN {ffn}")
    kv_tp = max(nkv // tp, 1)  # KV heads are replicated when TP exceeds them
    return {
        "qkv": (h, (nq // tp + 2 * kv_tp) * hd),
        "o": (nq // tp * hd, h),
        "gate_up": (h, 2 * ffn // tp),
        "down": (ffn // tp, h),
    }


def _gpu_name(device_name: str, override: str | None) -> str:
    if override:
        return override
    for frag, cat in GPU_NAMES:
        if frag in device_name:
            return cat
    return device_name.lower().replace(" ", "-")


class Timer:
    """Per-product time of `count` products, median / min / max over `repeats` timings after
    `warmup`, in ms. On a GPU the products are captured in one CUDA graph and the replay is timed
    with CUDA events, so no host launch gap is counted (serving engines replay graphs too); on a
    CPU they are timed with the wall clock."""

    def __init__(self, torch: Any, device: str, repeats: int, warmup: int) -> None:
        self.torch, self.device, self.repeats, self.warmup = torch, device, repeats, warmup

    def __call__(self, fn: Any, count: int = 1) -> list[float]:
        torch = self.torch

        def run() -> None:
            for i in range(count):
                fn(i)
        if self.device != "cuda":
            run()
            out = []
            for _ in range(self.repeats):
                t0 = time.perf_counter()
                run()
                out.append((time.perf_counter() - t0) * 1e3 / count)
            return out
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            run()
        for _ in range(self.warmup):
            graph.replay()
        out = []
        for _ in range(self.repeats):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            graph.replay()
            b.record()
            b.synchronize()
            out.append(float(a.elapsed_time(b)) / count)
        del graph
        return out


def _copies(weight_bytes: int, l2_bytes: int) -> int:
    return max(1, min(64, math.ceil(2 * l2_bytes / max(weight_bytes, 1))))


def measure(args: argparse.Namespace, emit: Any) -> int:
    import torch

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_kernels: no CUDA device here (use --device cpu with --smoke to try it)")
    torch.manual_seed(args.seed)
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        device_name = props.name
        l2 = int(getattr(props, "L2_cache_size", 50 * 2**20))
        fp8_ok = torch.cuda.get_device_capability(0) >= (8, 9)
    else:
        device_name, l2, fp8_ok = platform.processor() or "cpu", 2**20, False
    gpu = _gpu_name(device_name, args.gpu)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    base = {"gpu": gpu, "device_name": device_name, "torch_version": torch.__version__,
            "repeats": args.repeats, "run": f"{started} seed {args.seed}"}
    timer = Timer(torch, device, args.repeats, args.warmup)
    precisions = [p for p in args.precisions.split(",") if p]
    if "fp8" in precisions and not fp8_ok:
        print("gpu_kernels: this device has no FP8 GEMM; fp8 skipped", flush=True)
        precisions.remove("fp8")
    m_grid = SMOKE_M if args.smoke else M_GRID
    n = 0
    t0 = time.perf_counter()

    def row(**kw: Any) -> None:
        nonlocal n
        emit({**base, **kw, "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
        n += 1

    # HBM streaming: a device-to-device copy (bytes read + written) and a sum (bytes read) of a
    # buffer far larger than L2, in 16-byte-vectorisable float32 elements
    size = (64 * 2**20) if args.smoke else (4 * 2**30)
    src = torch.ones(size // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    acc = torch.empty((), dtype=torch.float32, device=device)
    for what, nbytes, f in (("copy", 2 * size, lambda i, d=dst, s=src: d.copy_(s)),
                            ("read", size, lambda i, s=src, a=acc: torch.sum(s, dim=0, out=a))):
        ts = timer(f, count=2)
        row(kind="hbm", model="", tp="", gemm=what, precision="", m="", n="", k="", flops=0,
            bytes=nbytes, time_ms=round(statistics.median(ts), 5),
            time_ms_min=round(min(ts), 5), time_ms_max=round(max(ts), 5))
    del src, dst, acc

    for name in (x for x in args.models.split(",") if x):
        if name not in MODEL_CONFIGS:
            sys.exit(f"gpu_kernels: --models: unknown model {name!r} "
                     f"(one of {sorted(MODEL_CONFIGS)})")
        cfg: dict[str, Any] = json.loads((CONFIGS / MODEL_CONFIGS[name]).read_text())
        if args.smoke:
            cfg.update(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=16)
        for tp in (int(x) for x in args.tp.split(",")):
            try:
                shapes = gemm_shapes(cfg, tp)
            except ValueError as e:
                print(f"gpu_kernels: {name}: {e}; skipped", flush=True)
                continue
            for prec in precisions:
                for gemm in GEMMS:
                    k, nn = shapes[gemm]
                    wbytes = k * nn * (1 if prec == "fp8" else 2)
                    copies = _copies(wbytes, l2)
                    ws = [torch.randn(nn, k, device=device, dtype=torch.bfloat16) / math.sqrt(k)
                          for _ in range(copies)]
                    one = torch.ones((), device=device, dtype=torch.float32)
                    if prec == "fp8":
                        # (K, N) column-major: the transpose of an (N, K) row-major tensor
                        wt = [w.to(torch.float8_e4m3fn).t() for w in ws]
                    else:
                        wt = [w.t().contiguous() for w in ws]
                    del ws
                    for m in m_grid:
                        a = torch.randn(m, k, device=device, dtype=torch.bfloat16)
                        if prec == "fp8":
                            a8 = a.to(torch.float8_e4m3fn)

                            def fn(i: int, a8: Any = a8, wt: Any = wt, one: Any = one) -> Any:
                                return torch._scaled_mm(a8, wt[i % len(wt)], scale_a=one,
                                                        scale_b=one, out_dtype=torch.bfloat16)
                            abytes = m * k
                        else:
                            def fn(i: int, a: Any = a, wt: Any = wt) -> Any:
                                return torch.mm(a, wt[i % len(wt)])
                            abytes = 2 * m * k
                        try:
                            ts = timer(fn, count=max(len(wt), 2))
                        except RuntimeError as e:
                            print(f"gpu_kernels: {name} TP {tp} {gemm} {prec} M {m}: {e}; "
                                  "not measured", flush=True)
                            continue
                        row(kind="gemm", model=name, tp=tp, gemm=gemm, precision=prec, m=m,
                            n=nn, k=k, flops=2 * m * nn * k, bytes=wbytes + abytes + 2 * m * nn,
                            time_ms=round(statistics.median(ts), 5),
                            time_ms_min=round(min(ts), 5), time_ms_max=round(max(ts), 5))
                    del wt
                    if device == "cuda":
                        torch.cuda.empty_cache()
            print(f"{name} TP {tp}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.attention:
        for r in _attention(args, torch, timer, device):
            row(**r)
    print(f"{n} rows measured in {time.perf_counter() - t0:.0f} s", flush=True)
    return n


#: (sequences, tokens each) of the attention steps timed: prefill prompts from an empty cache
#: (causal), and one decode token per sequence over a cache of that many tokens
ATTN_PREFILL = [(1, 512), (1, 2048), (1, 8192), (1, 16384), (4, 2048), (16, 1024)]
ATTN_DECODE = [(b, c) for c in (1024, 8192, 32768) for b in (1, 16, 64, 256) if b * c <= 2**21]
SMOKE_ATTN = ([(1, 64)], [(2, 64)])


def _attention(args: argparse.Namespace, torch: Any, timer: Timer,
               device: str) -> list[dict[str, Any]]:
    """Attention of one layer on one TP rank (bf16, PyTorch's scaled_dot_product_attention
    with the KV heads shared by their query-head groups): causal prefill, and decode of one
    token per sequence over a contiguous KV cache. Prefill rows count the FLOPs of the causal
    half (4 x heads x head_dim per query-key pair), decode rows the KV bytes read."""
    import torch.nn.functional as F  # noqa: N812

    out = []
    prefill, decode = SMOKE_ATTN if args.smoke else (ATTN_PREFILL, ATTN_DECODE)
    for name in (x for x in args.attn_models.split(",") if x):
        cfg: dict[str, Any] = json.loads((CONFIGS / MODEL_CONFIGS[name]).read_text())
        nq, nkv = int(cfg["num_attention_heads"]), int(cfg["num_key_value_heads"])
        hd = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // nq)
        if args.smoke:
            nq, nkv, hd = 4, 2, 16
        for tp in (int(x) for x in args.attn_tp.split(",")):
            hq, hk = nq // tp, max(nkv // tp, 1)
            for phase, grid in (("prefill", prefill), ("decode", decode)):
                for b, c in grid:
                    ql = c if phase == "prefill" else 1
                    try:
                        q = torch.randn(b, hq, ql, hd, device=device, dtype=torch.bfloat16)
                        k = torch.randn(b, hk, c, hd, device=device, dtype=torch.bfloat16)
                        v = torch.randn_like(k)

                        def fn(i: int, q: Any = q, k: Any = k, v: Any = v,
                               causal: bool = phase == "prefill") -> Any:
                            return F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                                  enable_gqa=True)
                        ts = timer(fn, count=2)
                    except RuntimeError as e:
                        print(f"gpu_kernels: attention {name} TP {tp} {phase} {b} x {c}: {e}; "
                              "not measured", flush=True)
                        continue
                    finally:
                        if device == "cuda":
                            torch.cuda.empty_cache()
                    pairs = b * c * (c + 1) / 2 if phase == "prefill" else b * c
                    kv_bytes = 2 * b * hk * c * hd * 2
                    out.append({
                        "kind": "attn", "model": name, "tp": tp, "gemm": phase,
                        "precision": "bf16", "m": b, "n": c, "k": hq,
                        "flops": int(4 * hq * hd * pairs), "bytes": kv_bytes,
                        "time_ms": round(statistics.median(ts), 5),
                        "time_ms_min": round(min(ts), 5), "time_ms_max": round(max(ts), 5)})
            print(f"attention {name} TP {tp}: done", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="CSV to write")
    p.add_argument("--models", default="llama-3.1-8b,qwen3-32b,llama-3.1-70b")
    p.add_argument("--tp", default="1,2,4,8", help="tensor-parallel sizes (ranks' shards)")
    p.add_argument("--precisions", default="bf16,fp8")
    p.add_argument("--no-attention", dest="attention", action="store_false",
                   help="skip the attention rows")
    p.add_argument("--attn-models", default="llama-3.1-8b,llama-3.1-70b")
    p.add_argument("--attn-tp", default="1,8", help="TP sizes of the attention rows")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cuda")
    p.add_argument("--gpu", default=None, help="catalog GPU name (default: from the device name)")
    p.add_argument("--smoke", action="store_true", help="tiny shapes (a quick check on any host)")
    args = p.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()

        def emit(r: dict[str, Any]) -> None:
            w.writerow(r)
            f.flush()
        measure(args, emit)


if __name__ == "__main__":
    main()
