"""A request's state inside the simulator (one slotted object per request in flight).

Token accounting follows vLLM V1 (`vllm/v1/core/sched/scheduler.py`, ENGINES.md "Step
scheduling"): there are no prefill/decode phases, only `num_tokens` (prompt + generated) and
`num_computed_tokens` (tokens whose KV is in the cache). A step schedules
`num_tokens - num_computed_tokens` tokens (capped by the budget); when the computed tokens catch
up with `num_tokens` a new token is sampled. A preempted request drops its KV
(`computed = 0`, recompute) and later recomputes prompt and generated tokens together.
"""

from __future__ import annotations

__all__ = ["Request"]


class Request:
    """One request; times are seconds of simulated time, -1.0 while unknown."""

    __slots__ = (
        "arrival_s",
        "cached",
        "cached_tokens",
        "computed",
        "extra",
        "first_sched_s",
        "first_token_s",
        "generated",
        "held",
        "idx",
        "keys",
        "output",
        "preemptions",
        "prompt",
        "reg",
    )

    def __init__(
        self, idx: int, arrival_s: float, prompt: int, output: int, keys: list[int] | None = None
    ) -> None:
        self.idx = idx
        self.arrival_s = arrival_s
        self.prompt = prompt
        self.output = output  # tokens to generate, >= 1
        self.keys = keys  # prefix-cache key of each full prompt block, or None
        self.computed = 0  # tokens with KV in the cache (vLLM num_computed_tokens)
        self.generated = 0  # output tokens sampled so far
        self.held = 0  # KV blocks held (shared cached blocks included)
        self.extra = 0  # blocks held for per-sequence state (sliding windows, linear state)
        self.cached: list[int] = []  # prefix-cache keys of the blocks this request references
        self.reg = 0  # next block index to register in the prefix cache
        self.first_sched_s = -1.0
        self.first_token_s = -1.0
        self.preemptions = 0
        self.cached_tokens = -1  # prefix-cache hit at first admission (vLLM num_cached_tokens)

    @property
    def num_tokens(self) -> int:
        """Prompt plus generated tokens (vLLM `Request.num_tokens`)."""
        return self.prompt + self.generated

    def __repr__(self) -> str:
        return (
            f"Request({self.idx}, arrival={self.arrival_s:.3f}, prompt={self.prompt}, "
            f"output={self.output}, computed={self.computed}, generated={self.generated})"
        )
