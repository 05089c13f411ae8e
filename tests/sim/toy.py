"""A toy step-time model whose maths can be checked by hand.

t(step) = base_s + token_s x (prefill tokens + decode seqs) + ctx_s x (KV tokens read),
so a decode-only step of s sequences over c context tokens takes base_s + token_s s + ctx_s c,
and a run of k such steps has the closed form below.
"""

from __future__ import annotations

from fleetplan.perf.step import StepBatch
from fleetplan.sim import ReplicaConfig


class ToyModel:
    def __init__(self, base_s: float = 1e-3, token_s: float = 1e-5, ctx_s: float = 1e-8) -> None:
        self.base_s, self.token_s, self.ctx_s = base_s, token_s, ctx_s

    def step_time_s(self, batch: StepBatch) -> float:
        return (self.base_s + self.token_s * batch.tokens
                + self.ctx_s * (batch.decode_ctx_tokens + batch.prefill_kv_read_tokens))

    def decode_run_time_s(self, decode_seqs: int, decode_ctx_tokens: int, n_steps: int) -> float:
        s, c, k = decode_seqs, decode_ctx_tokens, n_steps
        per_step = self.base_s + self.token_s * s
        return k * per_step + self.ctx_s * (k * c + s * k * (k - 1) / 2)

    def prefill_alone_s(self, tokens: int, budget: int) -> float:
        """A prompt of `tokens` prefilled alone in chunks of `budget`."""
        starts = range(0, tokens, budget)
        return sum(self.step_time_s(StepBatch.prefill_chunk(min(budget, tokens - d), d))
                   for d in starts)


def toy_replica(model: ToyModel | None = None, **kw: object) -> ReplicaConfig:
    args: dict[str, object] = {"kv_blocks": 4096, "block_size": 16, "max_num_seqs": 64,
                               "max_num_batched_tokens": 2048, "name": "toy"}
    args.update(kw)
    return ReplicaConfig(step_model=model or ToyModel(), **args)  # type: ignore[arg-type]
