"""The Serve ingress: the same FastAPI app as `nexa serve`, built inside a Serve replica, with a manager
whose "workers" are Serve applications (one per model) reached through Ray handles."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import Depends
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from ray import serve

from nexa.cluster.affinity import affinity_of
from nexa.cluster.deployment import ServeDeployment, replicas_of
from nexa.cluster.transport import ReplicaTransport
from nexa.config import Settings
from nexa.runtime import ModelManager
from nexa.runtime.memory import Footprint
from nexa.server.app import create_app
from nexa.server.serving import keep_freed_memory
from nexa.server.session import note_session_hint
from nexa.store import Store


class ReplicaCollector(Collector):
    """/metrics' replica labels: the requests each replica answered, the replicas each model has, and how
    its router chose them (decisions by reason, prefix hits, load and cached prefixes per replica)."""

    def __init__(self, manager: ModelManager, transport: ReplicaTransport):
        self._manager = manager
        self._transport = transport

    def collect(self) -> Iterator[Metric]:
        models = {model.worker.app: model.id for model in self._manager.loaded()}
        answered = CounterMetricFamily(
            "nexa_replica_requests", "Worker requests answered, by model and by the replica and node that answered.",
            labels=["model", "replica", "node"],
        )
        for (app, replica, node), count in self._transport.answered.items():
            answered.add_metric([models.get(app, app), replica, node], count)
        yield answered
        running = GaugeMetricFamily("nexa_replicas", "Replicas of each model, by state.", labels=["model", "state"])
        for app, model_id in models.items():
            states: dict[str, int] = {}
            for replica in replicas_of(app):
                states[replica["state"]] = states.get(replica["state"], 0) + 1
            for state, count in states.items():
                running.add_metric([model_id, state], count)
        yield running
        yield from _routing_metrics(models)


def _routing_metrics(models: dict[str, str]) -> Iterator[Metric]:
    decisions = CounterMetricFamily(
        "nexa_route_decisions", "Requests routed to a replica, by model and reason (session, prefix, load, fallback).",
        labels=["model", "reason"],
    )
    hits = CounterMetricFamily(
        "nexa_replica_prefix_hits", "Requests sent to a replica that held the start of their prompt.", labels=["model", "replica"]
    )
    load = GaugeMetricFamily("nexa_replica_load", "Requests in flight on each replica.", labels=["model", "replica"])
    cached = GaugeMetricFamily(
        "nexa_replica_cached_prefixes", "Prompt blocks the router believes each replica holds.", labels=["model", "replica"]
    )
    for app, model_id in models.items():
        affinity = affinity_of(app)
        if affinity is None:
            continue
        for reason, count in affinity.counts().items():
            decisions.add_metric([model_id, reason], count)
        for replica, view in affinity.views().items():
            hits.add_metric([model_id, replica], view.prefix_hits)
            load.add_metric([model_id, replica], view.load)
            cached.add_metric([model_id, replica], view.cached_prefixes)
    yield from (decisions, hits, load, cached)


@serve.ingress()
class NexaIngress:
    """Serve runs this on some node; its HTTP proxy hands it every request on nexa's port."""

    def __init__(self, settings: Settings):
        logging.basicConfig(level=settings.log_level.upper(), format="%(name)s: %(message)s")
        self._transport = ReplicaTransport()
        # Ray decides where models run and for how long: the router keeps no memory budget of its own and
        # never unloads on keep-alive (Serve scales an idle model's replicas to zero after it instead).
        routing = settings.model_copy(update={"keepalive": -1.0, "max_loaded_models": 0})
        self._manager = ModelManager(
            Store(settings.datadir), routing,
            worker_factory=lambda spec: ServeDeployment(spec, settings, self._transport),  # type: ignore[arg-type,return-value]
            estimator=lambda spec, weights, gpus: Footprint(), gpus=lambda runtime: (),
        )

    def __serve_build_asgi_app__(self):  # noqa: ANN204 - Serve's hook, called once after __init__
        keep_freed_memory()  # uploads pass through this actor too
        # Only the replica choice reads a request's session hint: noted here, not on one machine.
        app = create_app(self._manager, worker_transport=self._transport, dependencies=[Depends(note_session_hint)])
        app.state.metrics.registry.register(ReplicaCollector(self._manager, self._transport))
        return app
