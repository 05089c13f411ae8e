"""Fleet configuration: what each replica runs and how requests are routed.

`ReplicaConfig.from_deployment` takes the engine's own defaults (catalog `engines.yaml`:
`kv_block_tokens`, `max_num_seqs`, `max_num_batched_tokens`, `gpu_memory_utilization`) for
whatever is not given, and sizes the KV pool with `fleetplan.perf.memory_budget`. Every check
runs here, before any simulation: a model that does not fit, zero replicas, bad limits.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from fleetplan.errors import InfeasibleError, UsageError
from fleetplan.perf import (
    Deployment,
    RooflineStepModel,
    StepTimeModel,
    kv_bytes_per_token,
    memory_budget,
)
from fleetplan.sim.kvcache import extra_blocks
from fleetplan.sim.router import make_router

__all__ = ["KV_TRANSFER_EFFICIENCY", "DisaggFleetConfig", "FleetConfig", "ReplicaConfig"]

#: catalog engine name -> scheduling policy (llama.cpp: FCFS slots, see `scheduler.py`;
#: transformers' continuous batching: FIFO admission under a token budget with chunked prefill
#: into a paged cache, evicting to recompute when it fills (transformers v5.17.0 docs,
#: continuous_batching_architecture), which is vLLM V1's policy)
def sglang_max_running(kv_tokens: int, context_len: int) -> int:
    """SGLang's default `max_running_requests`: min(max_total_tokens // 2, request pool), the
    pool clamp(max_total_tokens / context_len x 512, 2048, 4096) (ENGINES.md, model_runner.py)."""
    pool = min(max(int(kv_tokens / max(context_len, 1) * 512), 2048), 4096)
    return max(1, min(kv_tokens // 2, pool))


def chunks_prompts_by_default(engine: str) -> bool:
    """Whether the engine's server splits a prompt over steps as it ships: every engine but
    TensorRT-LLM, whose trtllm-serve runs with enable_chunked_prefill=False (ENGINES.md,
    serve.py) and so refuses a prompt longer than max_num_tokens."""
    return ENGINE_POLICY.get(engine, engine) != "trtllm"


ENGINE_POLICY = {"vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm", "tgi": "tgi",
                 "llamacpp": "llamacpp", "transformers": "vllm"}


@dataclass(frozen=True)
class ReplicaConfig:
    """One replica: its step-time model, KV pool in blocks, and scheduler limits."""

    step_model: StepTimeModel
    kv_blocks: int
    block_size: int = 16
    max_num_seqs: int = 1024
    max_num_batched_tokens: int = 8192
    prefix_caching: bool = True
    max_model_len: int | None = None  # longest prompt + output accepted; None: no limit
    gpus: int = 1
    name: str = "replica"
    # Scheduling policy: the engine whose scheduler the replica follows (`fleetplan.sim.scheduler
    # .POLICIES`: vllm, sglang, trtllm, tgi, llamacpp).
    engine: str = "vllm"
    # Whether a prompt may be split over steps (off: TensorRT-LLM's default,
    # `enable_chunked_prefill=False`; the whole prompt must fit one step's token budget).
    chunked_prefill: bool = True
    # SGLang `max_prefill_tokens` (new input tokens per prefill batch; ENGINES.md: 16384).
    max_prefill_tokens: int = 16384
    # For disaggregated pools: KV bytes one prompt token occupies across the whole model, and the
    # replica's aggregate link bandwidth (GPUs x catalog interconnect bytes/s, one way).
    kv_bytes_per_token: float = 0.0
    link_bytes_per_s: float = 0.0
    # TensorRT-LLM batch waiting (`batch_wait_timeout_iters`, 0: off; default off): steps a
    # prompt is held back while others decode, waiting for more prompts to batch with; the
    # wait ends early once the step would schedule `batch_wait_tokens` tokens
    # (`batch_wait_max_tokens_ratio` x `max_num_tokens`; 0: no early end).
    batch_wait_iters: int = 0
    batch_wait_tokens: int = 0
    # SGLang's scheduler receive interval (`--scheduler-recv-interval`; 1: every step, the
    # default): the scheduler polls for new requests once its counter (1 per decode step,
    # 1,000 per prefill step) reaches it, and at once when it has nothing to run.
    recv_interval: int = 1
    # Fixed time per request before its first token outside the engine's steps (HTTP,
    # tokenisation, admission, streaming the first token: `Efficiency.request_overhead_s`, fitted
    # into every measured TTFT); the simulator's steps leave it out, results add it
    # (`SimResult.with_request_overhead`).
    request_overhead_s: float = 0.0
    # KV that does not grow with the context, held per sequence beside its blocks
    # (`KVCache.extra_for`): sliding-window layers' KV over min(length, window) tokens at
    # `kv_window_ratio` blocks per block of the full layers' KV, and the recurrent state of
    # linear-attention layers, `kv_state_blocks` blocks; `kv_blocks` counts full-layer KV.
    kv_window_tokens: int = 0
    kv_window_ratio: float = 0.0
    kv_state_blocks: int = 0

    def blocks_for(self, tokens: int) -> int:
        """Blocks one sequence of `tokens` tokens holds at its longest."""
        return -(-tokens // self.block_size) + extra_blocks(
            tokens, self.block_size, self.kv_window_tokens, self.kv_window_ratio,
            self.kv_state_blocks)

    @property
    def longest_fitting(self) -> int:
        """The longest sequence (tokens) whose blocks fit the whole pool."""
        lo, hi = 0, self.kv_capacity_tokens
        while lo < hi:  # blocks_for is non-decreasing in the tokens
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.blocks_for(mid) <= self.kv_blocks else (lo, mid - 1)
        return lo

    def __post_init__(self) -> None:
        for flag, v in (
            ("--block-size", self.block_size),
            ("--max-num-seqs", self.max_num_seqs),
            ("--max-num-batched-tokens", self.max_num_batched_tokens),
            ("gpus", self.gpus),
            ("max_prefill_tokens", self.max_prefill_tokens),
            ("--scheduler-recv-interval", self.recv_interval),
        ):
            if v < 1:
                raise UsageError(f"must be >= 1, got {v}", where=flag)
        for flag, v in (("--batch-wait-timeout-iters", self.batch_wait_iters),
                        ("batch_wait_tokens", self.batch_wait_tokens)):
            if v < 0:
                raise UsageError(f"must be >= 0, got {v}", where=flag)
        from fleetplan.sim.scheduler import POLICIES

        if self.engine not in POLICIES:
            raise UsageError(
                f"no scheduling policy for engine '{self.engine}'; one of {', '.join(POLICIES)}",
                where="--engine",
            )
        if self.batch_wait_iters and self.engine != "trtllm":
            raise UsageError(
                f"batch waiting is a TensorRT-LLM setting; this replica follows '{self.engine}'",
                where="--batch-wait-timeout-iters",
            )
        if self.recv_interval > 1 and self.engine != "sglang":
            raise UsageError(
                f"the scheduler receive interval is an SGLang setting; this replica follows "
                f"'{self.engine}'",
                where="--scheduler-recv-interval",
            )
        if self.kv_blocks < 1:
            raise InfeasibleError(f"{self.name}: no KV-cache blocks left ({self.kv_blocks})")

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_blocks * self.block_size

    @classmethod
    def from_deployment(
        cls,
        dep: Deployment,
        *,
        max_num_seqs: int | None = None,
        max_num_batched_tokens: int | None = None,
        block_size: int | None = None,
        prefix_caching: bool | None = None,
        step_model: StepTimeModel | None = None,
    ) -> ReplicaConfig:
        eng = dep.engine
        for flag, given in (("--block-size", block_size), ("--max-num-seqs", max_num_seqs),
                            ("--max-num-batched-tokens", max_num_batched_tokens)):
            if given is not None and given < 1:
                raise UsageError(f"must be >= 1, got {given}", where=flag)
        bs = int(block_size if block_size is not None else eng.kv_block_tokens.value)
        mbt = int(
            max_num_batched_tokens
            if max_num_batched_tokens is not None
            else eng.max_num_batched_tokens.value
        )
        mns = int(max_num_seqs if max_num_seqs is not None else eng.max_num_seqs.value)
        if max_num_seqs is None:  # vLLM: max_num_seqs = min(default, max_num_batched_tokens)
            mns = min(mns, mbt)
        if max_num_batched_tokens is not None and eng.name == "sglang":
            # the engine as run with this chunk size (SGLang sizes its memory for it)
            fig = eng.max_num_batched_tokens.model_copy(update={
                "value": float(mbt), "source": "given (--max-num-batched-tokens)"})
            dep = dataclasses.replace(dep, engine=eng.model_copy(
                update={"max_num_batched_tokens": fig}))
            eng = dep.engine
        budget = memory_budget(dep, mbt)
        if max_num_seqs is None and ENGINE_POLICY.get(eng.name) == "sglang":
            mns = sglang_max_running(budget.kv_capacity_tokens, dep.model.max_context_tokens)
        name = f"{dep.model.name} on {dep.tp * dep.pp}x {dep.gpu.name} TP{dep.tp} PP{dep.pp}"
        if budget.fits and budget.kv_capacity_tokens < bs:
            raise UsageError(
                f"{bs:,} tokens per KV block exceed {name}'s whole KV pool of "
                f"{budget.kv_capacity_tokens:,} tokens (engines use 16 to 128)",
                where="--block-size")
        if not budget.fits:
            raise InfeasibleError(
                f"{name}: the model does not fit: weights {budget.weights_bytes / 1e9:.1f} GB + "
                f"activations {budget.activation_bytes / 1e9:.1f} GB + overhead "
                f"{budget.overhead_bytes / 1e9:.1f} GB per GPU exceed the usable "
                f"{budget.usable_bytes / 1e9:.1f} GB; use more GPUs "
                "(--tp/--pp) or a smaller "
                "precision"
            )
        policy = ENGINE_POLICY.get(eng.name, eng.name)
        feature = eng.features.get("prefix_caching")
        pc = prefix_caching if prefix_caching is not None else bool(feature and feature.supported)
        # The pool in blocks of the full-attention layers' KV; windowed layers and linear
        # state are held per sequence (`KVCache.extra_for`).
        a = dep.model.attention
        attn_layers = a.full_layers + a.sliding_layers
        full_share = a.full_layers / attn_layers if attn_layers and a.full_layers else 1.0
        block_bytes = budget.kv_bytes_per_token * full_share * bs
        windowed = bool(a.sliding_layers and a.sliding_window and a.full_layers)
        state = a.linear_layers * (a.linear_state_bytes_per_layer or 0) / dep.tp / dep.pp
        return cls(
            step_model=step_model or RooflineStepModel(dep),
            kv_blocks=int(budget.kv_pool_bytes // block_bytes) if block_bytes > 0 else 0,
            kv_window_tokens=int(a.sliding_window or 0) if windowed else 0,
            kv_window_ratio=a.sliding_layers / a.full_layers if windowed else 0.0,
            kv_state_blocks=math.ceil(state / block_bytes) if state and block_bytes > 0 else 0,
            block_size=bs,
            max_num_seqs=mns,
            max_num_batched_tokens=mbt,
            prefix_caching=pc,
            max_model_len=dep.model.max_context_tokens,
            gpus=dep.gpus,
            name=name,
            engine=policy,
            chunked_prefill=chunks_prompts_by_default(eng.name),
            kv_bytes_per_token=kv_bytes_per_token(dep.model, dep.kv_bytes_per_element),
            link_bytes_per_s=dep.gpus * dep.gpu.interconnect.bytes_per_s.value,
            request_overhead_s=dep.efficiency.request_overhead_s,
        )


@dataclass(frozen=True)
class FleetConfig:
    """Replicas (possibly different) behind one router."""

    replicas: tuple[ReplicaConfig, ...]
    router: str = "round-robin"

    def __post_init__(self) -> None:
        if len(self.replicas) < 1:
            raise UsageError("a fleet needs at least one replica", where="--replicas")
        make_router(self.router)  # checks the name
        if len({r.block_size for r in self.replicas}) > 1 and any(
            r.prefix_caching for r in self.replicas
        ):
            raise UsageError("prefix caching needs one block size across replicas", where="fleet")

    @property
    def gpus(self) -> int:
        return sum(r.gpus for r in self.replicas)

    @classmethod
    def homogeneous(
        cls, replica: ReplicaConfig, n: int, router: str = "round-robin"
    ) -> FleetConfig:
        if n < 1:
            raise UsageError(f"must be >= 1, got {n}", where="--replicas")
        return cls(tuple([replica] * n), router)

    @classmethod
    def build(
        cls,
        model: str,
        gpu: str,
        *,
        tp: int = 1,
        pp: int = 1,
        precision: str = "bf16",
        engine: str = "vllm",
        replicas: int = 1,
        router: str = "round-robin",
        max_num_seqs: int | None = None,
        max_num_batched_tokens: int | None = None,
        block_size: int | None = None,
        prefix_caching: bool | None = None,
    ) -> FleetConfig:
        """Resolve names through the catalog; every check runs before any simulation."""
        if replicas < 1:
            raise UsageError(f"must be >= 1, got {replicas}", where="--replicas")
        dep = Deployment.build(model, gpu, precision, engine, tp=tp, pp=pp)
        rep = ReplicaConfig.from_deployment(
            dep,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            block_size=block_size,
            prefix_caching=prefix_caching,
        )
        return cls.homogeneous(rep, replicas, router)


#: Fraction of the link bandwidth a KV transfer achieves: an assumption, not a measurement
#: (NIXL/Mooncake-style transfers over the catalog's scale-up fabric); pass
#: `kv_transfer_bytes_per_s` for a measured or cross-node (RDMA) figure instead.
KV_TRANSFER_EFFICIENCY = 0.8


@dataclass(frozen=True)
class DisaggFleetConfig:
    """Disaggregated serving: `prefill` workers compute prompts (and the first token) and hand
    the prompt's KV to `decode` workers, which generate the rest. Each pool routes with
    `router`. The KV of a prompt of n tokens takes `n * kv_bytes_per_token / bandwidth` to move,
    bandwidth = `kv_transfer_bytes_per_s` or, when None, `transfer_efficiency` x the slower of
    the two workers' links (GPUs x catalog interconnect bytes/s, one way)."""

    prefill: tuple[ReplicaConfig, ...]
    decode: tuple[ReplicaConfig, ...]
    router: str = "round-robin"
    kv_transfer_bytes_per_s: float | None = None
    transfer_efficiency: float = KV_TRANSFER_EFFICIENCY

    def __post_init__(self) -> None:
        if not self.prefill:
            raise UsageError("a disaggregated fleet needs at least one prefill worker",
                             where="--disagg-prefill")
        if not self.decode:
            raise UsageError("a disaggregated fleet needs at least one decode worker",
                             where="--disagg-decode")
        make_router(self.router)
        bw = self.kv_transfer_bytes_per_s
        if bw is not None and not bw > 0:
            raise UsageError(f"must be > 0, got {bw}", where="kv_transfer_bytes_per_s")
        if not 0 < self.transfer_efficiency <= 1:
            raise UsageError(f"must be in (0, 1], got {self.transfer_efficiency}",
                             where="transfer_efficiency")
        if bw is None and any(r.kv_bytes_per_token > 0 and r.link_bytes_per_s <= 0
                              for r in self.replicas):
            raise UsageError("a worker has no link bandwidth; give kv_transfer_bytes_per_s",
                             where="kv_transfer_bytes_per_s")
        if len({r.block_size for r in self.replicas}) > 1 and any(
            r.prefix_caching for r in self.replicas
        ):
            raise UsageError("prefix caching needs one block size across replicas", where="fleet")

    @property
    def replicas(self) -> tuple[ReplicaConfig, ...]:
        """All workers, prefill first: a request's `replica` is its decode worker's index here
        (its prefill worker's for one-token outputs)."""
        return self.prefill + self.decode

    @property
    def gpus(self) -> int:
        return sum(r.gpus for r in self.replicas)

    def transfer_s_per_token(self, worker: ReplicaConfig) -> float:
        """Seconds to move one prompt token's KV from prefill `worker` to the decode pool."""
        if worker.kv_bytes_per_token <= 0:
            return 0.0
        bw = self.kv_transfer_bytes_per_s
        if bw is None:
            slowest = min(r.link_bytes_per_s for r in self.decode)
            bw = self.transfer_efficiency * min(worker.link_bytes_per_s, slowest)
        return worker.kv_bytes_per_token / bw

    @classmethod
    def build(
        cls,
        model: str,
        gpu: str,
        *,
        prefill_workers: int,
        prefill_tp: int,
        decode_workers: int,
        decode_tp: int,
        pp: int = 1,
        precision: str = "bf16",
        engine: str = "vllm",
        router: str = "round-robin",
        kv_transfer_bytes_per_s: float | None = None,
        max_num_seqs: int | None = None,
        max_num_batched_tokens: int | None = None,
        block_size: int | None = None,
        prefix_caching: bool | None = None,
    ) -> DisaggFleetConfig:
        """`prefill_workers` x TP `prefill_tp` and `decode_workers` x TP `decode_tp` replicas of
        one model, GPU and engine (the calibration rows' `prefill_num_workers` ...), each with
        the calibrated efficiency of a disaggregated pool (`efficiency_for(..., disagg=True)`)."""
        pools = []
        for n, tp, flag in ((prefill_workers, prefill_tp, "--disagg-prefill"),
                            (decode_workers, decode_tp, "--disagg-decode")):
            if n < 1 or tp < 1:
                raise UsageError(f"workers and TP must be >= 1, got {n}:{tp}", where=flag)
            dep = Deployment.build(model, gpu, precision, engine, tp=tp, pp=pp, disagg=True)
            rep = ReplicaConfig.from_deployment(
                dep, max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                block_size=block_size, prefix_caching=prefix_caching,
            )
            pools.append((rep,) * n)
        return cls(pools[0], pools[1], router, kv_transfer_bytes_per_s)
