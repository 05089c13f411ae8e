"""Measure prefill and decode step times of random-weight Llama-shaped models on this GPU.

    python3 bench/gpu_measure.py --out steps.csv                      # H100/H200 defaults
    python3 bench/gpu_measure.py --smoke --device cpu --out /tmp/s.csv  # tiny shapes, any host

Runs only where a GPU is present (the device machine of a session that is lent one); it needs
`torch` and `transformers`, which fleetplan itself does not depend on. Each model is built from a
published `config.json` in the catalog's sources (`--models`), with random weights made on the
device (nothing is downloaded), optionally with fewer layers (`--layers`) so that a large model
fits one GPU: every row records the layer count it ran with, and the calibration builds the same
shape. One *step* is one forward pass of the model (`LlamaForCausalLM`, SDPA attention, eager
PyTorch without CUDA graphs, logits for the last position only, as serving engines compute them):

- prefill: `batch_size` prompts of `context_tokens` tokens each, from an empty cache;
- decode: one new token for each of `batch_size` sequences over a preallocated (static) KV cache
  of `context_tokens` positions filled with random keys and values; the static cache's attention
  spans all its positions, so each sequence attends over `context_tokens` keys.

Each row gives the step in the terms of `fleetplan.perf.step.StepBatch` (prefill_tokens,
prefill_seqs, prefill_attn_pairs, prefill_kv_read_tokens, decode_seqs, decode_ctx_tokens), the
median, min and max wall time of `--repeats` timed steps after warm-up (milliseconds, with the
device synchronised around each step), and the device, library versions and time of the run.
`fleetplan calibrate-steps FILE.csv` fits the performance model's efficiency parameters to it.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
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
    "llama-3.1-405b": "meta-llama--Meta-Llama-3.1-405B_config.json",
}
#: torch device name fragment -> catalog GPU name
GPU_NAMES = (("H200", "h200-sxm"), ("H100 PCIe", "h100-pcie"),
             ("H100", "h100-sxm"), ("A100", "a100-sxm-80gb"), ("GB300", "gb300"),
             ("B300", "b300"), ("GB200", "gb200"), ("B200", "b200"), ("L40S", "l40s"),
             ("L4", "l4"), ("MI325X", "mi325x"), ("MI300X", "mi300x"))

FIELDS = [
    "gpu", "device_name", "engine", "model", "num_layers", "precision", "phase", "batch_size",
    "context_tokens", "prefill_tokens", "prefill_seqs", "prefill_attn_pairs",
    "prefill_kv_read_tokens", "decode_seqs", "decode_ctx_tokens", "step_ms", "step_ms_min",
    "step_ms_max", "repeats", "attn_implementation", "torch_version", "transformers_version",
    "measured_at",
]

# (batch, prompt tokens) of prefill steps and (batch, context tokens) of decode steps. Bounded
# by --max-prefill-tokens and --max-kv-tokens (per layer kept, scaled by the layers run).
PREFILL_GRID = [(1, 32), (1, 128), (1, 512), (1, 2048), (1, 4096), (1, 8192), (4, 512),
                (2, 2048), (8, 1024), (32, 512), (16, 1024), (4, 4096)]
DECODE_GRID = [(b, c) for c in (512, 2048, 8192) for b in (1, 8, 32, 64, 128, 256)]
SMOKE_PREFILL = [(1, 16), (2, 32)]
SMOKE_DECODE = [(1, 32), (4, 64)]


def _llama_config(name: str, layers: int | None, smoke: bool) -> tuple[dict[str, Any], int]:
    if name not in MODEL_CONFIGS:
        sys.exit(f"gpu_measure: --models: unknown model {name!r} (one of {sorted(MODEL_CONFIGS)})")
    cfg: dict[str, Any] = json.loads((CONFIGS / MODEL_CONFIGS[name]).read_text())
    if smoke:  # keep the architecture, shrink every width
        cfg.update(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=512, bos_token_id=None, eos_token_id=None)
        layers = layers or 2
    n = layers or int(cfg["num_hidden_layers"])
    cfg["num_hidden_layers"] = n
    return cfg, n


#: devices without a catalog entry whose names contain one that has (recorded by device name)
UNCATALOGUED = ("GH200",)


def _gpu_name(device_name: str, override: str | None) -> str:
    if override:
        return override
    if any(u in device_name for u in UNCATALOGUED):
        return device_name.lower().replace(" ", "-")
    for frag, cat in GPU_NAMES:
        if frag in device_name:
            return cat
    return device_name.lower().replace(" ", "-")


def _timed(torch: Any, fn: Any, device: str, repeats: int, warmup: int,
           reset: Any = None) -> list[float]:
    out = []
    for i in range(warmup + repeats):
        if reset is not None:
            reset()
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            out.append((time.perf_counter() - t0) * 1e3)
    return out


def measure(args: argparse.Namespace, emit: Any) -> list[dict[str, Any]]:
    """Measure every model of `--models`; `emit` gets each row as it is measured."""
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_measure: no CUDA device here (use --device cpu with --smoke to try it)")
    torch.manual_seed(args.seed)
    layer_arg = dict(x.split("=") for x in args.layers.split(",")) if args.layers else {}
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for name in args.models.split(","):
        layers = int(layer_arg[name]) if name in layer_arg else None
        rows += _measure_model(args, name, layers, emit)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    print(f"{len(rows)} steps measured in {time.perf_counter() - t_start:.0f} s", flush=True)
    return rows


def _measure_model(args: argparse.Namespace, name: str, layers: int | None,
                   emit: Any) -> list[dict[str, Any]]:
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM, StaticCache

    device = args.device
    dev_name = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    cfg_d, n_layers = _llama_config(name, layers, args.smoke)
    cfg = LlamaConfig(**{k: v for k, v in cfg_d.items()
                         if k not in ("architectures", "transformers_version", "torch_dtype")})
    cfg._attn_implementation = args.attn
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype).eval()
    kv_heads = cfg.num_key_value_heads
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    base = {"gpu": _gpu_name(dev_name, args.gpu), "device_name": dev_name,
            "engine": "transformers", "model": name, "num_layers": n_layers,
            "precision": args.precision, "attn_implementation": args.attn,
            "torch_version": torch.__version__, "transformers_version": transformers.__version__,
            "measured_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}
    print(f"{name}: {n_layers} layers on {dev_name} "
          f"({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params)", flush=True)
    rows: list[dict[str, Any]] = []

    def prefill(ids: Any) -> None:
        with torch.no_grad():
            model(input_ids=ids, use_cache=False, logits_to_keep=1)

    def decode(ids: Any, cache: Any) -> None:
        with torch.no_grad():
            model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)

    def rewind(cache: Any, c: int) -> None:
        """Put every layer back at c - 1 cached tokens (the static layers count the tokens
        written: transformers 5.x `StaticLayer.cumulative_length`)."""
        for layer in cache.layers:
            layer.cumulative_length.fill_(c - 1)

    for b, n in SMOKE_PREFILL if args.smoke else PREFILL_GRID:
        if b * n > args.max_prefill_tokens:
            continue
        ids = torch.randint(0, cfg.vocab_size, (b, n), device=device)
        ts = _timed(torch, lambda ids=ids: prefill(ids), device, args.repeats, args.warmup)
        rows.append({**base, "phase": "prefill", "batch_size": b, "context_tokens": n,
                     "prefill_tokens": b * n, "prefill_seqs": b,
                     "prefill_attn_pairs": b * n * (n + 1) / 2, "prefill_kv_read_tokens": b * n,
                     "decode_seqs": 0, "decode_ctx_tokens": 0, **_stats(ts)})
        emit(rows[-1])
        print(f"  prefill b={b:4d} n={n:6d}: {rows[-1]['step_ms']:9.3f} ms", flush=True)

    for b, c in SMOKE_DECODE if args.smoke else DECODE_GRID:
        if b * c * n_layers > args.max_kv_tokens * 32:  # KV budget scaled to 32 layers
            continue
        try:
            ts, held = _decode_step(torch, cfg, StaticCache, decode, rewind, b, c, n_layers,
                                    kv_heads, head_dim, dtype, args)
        except torch.OutOfMemoryError:
            # transformers' SDPA path repeats the KV heads up to the query heads (repeat_kv), a
            # temporary of batch x context x heads per layer: the largest grid points of wide
            # models can exceed the GPU; say so and go on.
            torch.cuda.empty_cache()
            print(f"  decode  b={b:4d} c={c:6d}: skipped (out of GPU memory)", flush=True)
            continue
        if held != c:  # the step wrote position c - 1, once
            sys.exit(f"gpu_measure: decode cache holds {held} tokens after a step, expected {c} "
                     "(transformers API changed?)")
        rows.append({**base, "phase": "decode", "batch_size": b, "context_tokens": c,
                     "prefill_tokens": 0, "prefill_seqs": 0, "prefill_attn_pairs": 0,
                     "prefill_kv_read_tokens": 0, "decode_seqs": b, "decode_ctx_tokens": b * c,
                     **_stats(ts)})
        emit(rows[-1])
        print(f"  decode  b={b:4d} c={c:6d}: {rows[-1]['step_ms']:9.3f} ms", flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def _decode_step(torch: Any, cfg: Any, static_cache: Any, decode: Any, rewind: Any, b: int,
                 c: int, n_layers: int, kv_heads: int, head_dim: int, dtype: Any,
                 args: argparse.Namespace) -> tuple[list[float], int]:
    """Time a decode step of `b` sequences over a static cache of `c` positions; the step times
    and the tokens the cache holds after the last step."""
    cache = static_cache(config=cfg, max_cache_len=c)
    k = torch.randn(b, kv_heads, c - 1, head_dim, device=args.device, dtype=dtype)
    for layer in range(n_layers):  # fill c - 1 positions; the step writes the last
        cache.update(k, k, layer)
    del k
    ids = torch.randint(0, cfg.vocab_size, (b, 1), device=args.device)
    ts = _timed(torch, lambda: decode(ids, cache), args.device, args.repeats, args.warmup,
                lambda: rewind(cache, c))
    return ts, int(cache.get_seq_length())


def _stats(ts: list[float]) -> dict[str, Any]:
    return {"step_ms": round(statistics.median(ts), 4), "step_ms_min": round(min(ts), 4),
            "step_ms_max": round(max(ts), 4), "repeats": len(ts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="CSV to write")
    ap.add_argument("--models", default="llama-3.1-8b,llama-3.1-70b",
                    help=f"comma-separated, of {sorted(MODEL_CONFIGS)}")
    ap.add_argument("--layers", default="llama-3.1-70b=12",
                    help="layer counts to run instead of the published ones, e.g. "
                         "'llama-3.1-70b=12' (so the model fits one GPU)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--gpu", help="catalog GPU name to record (default: from the device name)")
    ap.add_argument("--precision", default="bf16", choices=["bf16"])
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--max-prefill-tokens", type=int, default=16384)
    ap.add_argument("--max-kv-tokens", type=int, default=262144,
                    help="largest batch x context of a decode step, for a 32-layer model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes (a test of the script)")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:  # row by row: a run cut short keeps its rows
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()

        def emit(row: dict[str, Any]) -> None:
            w.writerow(row)
            f.flush()

        rows = measure(args, emit)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
