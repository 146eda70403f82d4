"""nexa's replica choice on Ray Serve's own request-router API: each model deployment names PrefixRouter
in its RequestRouterConfig, and Serve runs one in the ingress (the only caller of model handles) per
model. The rule and its state live in nexa.cluster.affinity (Serve pickles this module by value, so it
keeps no state of its own); this class feeds it the request's RouteKey (the `route` keyword of each
`relay` call, set by nexa.cluster.transport) and tells it where requests went and when they ended."""

from __future__ import annotations

import time
from collections import OrderedDict

from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

from nexa.cluster.affinity import Choice, RouteKey, shared_affinity

_PENDING = 4096  # requests chosen for but not (yet) routed, kept: the oldest are forgotten beyond this
STALE = 10.0  # seconds: Serve reports a request routed within milliseconds of its choice, or chooses again


class PrefixRouter(RequestRouter):
    """Session, then prefix, yielding to load (nexa.cluster.affinity). Its first rank is the one replica
    the rule picks; when that one is full Serve takes the second rank, the rest by load."""

    def initialize_state(self, load_threshold: int = 2, capacity: int = 4096, slots: int = 1) -> None:
        """Called by Serve with the deployment's request_router_kwargs (nexa.cluster.placement)."""
        self._affinity = shared_affinity(self.app_name, load_threshold, capacity, slots)
        self._chosen: OrderedDict[str, tuple[RouteKey, Choice, float]] = OrderedDict()  # oldest first
        self._running: dict[str, str] = {}  # internal request id -> replica
        # Serve may report a short request's end before it reports the request routed, and a refused attempt's
        # end (a full replica) after its retry elsewhere was routed: ends are matched by request and replica.
        self._ended: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        key = pending_request.kwargs.get("route") if pending_request is not None else None
        key = key if isinstance(key, RouteKey) else RouteKey()
        if pending_request is not None:
            self._drop(pending_request.metadata.internal_request_id)  # asked again: the earlier choice went nowhere
        choice = self._affinity.choose(list(by_id), key)
        if pending_request is not None:
            pending_request.routing_context.should_backoff = True  # all full: wait before asking again
            self._track(pending_request, key, choice)
        first = by_id[choice.replica]
        busy = self._affinity.busy
        rest = sorted((r for r in candidate_replicas if r is not first), key=lambda r: busy(r.replica_id.unique_id))
        return [[first], rest] if rest else [[first]]

    def _track(self, pending_request: PendingRequest, key: RouteKey, choice: Choice) -> None:
        """Count the choice as load on its replica until Serve reports the request routed or asks again for it
        (every half second at most while all are full). A request cancelled while it waited for room is never
        routed, nor is one whose client left just as it was sent: choices older than STALE are forgotten."""
        self._affinity.assign(choice)
        self._chosen[pending_request.metadata.internal_request_id] = (key, choice, time.monotonic())
        stale = time.monotonic() - STALE
        while self._chosen and (len(self._chosen) > _PENDING or next(iter(self._chosen.values()))[2] < stale):
            self._affinity.release(self._chosen.popitem(last=False)[1][1])

    def _drop(self, request: str) -> None:
        chosen = self._chosen.pop(request, None)
        if chosen is not None:
            self._affinity.release(chosen[1])

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: object) -> None:
        request, replica = pending_request.metadata.internal_request_id, replica_id.unique_id
        key, choice, _ = self._chosen.pop(request, (RouteKey(), None, 0.0))
        running = (request, replica) not in self._ended and not key.probe
        self._ended.pop((request, replica), None)
        self._affinity.routed(replica, key, choice, running)
        if running:
            self._running[request] = replica

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        """Also called for a request the replica refused (full), and may come before on_request_routed."""
        replica = replica_id.unique_id
        if self._running.get(internal_request_id) == replica:
            del self._running[internal_request_id]
            self._affinity.completed(replica)
        else:
            self._ended[internal_request_id, replica] = None
            _bound(self._ended)

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        super().update_replicas(replicas)
        self._affinity.serving({r.replica_id.unique_id for r in replicas})

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._affinity.serving({r.unique_id for r in self.curr_replicas})


def _bound(entries: OrderedDict) -> None:
    """Ends of requests never reported routed leave entries that nothing removes: keep the newest."""
    while len(entries) > _PENDING:
        entries.popitem(last=False)
