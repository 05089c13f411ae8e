"""One serving replica: its queues, KV cache and the steps it runs, event by event.

A replica is busy with one step at a time. `start(t)` asks the scheduler for the next batch and
returns when it ends; `finish()` applies the step's effects (tokens computed and sampled,
requests finished) at that time. A step with no prefill, no preemption and every running request
decoding starts a **decode run**: the batch stays the same until the earliest of
- the first completion (fewest output tokens left),
- the last step that is sure to find free KV blocks (`1 + block_size * (free // seqs)` steps:
  each sequence needs at most one new block per `block_size` steps), and
- an arrival routed to this replica, when it could be admitted (waiting queue empty and
  `len(running) < max_num_seqs`; a blocked queue head stays blocked while only decodes run,
  because decodes only take blocks) — `truncate` cuts the run at the step that spans it,
and its total time is `StepTimeModel.decode_run_time_s`, so the steps are never iterated.

SGLang's scheduler receive interval (`recv_interval` R > 1, `--scheduler-recv-interval`;
`SchedulerRecvSkipper`): the scheduler polls for new requests only when a counter, raised by 1
per decode step and by 1,000 per prefill step, reaches R (then resets it), and at once when it
has nothing to run. Requests routed to a busy replica wait in `inbox` until then; a decode run
is cut at the next poll (`truncate`), not at the step that spans the arrival.
"""

from __future__ import annotations

import math
from array import array
from collections import deque

from fleetplan.perf.step import StepBatch, StepTimeModel
from fleetplan.sim.kvcache import KVCache
from fleetplan.sim.request import Request
from fleetplan.sim.scheduler import (
    SGL_INIT_NEW_TOKEN_RATIO,
    SGL_MIN_NEW_TOKEN_RATIO,
    SGL_NEW_TOKEN_RATIO_DECAY,
    SchedulePolicy,
)
from fleetplan.sim.steptime import DecodeRuns

__all__ = ["Replica", "SchedulePolicy"]

INF = math.inf


