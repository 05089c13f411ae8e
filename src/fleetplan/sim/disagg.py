"""The event loop of a disaggregated fleet: prefill workers, KV transfers, decode workers.

A request goes to a prefill worker (its pool's router) as a one-token request: the worker runs
the prompt under its engine's policy and samples the first token, as the prefill instance does
in vLLM's and SGLang's disaggregated serving. Then the prompt's KV moves to the decode pool
(`DisaggFleetConfig.transfer_s_per_token` x prompt tokens); when it has arrived, the decode
pool's router picks a worker, which admits the request with its prompt KV already computed
(blocks for prompt + 1 tokens, no prefill: vLLM's NixlConnector treats the transferred tokens as
computed) and decodes the remaining output tokens. A request preempted on a decode worker
recomputes its prompt and generated tokens there (vLLM's recompute preemption).

Times (stated definitions): TTFT = end of the prefill step that sampled the first token + the
KV transfer, i.e. the first token reaches the client together with the hand-off; TPOT =
(E2E - TTFT) / (output - 1) comes from the decode workers' steps (their queueing included).
A one-token output finishes on its prefill worker, with no transfer.

Hand-offs are events like arrivals: replica events strictly before one are processed first, and
at the same instant the hand-off joins the queue before the worker's next step is scheduled.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from fleetplan.sim.config import DisaggFleetConfig
from fleetplan.sim.load import Arrivals, ClientQueue, ClosedLoop, block_keys
from fleetplan.sim.metrics import Records
from fleetplan.sim.replica import Replica
from fleetplan.sim.request import Request
from fleetplan.sim.router import make_router

__all__ = ["DisaggLoop"]

INF = math.inf


class DisaggLoop:
    """Both pools' replicas in one heap (prefill workers first), plus the hand-offs in flight."""

    def __init__(self, fleet: DisaggFleetConfig, reps: list[Replica], rec: Records) -> None:
        n_p = len(fleet.prefill)
        self.reps = reps
        self.n_prefill = n_p
        self.pool_p, self.pool_d = reps[:n_p], reps[n_p:]
        self.route_p = make_router(fleet.router).route
        self.route_d = make_router(fleet.router).route
        self.per_token_s = [fleet.transfer_s_per_token(c) for c in fleet.prefill]
        self.rec = rec
        self.heap: list[tuple[float, int, int]] = []
        self.hand: list[tuple[float, int, Request]] = []  # (KV arrival, request id, request)

    def _push(self, rep: Replica, t: float) -> None:
        rep.version += 1
        heapq.heappush(self.heap, (t, rep.index, rep.version))

    def _enter(self, req: Request, rep: Replica, t: float) -> None:
        rep.add(req, t)
        if rep.idle:
            rep.wake(t)
            self._push(rep, t)
        elif rep.truncate(t):
            self._push(rep, rep.end_s)

    def arrive(self, req: Request) -> None:
        """A new request: record it, then send it to a prefill worker for one token."""
        self.rec.arrive(req)
        req.output = 1
        pool = self.pool_p
        self._enter(req, pool[self.route_p(req, pool)], req.arrival_s)

    def _prefilled(self, r: Request, i: int, t: float, sends: ClientQueue | None) -> None:
        out = int(self.rec.output_tokens[r.idx])
        if out <= 1:
            self.rec.finish(r, i, t)
            if sends is not None:
                sends.append(t)
            return
        t_kv = t + r.prompt * self.per_token_s[i]
        r.output = out
        r.computed = r.prompt  # the transferred KV (generated == 1: the first token)
        r.first_token_s = t_kv
        heapq.heappush(self.hand, (t_kv, r.idx, r))

    def drain(self, until: float, sends: ClientQueue | None = None) -> None:
        """Process replica events and hand-offs before `until` in time order; a hand-off goes
        before a replica event of the same instant. With a closed loop's `sends`, stop also at
        the earliest pending send, which completions processed here may bring forward (as
        `fleet._drain_to_send`: a send joins before the events of its instant, unless a
        completion processed here made it at that instant)."""
        heap, hand, reps, rec = self.heap, self.hand, self.reps, self.rec
        pop, push, n_p = heapq.heappop, heapq.heappush, self.n_prefill
        q = sends.heap if sends is not None else None
        t_last = -INF
        while True:
            te = heap[0][0] if heap else INF
            th = hand[0][0] if hand else INF
            t = th if th <= te else te
            if not t < until:
                return
            if q:
                ts = q[0][0]
                if t > ts or (t == ts and t != t_last):
                    return
            if th <= te:
                _, _, r = pop(hand)
                pool = self.pool_d
                self._enter(r, pool[self.route_d(r, pool)], th)
                t_last = th
                continue
            _, i, ver = pop(heap)
            rep = reps[i]
            if ver != rep.version:
                continue
            t_last = t
            rep.finish()
            done = rep.done
            if done:
                for r in done:
                    if i < n_p:
                        self._prefilled(r, i, t, sends)
                    else:
                        rec.finish(r, i, t)
                        if sends is not None:
                            sends.append(t)
                done.clear()
            end = rep.start(t)
            if end != INF:
                rep.version = ver = ver + 1
                push(heap, (end, i, ver))

    def run_open(self, arr: Arrivals, caching: bool) -> None:
        bs = self.pool_p[0].kv.block_size
        times = arr.arrival_s.tolist()
        isl = [max(x, 1) for x in arr.input_tokens.tolist()]
        osl = [max(x, 1) for x in arr.output_tokens.tolist()]
        hashes = arr.hash_ids
        for j, ta in enumerate(times):
            self.drain(ta)
            keys = None
            if caching and hashes is not None and hashes[j]:
                keys = block_keys(hashes[j], arr.block_tokens, bs, isl[j])
            self.arrive(Request(j, ta, isl[j], osl[j], keys))
        self.drain(INF)

    def run_closed(self, load: ClosedLoop, rng: np.random.Generator) -> None:
        """Each of `concurrency` clients sends its next request when its last one finishes
        (plus its think time); the requests arrive in global send-time order."""
        isls, osls = load.lengths(rng)
        pending = ClientQueue(min(load.concurrency, load.total), load.think_s, rng)
        for j in range(load.total):
            self.drain(INF, pending)
            if not pending:  # pragma: no cover - a request in flight always has an event
                raise RuntimeError("closed loop stalled")
            self.arrive(Request(j, pending.popleft(), int(isls[j]), int(osls[j])))
        self.drain(INF)
