"""Step schedulers, one small function per engine: which requests run in the next step, and with
how many tokens. `POLICIES` maps a `ReplicaConfig.engine` to its function; each fills the
replica's `batch_reqs` / `batch_tokens` and returns the step's sums (`StepSums`).

A waiting request whose `computed` is already > 0 came from a prefill worker of a disaggregated
fleet with its prompt KV (vLLM's NixlConnector / SGLang's decode server: blocks are allocated for
the transferred tokens, which count as computed); it is admitted straight into decoding.

`schedule_vllm_v1` follows `vllm/v1/core/sched/scheduler.py` (ENGINES.md "Step scheduling"):
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

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetplan.sim.replica import Replica
    from fleetplan.sim.request import Request

__all__ = [
    "POLICIES",
    "RESERVING",
    "StepSums",
    "schedule_sglang",
    "schedule_tgi_v3",
    "schedule_trtllm",
    "schedule_vllm_v1",
]

#: prefill tokens, prefill seqs, prefill attention pairs, prefill KV read tokens, decode seqs,
#: decode context tokens (as in `fleetplan.perf.StepBatch`), and whether a preemption happened.
StepSums = tuple[int, int, float, int, int, int, bool]
SchedulePolicy = Callable[["Replica", float], StepSums]


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
    if rep.all_decoding and not kv.keyed and len(running) <= budget:
        # Every running request decodes (known from the last step's end): one token each, and
        # at most one new anonymous block each; when those fit, no allocation can fail and
        # their order does not matter, so the whole running list is taken at once.
        grow = [r for r in running if r.computed >= r.held * bs]
        if len(grow) <= kv.free:
            for r in grow:
                r.held += 1
            if grow:
                kv.take_anonymous(len(grow))
            d_seqs = len(running)
            d_ctx = rep.agg_ctx
            breqs.extend(running)
            btoks.extend([1] * d_seqs)
            budget -= d_seqs
            running = []  # skip the loop below
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
        running = rep.running
        while waiting and budget > 0 and len(running) < max_seqs:
            r = waiting[0]
            pre = r.computed  # KV from a prefill worker (disaggregated), else 0
            hits = 0 if pre else kv.lookup(r)
            num_tokens = r.prompt + r.generated
            c = pre or hits * bs
            n = min(num_tokens - c, budget)
            if not kv.allocate(r, c + n, hits):
                break
            waiting.popleft()
            running.append(r)
            breqs.append(r)
            btoks.append(n)
            budget -= n
            if pre:
                if n == 1:  # a transferred request's first decode
                    d_seqs += 1
                    d_ctx += c + 1
                    continue
            else:
                kv.query_tokens += num_tokens
                kv.hit_tokens += c
                r.computed = c
                if r.first_sched_s < 0.0:
                    r.first_sched_s = now_s
                    r.cached_tokens = c
            p_tok += n
            p_seqs += 1
            p_pairs += n * (c + (n + 1) / 2)
            p_read += c + n
    return p_tok, p_seqs, p_pairs, p_read, d_seqs, d_ctx, preempted


def _admit(rep: Replica, r: Request, c: int, now_s: float) -> None:
    """Bookkeeping of an admission with `c` tokens already computed (cache hit or transfer)."""
    rep.waiting.popleft()
    rep.running.append(r)
    if r.computed:  # transferred KV: counted on the prefill worker
        return
    kv = rep.kv
    kv.query_tokens += r.prompt + r.generated
    kv.hit_tokens += c
    r.computed = c
    if r.first_sched_s < 0.0:
        r.first_sched_s = now_s
        r.cached_tokens = c


def _sums(reqs: list[Request], toks: list[int]) -> StepSums:
    """The step sums of a batch (a request with one token to compute and one sampled decodes)."""
    p_tok = p_seqs = p_read = d_seqs = d_ctx = 0
    p_pairs = 0.0
    for r, n in zip(reqs, toks, strict=True):
        c = r.computed
        if n == 1 and r.generated and c + 1 == r.prompt + r.generated:
            d_seqs += 1
            d_ctx += c + 1
        else:
            p_tok += n
            p_seqs += 1
            p_pairs += n * (c + (n + 1) / 2)
            p_read += c + n
    return p_tok, p_seqs, p_pairs, p_read, d_seqs, d_ctx, False


def schedule_trtllm(rep: Replica, now_s: float) -> StepSums:
    """TensorRT-LLM's CapacityScheduler (GUARANTEED_NO_EVICT) + MicroBatchScheduler.

    ENGINES.md "TensorRT-LLM" (`tensorrt_llm/_torch/pyexecutor/scheduler.py` @b93e14ca; docs
    useful-runtime-flags, paged-attention-ifb-scheduler):
    - started requests reserved their blocks **to completion** when admitted, so they are never
      paused (no preemption); here a request takes the blocks for prompt + max_tokens at once;
    - new context requests are admitted in order while those blocks fit, `max_batch_size`
      (`max_num_seqs`) and `max_num_tokens` (`max_num_batched_tokens`) allow; the first one
      that does not fit stops admission;
    - chunked context is off by default (`enable_chunked_prefill=False`): a prompt goes whole
      into one step, so a prompt larger than the tokens left stops admission (a prompt larger
      than `max_num_tokens` is refused before the simulation); with `chunked_prefill` on, the
      last admitted prompt takes a chunk of what is left;
    - context tokens are packed before generation tokens in the batch (the step time depends
      only on the sums, so the order is for the batch as reported).
    Running requests (generation tokens, and unfinished chunks when chunking is on) take the
    token budget first, in admission order.

    Batch waiting (`ReplicaConfig.batch_wait_iters` > 0; off by default): while generation
    requests run, the context requests are held back until the executor has held them
    `batch_wait_timeout_iters` steps or the step would schedule `batch_wait_tokens` tokens
    (context + generation), which batches prompts into fewer, larger context steps
    (TensorRT-LLM PyTorch executor, `PyExecutor._waiting_requests`).
    """
    kv, running, waiting = rep.kv, rep.running, rep.waiting
    breqs, btoks = rep.batch_reqs, rep.batch_tokens
    breqs.clear()
    btoks.clear()
    budget = rep.max_num_batched_tokens
    gen: list[Request] = []
    ctx_reqs: list[Request] = []
    ctx_toks: list[int] = []
    for r in running:
        if budget <= 0:
            break
        need = r.prompt + r.generated - r.computed
        n = need if need < budget else budget
        if need == 1 and r.generated:
            gen.append(r)
        else:
            ctx_reqs.append(r)
            ctx_toks.append(n)
        budget -= n
    bs, chunking, max_seqs = kv.block_size, rep.chunked_prefill, rep.max_num_seqs
    rep.hold = 0
    if rep.batch_wait_iters and gen and waiting and not ctx_reqs and _batch_waits(rep, budget,
                                                                                  len(gen)):
        waiting = _EMPTY  # held back this step
    while waiting and budget > 0 and len(running) < max_seqs:
        r = waiting[0]
        pre = r.computed
        hits = 0 if pre else kv.lookup(r)
        c = pre or hits * bs
        need = r.prompt + r.generated - c
        if need > budget and not chunking:
            break
        n = need if need < budget else budget
        if not kv.allocate(r, r.prompt + r.output, hits):  # reserve to completion
            break
        _admit(rep, r, c, now_s)
        if pre and n == 1:
            gen.append(r)
        else:
            ctx_reqs.append(r)
            ctx_toks.append(n)
        budget -= n
    breqs.extend(ctx_reqs)
    btoks.extend(ctx_toks)
    breqs.extend(gen)
    btoks.extend([1] * len(gen))
    return _sums(breqs, btoks)


_EMPTY: deque[Request] = deque()


def _batch_waits(rep: Replica, budget: int, gen: int) -> bool:
    """Whether TensorRT-LLM's batch waiting holds the waiting prompts back this step (and
    counts it), else resets its count: the prompts that would fit the token budget plus the
    `gen` generation tokens are below the threshold and the wait has not timed out. The
    executor consults the wait only for context requests its scheduler did schedule
    (`PyExecutor._waiting_requests`): where the queue's head cannot be admitted this step
    (token budget, KV blocks reserved to completion, batch limit) nothing is held and the
    count stays."""
    r = rep.waiting[0]
    if len(rep.running) >= rep.max_num_seqs:
        return False
    pre = r.computed
    kv = rep.kv
    hits = 0 if pre else kv.lookup(r)
    need = r.prompt + r.generated - (pre or hits * kv.block_size)
    if (need > budget and not rep.chunked_prefill) or not kv.fits(r, r.prompt + r.output, hits):
        return False
    tokens = gen
    for r in rep.waiting:
        n = r.prompt + r.generated - r.computed
        if n > budget:
            break
        tokens += n
        budget -= n
    if rep.wait_count < rep.batch_wait_iters and tokens < rep.batch_wait_tokens:
        rep.hold = rep.batch_wait_iters - rep.wait_count
        rep.holding = True
        return True
    rep.wait_count = 0
    return False


def schedule_tgi_v3(rep: Replica, now_s: float) -> StepSums:
    """TGI v3 with prefill chunking (`backends/v3/src/backend.rs`, `queue.rs`; ENGINES.md "TGI").

    - blocks for input + max_new_tokens are allocated **at admission**, so nothing is ever
      preempted (speculation is not modelled: `speculate` = 0); a request whose blocks do not
      fit goes back to the front of the queue and stops admission;
    - the running batch decodes every step (one token per request); new prefill work gets the
      budget `max_batch_prefill_tokens - current_tokens` (here `max_num_batched_tokens` minus
      the running batch's decode tokens): an unfinished chunk continues first, then new
      requests are chunked into what is left and concatenated into the running batch;
    - `waiting_served_ratio` / `max_waiting_tokens` are ignored with chunking (ENGINES.md);
    - `max_concurrent_requests` (`max_num_seqs`, 128) is applied as a cap on the running batch
      (TGI's router refuses requests beyond it; the simulator never refuses, they wait).
    Also used for llama.cpp's server (`llamacpp`): FCFS slots (`max_num_seqs` = `--parallel`),
    each slot's context reserved, prompts processed in `--batch-size` chunks next to the other
    slots' decode tokens (catalog `engines.yaml` notes; an approximation).
    """
    kv, running, waiting = rep.kv, rep.running, rep.waiting
    breqs, btoks = rep.batch_reqs, rep.batch_tokens
    breqs.clear()
    btoks.clear()
    chunks: list[Request] = []
    for r in running:
        if r.prompt + r.generated - r.computed == 1 and r.generated:
            breqs.append(r)
        else:
            chunks.append(r)
    btoks.extend([1] * len(breqs))
    budget = rep.max_num_batched_tokens - len(breqs)
    for r in chunks:
        if budget <= 0:
            break
        need = r.prompt + r.generated - r.computed
        n = need if need < budget else budget
        breqs.append(r)
        btoks.append(n)
        budget -= n
    bs, max_seqs = kv.block_size, rep.max_num_seqs
    while waiting and budget > 0 and len(running) < max_seqs:
        r = waiting[0]
        pre = r.computed
        hits = 0 if pre else kv.lookup(r)
        c = pre or hits * bs
        need = r.prompt + r.generated - c
        n = need if need < budget else budget
        if not kv.allocate(r, r.prompt + r.output, hits):  # input + max_new_tokens
            break
        _admit(rep, r, c, now_s)
        breqs.append(r)
        btoks.append(n)
        budget -= n
    return _sums(breqs, btoks)


#: SGLang constants (ENGINES.md "SGLang": `environ.py`, `schedule_policy.py`, unpinned)
SGL_CLIP_MAX_NEW_TOKENS = 4096
SGL_INIT_NEW_TOKEN_RATIO = 0.7  # x schedule_conservativeness (1.0)
SGL_MIN_NEW_TOKEN_RATIO = SGL_INIT_NEW_TOKEN_RATIO * 0.14
SGL_NEW_TOKEN_RATIO_DECAY = (SGL_INIT_NEW_TOKEN_RATIO - SGL_MIN_NEW_TOKEN_RATIO) / 600
SGL_RETRACT_DECODE_STEPS = 20


def _is_prefilling(r: Request) -> bool:
    return not r.generated or r.computed + 1 < r.prompt + r.generated


def schedule_sglang(rep: Replica, now_s: float) -> StepSums:
    """SGLang's scheduler loop (ENGINES.md "SGLang": `managers/scheduler.py`
    `get_next_batch_to_run`, `schedule_policy.py` `PrefillAdder` @ad0119fd, `schedule_batch.py`
    `retract_decode`), with `enable_mixed_chunk=False` (default):
    - **try a new prefill batch first**; otherwise decode the running batch; prefill and decode
      are separate forward passes (a prefill step carries no decodes);
    - a prefill batch continues the request being chunked (at most one), then admits waiting
      requests in FCFS order (`schedule_policy="fcfs"`) while
      `extend_len + min(max_new, 4096) < available + evictable - reserved`, where every running
      request reserves `min(max_new - out, 4096) * new_token_ratio` (and each request added to
      the batch takes its whole `extend_len + min(max_new, 4096)`); with nothing running the
      first request is admitted when its blocks fit (else it would wait forever);
    - the batch's new tokens are capped by `chunked_prefill_size` (`max_num_batched_tokens`):
      the last admitted request is chunked to what is left and stops admission; new input is
      capped by `max_prefill_tokens` except for the first request;
    - before a decode step, if the running requests' next tokens do not fit (the radix cache's
      unreferenced blocks count as free: it evicts LRU), retract the request with the
      **fewest generated tokens** (ties: longest prompt; then the later one), free its KV,
      requeue it at the tail of the waiting queue for recompute (tail: `waiting_queue.extend`,
      [UNCONFIRMED] in ENGINES.md) and reset `new_token_ratio` to
      `min(1, (decoded + 20 bs) / sum(max_new))` ([UNCONFIRMED] in ENGINES.md);
    - `new_token_ratio` starts at 0.7 and falls by (0.7 - 0.098)/600 per decode step (applied
      by `Replica.finish`), to at least 0.098.
    The radix cache is stood in for by the paged prefix cache (LRU over unreferenced blocks).
    The overlap scheduler (CPU scheduling hidden behind the GPU step) is not modelled.
    """
    kv, running, waiting = rep.kv, rep.running, rep.waiting
    breqs, btoks = rep.batch_reqs, rep.batch_tokens
    breqs.clear()
    btoks.clear()
    chunk = rep.max_num_batched_tokens
    chunking = False
    if running and _is_prefilling(running[-1]):  # the chunked request (the last admitted)
        r = running[-1]
        c = r.computed
        need = r.prompt + r.generated - c
        n = need if need < chunk else chunk
        if kv.allocate(r, c + n):
            breqs.append(r)
            btoks.append(n)
            chunk -= n
            chunking = n < need
        else:  # its room was taken by decodes: retract it
            running.pop()
            rep.preempt(r, front=False)
    if waiting and chunk > 0 and not chunking:
        _sglang_admit(rep, chunk, now_s)
    if breqs:
        return _sums(breqs, btoks)
    return _sglang_decode(rep)


def _sglang_admit(rep: Replica, chunk: int, now_s: float) -> None:
    """`PrefillAdder`: admit waiting requests into the prefill batch under the reservations."""
    kv, running, waiting = rep.kv, rep.running, rep.waiting
    breqs, btoks = rep.batch_reqs, rep.batch_tokens
    bs, clip, ratio = kv.block_size, SGL_CLIP_MAX_NEW_TOKENS, rep.new_token_ratio
    reserved = 0.0
    for r in running:
        left = r.output - r.generated
        reserved += (left if left < clip else clip) * ratio
    rem = kv.free * bs - reserved
    rem_input = rep.max_prefill_tokens
    first = not breqs
    max_seqs = rep.max_num_seqs
    while waiting and chunk > 0 and len(running) < max_seqs:
        r = waiting[0]
        pre = r.computed
        hits = 0 if pre else kv.lookup(r)
        c = pre or hits * bs
        extend = r.prompt + r.generated - c
        left = r.output - r.generated
        want = extend + (left if left < clip else clip)
        if not r.held:  # its state and window blocks (`KVCache.extra_for`), in tokens
            want += kv.extra_for(r) * bs
        if want >= rem and running:
            break
        if pre:  # transferred KV (disaggregated decode worker): joins the running batch
            if not kv.allocate(r, c + 1):
                break
            _admit(rep, r, c, now_s)
            rem -= want
            continue
        if not first and extend > rem_input:
            break
        n = extend if extend < chunk else chunk
        if not kv.allocate(r, c + n, hits):
            break
        _admit(rep, r, c, now_s)
        breqs.append(r)
        btoks.append(n)
        rem -= want
        rem_input -= n
        chunk -= n
        first = False
        if n < extend:  # the chunked request: at most one in progress
            break


def _sglang_decode(rep: Replica) -> StepSums:
    """Decode every running request; `retract_decode` first when their next tokens do not fit."""
    kv, running = rep.kv, rep.running
    breqs, btoks = rep.batch_reqs, rep.batch_tokens
    bs = kv.block_size
    preempted = False
    while running:
        need = 0
        for r in running:
            if r.computed + 1 > r.held * bs:
                need += 1
        if need <= kv.free:
            break
        vi, victim = 0, running[0]
        for i, r in enumerate(running):  # fewest generated, then longest prompt, then later
            if (r.generated, -r.prompt) <= (victim.generated, -victim.prompt):
                vi, victim = i, r
        del running[vi]
        rep.preempt(victim, front=False)
        preempted = True
        total = sum(r.output for r in running)
        if total:
            decoded = sum(r.generated for r in running)
            rep.new_token_ratio = min(
                1.0, (decoded + SGL_RETRACT_DECODE_STEPS * len(running)) / total
            )
    d_ctx = 0
    for r in running:
        c = r.computed
        if c + 1 > r.held * bs:
            kv.allocate(r, c + 1)
        breqs.append(r)
        d_ctx += c + 1
    btoks.extend([1] * len(running))
    return 0, 0, 0.0, 0, len(running), d_ctx, preempted


#: engine policy name (`ReplicaConfig.engine`) -> step scheduler
POLICIES: dict[str, SchedulePolicy] = {
    "vllm": schedule_vllm_v1,
    "sglang": schedule_sglang,
    "trtllm": schedule_trtllm,
    "tgi": schedule_tgi_v3,
    "llamacpp": schedule_tgi_v3,
}
#: policies that allocate a request's blocks to completion at admission (never preempt): their
#: decode runs need no KV bound
RESERVING = frozenset({"trtllm", "tgi", "llamacpp"})