class Replica:
    """A replica's live state. Times are seconds of simulated time."""

    def __init__(
        self,
        index: int,
        model: StepTimeModel,
        kv: KVCache,
        *,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        policy: SchedulePolicy,
        sample_interval_s: float = 1.0,
        max_run_steps: int = 2**62,
        reserving: bool = False,
        sglang: bool = False,
        chunked_prefill: bool = True,
        max_prefill_tokens: int = 16384,
        batch_wait_iters: int = 0,
        batch_wait_tokens: int = 0,
        recv_interval: int = 1,
    ) -> None:
        self.index = index
        self.model = model
        self.runs = DecodeRuns(model)
        self._coefs = self.runs.affine  # batch size -> (a, b) of its affine decode step
        self.kv = kv
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.policy = policy
        # Blocks reserved to completion at admission (TRT-LLM, TGI): decode runs need no KV bound.
        self.kv_bound = not reserving
        self.chunked_prefill = chunked_prefill
        self.max_prefill_tokens = max_prefill_tokens
        # TensorRT-LLM batch waiting (`ReplicaConfig.batch_wait_iters`): the policy sets
        # `hold` to the steps the held prompts may still wait; `wait_count` counts held steps
        self.batch_wait_iters = batch_wait_iters
        self.batch_wait_tokens = batch_wait_tokens or (1 << 62)
        self.wait_count = 0
        self.hold = 0
        self.holding = False  # the step (or run) in flight holds prompts back
        # SGLang's receive interval (`ReplicaConfig.recv_interval`; <= 1: every step): requests
        # not yet polled wait in `inbox`; `recv_count` is the skipper's counter
        self.recv_interval = recv_interval if recv_interval > 1 else 1
        self.inbox: deque[tuple[float, Request]] = deque()  # (time routed here, request)
        self.recv_count = 0
        self.last_prefill = False  # the single step in flight ran a prefill (SGLang: extend)
        # SGLang's new_token_ratio, decayed per decode step in `finish` (0 decay: other engines).
        # SGLang also re-checks admission after every decode step (the reservations shrink), so
        # its decode runs are cut to one step while a request waits.
        self.new_token_ratio = SGL_INIT_NEW_TOKEN_RATIO
        self.ratio_decay = SGL_NEW_TOKEN_RATIO_DECAY if sglang else 0.0
        self.run_with_waiting = not sglang
        self.last_decode = False  # the single step in flight is decode-only, no retraction
        self.running: list[Request] = []
        self.waiting: deque[Request] = deque()
        self.batch_reqs: list[Request] = []
        self.batch_tokens: list[int] = []
        self.done: list[Request] = []  # finished since the fleet last drained it
        self.end_s = INF  # end of the step in flight; INF when idle
        self.version = 0  # of the replica's live entry in the event heap
        self.t0_s = 0.0
        self.run_steps = 0  # >0: a decode run of this many steps is in flight
        self.run_seqs = 0
        self.run_ctx = 0
        self.interruptible = False
        self.all_decoding = False  # after the last step: every running request decodes
        self.agg_ctx = 0  # then: their context tokens (computed + 1 each)
        self.agg_left = 0  # then: the fewest output tokens any of them has left
        self.max_run_steps = max_run_steps  # 1: step every decode (for checking the runs)
        self.preemptions = 0
        self.steps = 0
        self.sample_interval_s = sample_interval_s
        self.next_sample_s = 0.0
        self.int_t = 0.0  # time integrals of the state up to int_t (gauge_means)
        self.int_running = self.int_waiting = self.int_kv = 0.0
        self.waiting_peak = 0  # most requests waiting at once (after any arrival)
        self.kv_peak = 0  # most KV blocks used at once, as the time integrals see the state
        self.ts_t = array("d")
        self.ts_kv = array("d")
        self.ts_running = array("l")
        self.ts_waiting = array("l")

    @property
    def outstanding(self) -> int:
        """Requests routed here and not finished (running + waiting, polled or not)."""
        return len(self.running) + len(self.waiting) + len(self.inbox)

    @property
    def idle(self) -> bool:
        return self.end_s == INF

    def add(self, req: Request, at_s: float | None = None) -> None:
        """Route `req` here at `at_s` (default: its arrival; a disaggregated decode worker
        receives it at its hand-off)."""
        t = req.arrival_s if at_s is None else at_s
        self._integrate(t)
        if self.recv_interval > 1 and not self.idle:  # seen at the scheduler's next poll
            self.inbox.append((t, req))
        else:
            self.waiting.append(req)
        n = len(self.waiting) + len(self.inbox)
        if n > self.waiting_peak:  # noqa: PLR1730 - hot path
            self.waiting_peak = n

    def _poll(self) -> None:
        """The receive skipper's poll: requests routed here join the waiting queue."""
        self.recv_count = 0
        if self.inbox:
            self.waiting.extend(r for _, r in self.inbox)
            self.inbox.clear()

    def preempt(self, victim: Request, front: bool = True) -> None:
        """Recompute preemption: free the blocks, forget the KV, requeue at the front (vLLM) or
        the tail (SGLang's retraction)."""
        self.kv.release(victim)
        victim.computed = 0
        victim.preemptions += 1
        self.preemptions += 1
        if front:
            self.waiting.appendleft(victim)
        else:
            self.waiting.append(victim)
        n = len(self.waiting) + len(self.inbox)
        if n > self.waiting_peak:  # noqa: PLR1730
            self.waiting_peak = n

    def wake(self, now_s: float) -> None:
        """An idle replica got work: an empty step ending at `now_s` makes the event loop call
        `start` once every arrival of that instant has been queued."""
        self.batch_reqs.clear()
        self.batch_tokens.clear()
        self.run_steps = 0
        self.interruptible = False
        self.t0_s = self.end_s = now_s
        self.recv_count = self.recv_interval  # an idle scheduler polls at once

    def start(self, now_s: float) -> float:
        """Schedule the step (or decode run) starting at `now_s`; returns its end (INF: idle)."""
        self.t0_s = now_s
        if self.recv_interval > 1 and (self.recv_count >= self.recv_interval
                                       or (self.inbox and not self.running
                                           and not self.waiting)):
            self._poll()  # the counter reached the interval, or nothing to run (idle loop)
        if self.all_decoding and not self.waiting and self.max_run_steps > 1:
            end = self._start_run_fast(now_s)
            if end >= 0.0:
                return end
        p_tok, p_seqs, p_pairs, p_read, s, ctx, preempted = self.policy(self, now_s)
        self.all_decoding = False
        if not self.batch_reqs:
            if self.waiting:
                raise RuntimeError(f"replica {self.index}: waiting requests cannot be scheduled")
            self.end_s = INF
            return INF
        running = self.running
        self.last_decode = p_seqs == 0 and not preempted
        self.last_prefill = p_seqs > 0
        if (p_seqs == 0 and not preempted and s == len(running)
                and (self.run_with_waiting or not self.waiting)):
            left = min([r.output - r.generated for r in running])
            kv = self.kv
            fit = 1 + kv.block_size * (kv.free // s) if self.kv_bound else left
            k = min(fit, left, self.max_run_steps)
            if self.hold:  # prompts held by batch waiting: at most the wait left, cut by arrivals
                k = min(k, self.hold)
            if self.inbox:  # unpolled requests: run to the next poll
                k = min(k, self.recv_interval - self.recv_count)
            self._run(now_s, k, s, ctx)
            if self.hold:
                self.interruptible = k > 1
        else:
            dt = self.model.step_time_s(StepBatch(p_tok, p_seqs, p_pairs, p_read, s, ctx))
            self.run_steps = 0
            self.interruptible = False
            self.end_s = now_s + dt
        return self.end_s

    def _start_run_fast(self, now_s: float) -> float:
        """The scheduler's answer known in advance: nothing waits and every running request
        decodes, so the step is all of them, one token each. Their first blocks are taken with
        the rest of the run's at its end (the bound leaves room for them). -1.0: no shortcut."""
        s = len(self.running)
        if s == 0:
            self.end_s = INF
            return INF
        kv = self.kv
        fit = kv.block_size * (kv.free // s) if self.kv_bound else 1 << 62
        if fit < 1 or s > self.max_num_batched_tokens:
            return -1.0
        k = self.agg_left
        if fit < k:  # noqa: PLR1730 - hot path: a compare is cheaper than a call to min()
            k = fit
        if self.max_run_steps < k:  # noqa: PLR1730
            k = self.max_run_steps
        if self.inbox:  # unpolled requests: run to the next poll
            k = min(k, self.recv_interval - self.recv_count)
        ctx = self.agg_ctx
        self.run_steps, self.run_seqs, self.run_ctx = k, s, ctx
        self.interruptible = k > 1 and s < self.max_num_seqs
        co = self._coefs.get(s) or self.runs.coef(s)
        if co is None:
            self.end_s = end = now_s + self.runs.run_s(s, ctx, k)
        else:  # the affine closed form of DecodeRuns.run_s, inlined for the hot path
            self.end_s = end = now_s + k * co[0] + co[1] * (k * ctx + s * k * (k - 1) / 2)
        return end

    def _run(self, now_s: float, k: int, s: int, ctx: int) -> None:
        self.run_steps, self.run_seqs, self.run_ctx = k, s, ctx
        self.interruptible = k > 1 and not self.waiting and s < self.max_num_seqs
        self.end_s = now_s + self.runs.run_s(s, ctx, k)

    def truncate(self, arrival_s: float) -> bool:
        """Cut an interruptible decode run at the step in flight at `arrival_s`, so that the
        next step can admit the arrival. Returns True when the end time changed."""
        if not self.interruptible or arrival_s >= self.end_s:
            return False
        k, s, ctx, t0 = self.run_steps, self.run_seqs, self.run_ctx, self.t0_s
        j = self.runs.steps_until(s, ctx, arrival_s - t0, k)
        if self.recv_interval > 1:  # the scheduler sees it at its next poll
            j += -(self.recv_count + j) % self.recv_interval
        if j >= k:
            return False
        self.run_steps = j
        self.end_s = t0 + self.runs.run_s(s, ctx, j)
        self.interruptible = False
        return True

    def finish(self) -> None:
        """Apply the effects of the step (or run) ending at `self.end_s`, and note whether
        every running request now decodes (`all_decoding`, with their context and the fewest
        tokens left, `agg_ctx` and `agg_left`)."""
        t = self.end_s
        dt = t - self.int_t
        if dt > 0.0:  # self._integrate(t), inlined for the hot path
            self.int_running += len(self.running) * dt
            self.int_waiting += (len(self.waiting) + len(self.inbox)) * dt
            used = self.kv.used
            self.int_kv += used * dt
            if used > self.kv_peak:  # noqa: PLR1730 - hot path
                self.kv_peak = used
            self.int_t = t
        k = self.run_steps
        if not k and not self.batch_reqs:  # a wake-up, not a step
            return
        if self.recv_interval > 1:  # the skipper's weights: decode 1 a step, prefill 1,000
            if k:
                self._count_run(k)
            else:
                self.recv_count += 1000 if self.last_prefill else 1
        if self.holding:
            self.wait_count += k or 1
            self.holding = False
        finished = False
        ctx = 0
        left = 1 << 62
        decoding = True
        if self.ratio_decay and (k or self.last_decode):
            self.new_token_ratio = max(SGL_MIN_NEW_TOKEN_RATIO,
                                       self.new_token_ratio - (k or 1) * self.ratio_decay)
        if k:
            self.steps += k
            kv = self.kv
            bs = kv.block_size
            keyed = kv.keyed
            taken = 0
            # Every one of the run's s sequences gained k tokens of context; finished ones leave.
            ctx = self.run_ctx + k * self.run_seqs
            for r in self.running:
                c = r.computed + k
                r.computed = c
                g = r.generated + k
                r.generated = g
                if c > r.held * bs:
                    if keyed:
                        if not kv.allocate(r, c):  # pragma: no cover - the run bound
                            raise RuntimeError("decode run outgrew the free KV blocks")
                    else:  # anonymous blocks only: count them, take them at once below
                        blocks = -(-c // bs)
                        taken += blocks - r.held
                        r.held = blocks
                rem = r.output - g
                if rem < left:  # hot path: one compare for most requests, no call to min()
                    if rem <= 0:
                        finished = True
                        ctx -= c + 1
                    else:
                        left = rem
            if taken:
                kv.take_anonymous(taken)
        else:
            self.steps += 1
            decoding = len(self.batch_reqs) == len(self.running)
            for r, n in zip(self.batch_reqs, self.batch_tokens, strict=True):
                c = r.computed = r.computed + n
                if c == r.prompt + r.generated:
                    r.generated += 1
                    if r.first_token_s < 0.0:
                        r.first_token_s = t
                    if r.generated >= r.output:
                        finished = True
                        continue
                    ctx += c + 1
                    if r.output - r.generated < left:  # noqa: PLR1730 - hot path
                        left = r.output - r.generated
                else:
                    decoding = False
        self.all_decoding = decoding
        self.agg_ctx = ctx
        self.agg_left = left
        if finished:
            self._complete(t)
        if t >= self.next_sample_s:
            self._sample(t)
        self.end_s = INF

    def _count_run(self, k: int) -> None:
        """Count a decode run of `k` steps on the receive skipper. A run that passed polls
        (one each time the counter reached the interval) without being cut at them (it could
        not admit: the batch is full) received what had arrived by the last of them."""
        r, c0 = self.recv_interval, self.recv_count
        c = c0 + k
        if c <= r:
            self.recv_count = c
            return
        # polls at c0 + j = r, 2r, ...; one due at the end of the run stays due (count r)
        self.recv_count = (c - 1) % r + 1
        last = (c - 1) // r * r - c0  # steps to the last poll inside the run
        if self.inbox and last > 0:
            t_poll = self.t0_s + self.runs.run_s(self.run_seqs, self.run_ctx, last)
            while self.inbox and self.inbox[0][0] <= t_poll:
                self.waiting.append(self.inbox.popleft()[1])

    def _complete(self, t: float) -> None:
        keep: list[Request] = []
        for r in self.running:
            if r.generated >= r.output:
                if r.first_token_s < 0.0:
                    r.first_token_s = t
                self.kv.release(r)
                self.done.append(r)
            else:
                keep.append(r)
        self.running = keep

    def _integrate(self, t: float) -> None:
        """Add the state that held since the last event (running, waiting, KV blocks used) times
        its duration to the time integrals the gauges' means come from; called before an event
        at `t` changes the state. A decode run's KV is counted at its value when the run began
        (its blocks are taken at its end)."""
        dt = t - self.int_t
        if dt > 0.0:
            self.int_running += len(self.running) * dt
            self.int_waiting += (len(self.waiting) + len(self.inbox)) * dt
            self.int_kv += self.kv.used * dt
            self.kv_peak = max(self.kv_peak, self.kv.used)
            self.int_t = t

    def gauge_means(self, until_s: float) -> tuple[float, float, float]:
        """Time averages over [0, until_s] of (running, waiting, KV usage); the state after the
        last event holds to `until_s`."""
        self._integrate(until_s)
        if until_s <= 0.0:
            return 0.0, 0.0, 0.0
        return (self.int_running / until_s, self.int_waiting / until_s,
                self.int_kv / self.kv.num_blocks / until_s)

    def _sample(self, t: float) -> None:
        self.ts_t.append(t)
        self.ts_kv.append(self.kv.used / self.kv.num_blocks)
        self.ts_running.append(len(self.running))
        self.ts_waiting.append(len(self.waiting) + len(self.inbox))
        self.next_sample_s = t + self.sample_interval_s
