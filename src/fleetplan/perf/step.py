"""The step-time plug point between the performance model and the simulator.

An engine iteration ("step") runs one forward pass over a batch that mixes prefill chunks and
decode tokens. `StepBatch` describes that batch by the few sums a cost model needs; a
`StepTimeModel` turns it into seconds. The roofline model (`fleetplan.perf.roofline`) is one
implementation; a calibrated or measured model can be swapped in by anything with these methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["StepBatch", "StepTimeModel", "summed_decode_run_time_s"]


@dataclass(frozen=True, slots=True)
class StepBatch:
    """One engine step.

    prefill_tokens: new prompt tokens computed this step (sum of chunk lengths).
    prefill_seqs: sequences with a prefill chunk in this step.
    prefill_attn_pairs: query-key pairs of causal attention over the chunks,
        sum over chunks of `chunk * (cached + (chunk + 1) / 2)` where `cached` is the number of
        tokens of that sequence already in KV before the chunk.
    prefill_kv_read_tokens: KV tokens read by the prefill chunks (sum of `cached + chunk`).
    decode_seqs: sequences generating one token this step.
    decode_ctx_tokens: KV tokens those sequences attend over (sum of their context lengths).
    """

    prefill_tokens: int = 0
    prefill_seqs: int = 0
    prefill_attn_pairs: float = 0.0
    prefill_kv_read_tokens: int = 0
    decode_seqs: int = 0
    decode_ctx_tokens: int = 0

    @property
    def tokens(self) -> int:
        """Tokens through the linear layers this step."""
        return self.prefill_tokens + self.decode_seqs

    @staticmethod
    def prefill_chunk(chunk: int, cached: int) -> StepBatch:
        """The batch of one prefill chunk of `chunk` tokens after `cached` tokens in KV."""
        return StepBatch(
            prefill_tokens=chunk,
            prefill_seqs=1,
            prefill_attn_pairs=chunk * (cached + (chunk + 1) / 2),
            prefill_kv_read_tokens=cached + chunk,
        )

    def __add__(self, other: StepBatch) -> StepBatch:
        return StepBatch(
            self.prefill_tokens + other.prefill_tokens,
            self.prefill_seqs + other.prefill_seqs,
            self.prefill_attn_pairs + other.prefill_attn_pairs,
            self.prefill_kv_read_tokens + other.prefill_kv_read_tokens,
            self.decode_seqs + other.decode_seqs,
            self.decode_ctx_tokens + other.decode_ctx_tokens,
        )


class StepTimeModel(Protocol):
    """Seconds for one engine step; what the simulator asks of a performance model."""

    def step_time_s(self, batch: StepBatch) -> float:
        """Wall time of one step over `batch`."""
        ...

    def decode_run_time_s(self, decode_seqs: int, decode_ctx_tokens: int, n_steps: int) -> float:
        """Total time of `n_steps` consecutive decode-only steps of `decode_seqs` sequences,
        starting at `decode_ctx_tokens` context tokens, each step adding one token per sequence.
        """
        ...


def summed_decode_run_time_s(
    model: StepTimeModel, decode_seqs: int, decode_ctx_tokens: int, n_steps: int
) -> float:
    """Reference implementation of `decode_run_time_s` by summing single steps (slow, exact)."""
    total = 0.0
    for i in range(n_steps):
        total += model.step_time_s(
            StepBatch(
                decode_seqs=decode_seqs, decode_ctx_tokens=decode_ctx_tokens + i * decode_seqs
            )
        )
    return total
