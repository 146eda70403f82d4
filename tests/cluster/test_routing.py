"""nexa's Serve request router (nexa.cluster.routing) driven as Serve drives it, with Serve's replicas and
requests reduced to what the router reads of them: its bookkeeping of choices not yet routed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

pytest.importorskip("ray.serve.request_router", reason="needs pip install -e '.[ray]'")
from ray.serve._private.common import DeploymentHandleSource, DeploymentID  # noqa: E402

from nexa.cluster import routing  # noqa: E402
from nexa.cluster.affinity import RouteKey, affinity_of  # noqa: E402

REPLICAS = [SimpleNamespace(replica_id=SimpleNamespace(unique_id=name)) for name in ("a", "b")]


def router(app: str) -> routing.PrefixRouter:
    made = routing.PrefixRouter(DeploymentID(name="model", app_name=app), DeploymentHandleSource.UNKNOWN)
    made.initialize_state(load_threshold=2, capacity=64, slots=2)
    return made


def request(n: int) -> SimpleNamespace:
    return SimpleNamespace(metadata=SimpleNamespace(internal_request_id=f"r{n}"), kwargs={"route": RouteKey()},
                           routing_context=SimpleNamespace(should_backoff=False))


def first_choice(prefix: routing.PrefixRouter, pending: SimpleNamespace) -> str:
    ranks = asyncio.run(prefix.choose_replicas(REPLICAS, pending))
    return ranks[0][0].replica_id.unique_id


def test_requests_chosen_at_once_spread_and_count_until_routed() -> None:
    prefix = router("nexa-model-burst")
    chosen = [first_choice(prefix, request(n)) for n in range(6)]
    assert sorted(chosen) == ["a"] * 3 + ["b"] * 3
    affinity = affinity_of("nexa-model-burst")
    ids = {replica.replica_id.unique_id: replica.replica_id for replica in REPLICAS}
    prefix.on_request_routed(request(0), ids[chosen[0]], None)
    assert affinity.busy(chosen[0]) == 3 and affinity.load[chosen[0]] == 1  # on its way no more: running there


def test_a_request_chosen_again_holds_one_place_and_a_stale_choice_none(monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = router("nexa-model-stale")
    affinity = affinity_of("nexa-model-stale")
    first_choice(prefix, request(1))
    first_choice(prefix, request(1))  # all were full: Serve asks again for the same request
    assert affinity.busy("a") + affinity.busy("b") == 1
    clock = SimpleNamespace(monotonic=lambda: 1e9)  # its client left as it was sent: never reported routed
    monkeypatch.setattr(routing, "time", clock)
    first_choice(prefix, request(2))
    assert affinity.busy("a") + affinity.busy("b") == 1  # only request 2's
