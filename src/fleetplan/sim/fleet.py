"""The event loop: arrivals, routing, and each replica's steps in time order.

Like simpy's core, the loop is a heap of (time, replica, version) entries: each replica has at
most one live entry, the end of its step or decode run in flight (a stale entry is skipped when
its time no longer matches). Arrivals come from a sorted array (open loop) or from completions
(closed loop: a heap of the clients' send times, which a completion can bring forward, so the
loop never processes a replica event past the earliest pending send). At an arrival the
replicas' events up to that time are processed first, then the router picks a replica from
their state, and only that replica's decode run is cut short.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from fleetplan.errors import InfeasibleError, UsageError
from fleetplan.sim.config import DisaggFleetConfig, FleetConfig, ReplicaConfig
from fleetplan.sim.kvcache import KVCache
from fleetplan.sim.load import Arrivals, ClientQueue, ClosedLoop, Load, TraceLoad, block_keys
from fleetplan.sim.metrics import Records, SimResult
from fleetplan.sim.replica import Replica
from fleetplan.sim.request import Request
from fleetplan.sim.router import make_router
from fleetplan.sim.scheduler import POLICIES, RESERVING

__all__ = ["check_lengths", "simulate"]

Route = Callable[[Request, Sequence[Replica]], int]


def _replica(i: int, cfg: ReplicaConfig, sample_interval_s: float, decode_runs: bool) -> Replica:
    kv = KVCache(cfg.kv_blocks, cfg.block_size, prefix_caching=cfg.prefix_caching,
                 window_tokens=cfg.kv_window_tokens, window_ratio=cfg.kv_window_ratio,
                 state_blocks=cfg.kv_state_blocks)
    return Replica(
        i,
        cfg.step_model,
        kv,
        max_num_seqs=cfg.max_num_seqs,
        max_num_batched_tokens=cfg.max_num_batched_tokens,
        policy=POLICIES[cfg.engine],
        sample_interval_s=sample_interval_s,
        max_run_steps=2**62 if decode_runs else 1,
        reserving=cfg.engine in RESERVING,
        sglang=cfg.engine == "sglang",
        chunked_prefill=cfg.chunked_prefill,
        max_prefill_tokens=cfg.max_prefill_tokens,
        batch_wait_iters=cfg.batch_wait_iters,
        batch_wait_tokens=cfg.batch_wait_tokens,
        recv_interval=cfg.recv_interval,
    )


AnyFleet = FleetConfig | DisaggFleetConfig


def check_lengths(fleet: AnyFleet, isl: np.ndarray, osl: np.ndarray) -> None:
    """Every request must fit the context and one replica's whole KV pool (vLLM refuses to start
    when one `max_model_len` sequence does not fit)."""
    total = isl.astype(np.int64) + np.maximum(osl.astype(np.int64), 1)
    longest = int(total.max())
    for cfg in fleet.replicas:
        if cfg.max_model_len is not None and longest > cfg.max_model_len:
            n = int((total > cfg.max_model_len).sum())
            raise UsageError(
                f"{n} request(s) need up to {longest} tokens (input + output), beyond the "
                f"model's context of {cfg.max_model_len}",
                where="--isl/--osl" if len(np.unique(total)) == 1 else "workload",
            )
        if not cfg.chunked_prefill and int(isl.max()) > cfg.max_num_batched_tokens:
            raise UsageError(
                f"{cfg.name}: a prompt of {int(isl.max())} tokens exceeds max_num_tokens "
                f"{cfg.max_num_batched_tokens} with chunked prefill off (TensorRT-LLM refuses it)",
                where="--max-num-batched-tokens",
            )
        if longest > cfg.longest_fitting:
            held = ("" if cfg.longest_fitting == cfg.kv_capacity_tokens else
                    " with its sliding-window and linear-attention state")
            raise InfeasibleError(
                f"{cfg.name}: a request of {longest} tokens{held} does not fit the KV cache "
                f"of {cfg.kv_capacity_tokens} tokens"
            )


def simulate(
    fleet: AnyFleet,
    load: Load,
    *,
    seed: int = 0,
    sample_interval_s: float = 1.0,
    decode_runs: bool = True,
) -> SimResult:
    """Simulate `load` on `fleet` (replicas behind a router, or disaggregated prefill and decode
    pools); `seed` drives synthetic arrivals and a closed loop's think times (the loop itself is
    deterministic).

    `sample_interval_s`: spacing of the KV / running / waiting time series. `decode_runs=False`
    steps through every decode step (slow; the same results, for checking the skipping).
    """
    t_wall = time.perf_counter()
    rng = np.random.default_rng(seed)
    arrivals: Arrivals | None = None
    rejected = 0
    if isinstance(load, ClosedLoop):
        n = load.total
        check_lengths(fleet, np.array([load.isl]), np.array([load.osl]))
    else:
        arrivals = load.arrivals(rng)
        if isinstance(load, TraceLoad) and load.too_long == "reject":
            arrivals, rejected = _reject_too_long(fleet, arrivals)
        n = len(arrivals)
        check_lengths(fleet, np.maximum(arrivals.input_tokens, 1), arrivals.output_tokens)
    if sample_interval_s <= 0:
        raise UsageError(f"must be > 0, got {sample_interval_s}", where="sample_interval_s")
    reps = [_replica(i, c, sample_interval_s, decode_runs) for i, c in enumerate(fleet.replicas)]
    rec = Records(n)
    if isinstance(fleet, DisaggFleetConfig):
        from fleetplan.sim.disagg import DisaggLoop

        loop = DisaggLoop(fleet, reps, rec)
        if arrivals is not None:
            loop.run_open(arrivals, any(c.prefix_caching for c in fleet.replicas))
        else:
            assert isinstance(load, ClosedLoop)
            loop.run_closed(load, rng)
    elif arrivals is not None:
        _loop_open(fleet, reps, arrivals, rec)
    else:
        assert isinstance(load, ClosedLoop)
        _loop_closed(fleet, reps, load, rec, rng)
    return SimResult.build(fleet, reps, rec, wall_s=time.perf_counter() - t_wall,
                           rejected=rejected)


def _reject_too_long(fleet: AnyFleet, arr: Arrivals) -> tuple[Arrivals, int]:
    limit = min(min(c.max_model_len or c.longest_fitting, c.longest_fitting)
                for c in fleet.replicas)
    total = np.maximum(arr.input_tokens, 1) + np.maximum(arr.output_tokens, 1)
    ok = total <= limit
    n_bad = int((~ok).sum())
    if n_bad == len(ok):
        raise UsageError(f"every request is longer than {limit} tokens (context or KV pool)",
                         where="workload")
    return (arr.keep(ok) if n_bad else arr), n_bad


def _push(heap: list[tuple[float, int, int]], rep: Replica, t: float) -> None:
    """Make `t` the replica's one live event (earlier entries of it become stale)."""
    rep.version += 1
    heapq.heappush(heap, (t, rep.index, rep.version))


