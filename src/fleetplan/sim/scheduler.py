"""The vLLM V1 step scheduler: which requests run in the next step, and with how many tokens.

Follows `vllm/v1/core/sched/scheduler.py` (ENGINES.md "Step scheduling"):
- one token budget per step (`max_num_batched_tokens`), no prefill/decode phases: each request
  gets `min(num_tokens - num_computed_tokens, budget)` tokens, which gives chunked prefill
  mixed with decodes;
- RUNNING requests go first, in admission order (decodes and unfinished prefill chunks alike),
  so an earlier chunked prefill can use budget before later decodes;
- when blocks run out, preempt the tail of `running` (FCFS: the most recently admitted),
  free its blocks, reset it to recompute, and put it at the **front** of the waiting queue;
  stop when the request being scheduled is itself the victim;
- WAITING requests are admitted in FCFS order only if nothing was preempted this step,
  `len(running) < max_num_seqs` and budget is left; each first looks up its prefix in the
  cache, then takes a chunk of the remaining budget; a failed allocation stops admission
  (strict head of line).
`long_prefill_token_threshold` is 0 by default (ENGINES.md) and is not modelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetplan.sim.replica import Replica

__all__ = ["StepSums", "schedule_vllm_v1"]

#: prefill tokens, prefill seqs, prefill attention pairs, prefill KV read tokens, decode seqs,
#: decode context tokens (as in `fleetplan.perf.StepBatch`), and whether a preemption happened.
StepSums = tuple[int, int, float, int, int, int, bool]


def schedule_vllm_v1(rep: Replica, now_s: float) -> StepSums:
    """Fill `rep.batch_reqs` / `rep.batch_tokens` for the step starting at `now_s`.

    Returns the step's sums (the fields of `StepBatch`, a tuple to keep the hot path free of
    object construction) and whether a preemption happened.
    """
    kv, running, waiting = rep.kv, rep.running, rep.waiting
    breqs, btoks = rep.batch_reqs, rep.batch_tokens
    breqs.clear()
    btoks.clear()
    budget = rep.max_num_batched_tokens
    bs = kv.block_size
    preempted = False
    p_tok = p_seqs = p_read = d_seqs = d_ctx = 0
    p_pairs = 0.0
    for r in running:  # preemption pops the tail, which this loop has not reached yet
        if budget <= 0:
            break
        c = r.computed
        need = r.prompt + r.generated - c
        n = need if need < budget else budget
        if c + n > r.held * bs or (r.keys is not None and r.reg < len(r.keys)):
            victim = None
            while victim is not r and not kv.allocate(r, c + n):
                victim = running.pop()
                rep.preempt(victim)
                preempted = True
            if victim is r:
                break
        breqs.append(r)
        btoks.append(n)
        if need == 1 and r.generated:
            d_seqs += 1
            d_ctx += c + 1
        else:
            p_tok += n
            p_seqs += 1
            p_pairs += n * (c + (n + 1) / 2)
            p_read += c + n
        budget -= n
    if not preempted:
        max_seqs = rep.max_num_seqs
        while waiting and budget > 0 and len(running) < max_seqs:
            r = waiting[0]
            hits = kv.lookup(r)
            num_tokens = r.prompt + r.generated
            c = hits * bs
            n = min(num_tokens - c, budget)
            if not kv.allocate(r, c + n, hits):
                break
            waiting.popleft()
            running.append(r)
            kv.query_tokens += num_tokens
            kv.hit_tokens += c
            r.computed = c
            if r.first_sched_s < 0.0:
                r.first_sched_s = now_s
                r.cached_tokens = c
            breqs.append(r)
            btoks.append(n)
            p_tok += n
            p_seqs += 1
            p_pairs += n * (c + (n + 1) / 2)
            p_read += c + n
            budget -= n
    return p_tok, p_seqs, p_pairs, p_read, d_seqs, d_ctx, preempted
