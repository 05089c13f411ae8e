"""Routing an arriving request to a replica; replicas interact only through the router.

- `round-robin`: replicas in turn.
- `least-outstanding`: fewest requests routed and not finished (running + waiting); ties go to
  the lowest index.
- `prefix-aware`: the replica whose prefix cache holds the longest leading run of the request's
  blocks (as KV-aware routers such as llm-d's and vLLM production-stack's do), unless its load
  exceeds the least loaded replica's by more than `max_imbalance` requests; then, and on ties,
  least outstanding.
A router is anything with `route(req, replicas) -> index`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fleetplan.errors import UsageError
from fleetplan.sim.replica import Replica
from fleetplan.sim.request import Request

__all__ = ["ROUTERS", "LeastOutstanding", "PrefixAware", "RoundRobin", "Router", "make_router"]


class Router(Protocol):
    def route(self, req: Request, replicas: Sequence[Replica]) -> int: ...


class RoundRobin:
    def __init__(self) -> None:
        self._next = 0

    def route(self, req: Request, replicas: Sequence[Replica]) -> int:
        i = self._next
        self._next = (i + 1) % len(replicas)
        return i


class LeastOutstanding:
    def route(self, req: Request, replicas: Sequence[Replica]) -> int:
        best, best_load = 0, replicas[0].outstanding
        for i in range(1, len(replicas)):
            load = replicas[i].outstanding
            if load < best_load:
                best, best_load = i, load
        return best


class PrefixAware:
    def __init__(self, max_imbalance: int = 8) -> None:
        self.max_imbalance = max_imbalance
        self._lor = LeastOutstanding()

    def route(self, req: Request, replicas: Sequence[Replica]) -> int:
        least = self._lor.route(req, replicas)
        if not req.keys:
            return least
        floor = replicas[least].outstanding + self.max_imbalance
        best, best_hits = least, replicas[least].kv.lookup(req)
        for i, rep in enumerate(replicas):
            if rep.outstanding > floor:
                continue
            hits = rep.kv.lookup(req)
            fewer = rep.outstanding < replicas[best].outstanding
            if hits > best_hits or (hits == best_hits and fewer):
                best, best_hits = i, hits
        return best


ROUTERS: dict[str, type[RoundRobin] | type[LeastOutstanding] | type[PrefixAware]] = {
    "round-robin": RoundRobin,
    "least-outstanding": LeastOutstanding,
    "prefix-aware": PrefixAware,
}
_ALIASES = {"rr": "round-robin", "lor": "least-outstanding", "kv-aware": "prefix-aware"}


def make_router(name: str) -> Router:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in ROUTERS:
        raise UsageError(
            f"unknown router '{name}'; choose one of {', '.join(ROUTERS)}", where="--router"
        )
    router: Router = ROUTERS[key]()
    return router