def _drain(reps: list[Replica], heap: list[tuple[float, int, int]], until: float,
           rec: Records) -> None:
    """Process replica events before `until`: arrivals at the same instant all join the queue
    before the step that admits them is scheduled. Ties between replicas go to the lower
    index."""
    pop, push, inf = heapq.heappop, heapq.heappush, math.inf
    while heap and heap[0][0] < until:
        t, i, ver = pop(heap)
        rep = reps[i]
        if ver != rep.version:
            continue
        rep.finish()
        done = rep.done
        if done:
            for r in done:
                rec.finish(r, i, t)
            done.clear()
        end = rep.start(t)
        if end != inf:
            rep.version = ver = ver + 1
            push(heap, (end, i, ver))


def _admit(req: Request, reps: list[Replica], route: Route,
           heap: list[tuple[float, int, int]]) -> int:
    i = route(req, reps)
    rep = reps[i]
    rep.add(req)
    t = req.arrival_s
    if rep.idle:
        rep.wake(t)
        _push(heap, rep, t)
    elif rep.truncate(t):
        _push(heap, rep, rep.end_s)
    return i


def _loop_open(fleet: FleetConfig, reps: list[Replica], arr: Arrivals, rec: Records) -> None:
    route = make_router(fleet.router).route
    heap: list[tuple[float, int, int]] = []
    caching = any(c.prefix_caching for c in fleet.replicas) and arr.hash_ids is not None
    bs = fleet.replicas[0].block_size
    times = arr.arrival_s.tolist()
    isl = np.maximum(arr.input_tokens, 1).tolist()
    osl = np.maximum(arr.output_tokens, 1).tolist()
    hashes = arr.hash_ids
    for j in range(len(times)):
        ta = times[j]
        _drain(reps, heap, ta, rec)
        keys = None
        if caching:
            assert hashes is not None
            h = hashes[j]
            if h:
                keys = block_keys(h, arr.block_tokens, bs, isl[j])
        req = Request(j, ta, isl[j], osl[j], keys)
        rec.arrive(req)
        _admit(req, reps, route, heap)
    _drain(reps, heap, math.inf, rec)


def _drain_to_send(reps: list[Replica], heap: list[tuple[float, int, int]], rec: Records,
                   sends: ClientQueue) -> None:
    """Process replica events in time order up to the earliest pending send, which a completion
    processed here may bring forward (its response time + think time): no replica ever runs
    past a send time before that request has been routed, so a decode run in flight at it is
    cut there (`_admit`). A send joins before replica events of its instant, as an open-loop
    arrival does, except one made at that very instant by a completion processed here (no think
    time): the response leaves when the step ends, so every replica event of the instant goes
    first and the clients answered together send together."""
    pop, push, inf = heapq.heappop, heapq.heappush, math.inf
    q = sends.heap
    t_last = -inf
    while heap:
        t = heap[0][0]
        if q:
            ts = q[0][0]
            if t > ts or (t == ts and t != t_last):
                return
        t, i, ver = pop(heap)
        rep = reps[i]
        if ver != rep.version:
            continue
        t_last = t
        rep.finish()
        done = rep.done
        if done:
            for r in done:
                rec.finish(r, i, t)
                sends.append(t)
            done.clear()
        end = rep.start(t)
        if end != inf:
            rep.version = ver = ver + 1
            push(heap, (end, i, ver))
    if not q:  # pragma: no cover - a request in flight always has an event
        raise RuntimeError("closed loop stalled")


def _loop_closed(fleet: FleetConfig, reps: list[Replica], load: ClosedLoop, rec: Records,
                 rng: np.random.Generator) -> None:
    """Each of `concurrency` clients sends its next request when its last one finishes (plus
    its think time); the requests are routed in global send-time order (`_drain_to_send`)."""
    route = make_router(fleet.router).route
    heap: list[tuple[float, int, int]] = []
    isls, osls = load.lengths(rng)
    pending = ClientQueue(min(load.concurrency, load.total), load.think_s, rng)
    for j in range(load.total):
        _drain_to_send(reps, heap, rec, pending)
        req = Request(j, pending.popleft(), int(isls[j]), int(osls[j]))
        rec.arrive(req)
        _admit(req, reps, route, heap)
    _drain(reps, heap, math.inf, rec)
