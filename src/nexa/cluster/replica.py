"""One replica of a model's Serve deployment: the same worker process a single machine runs, found in
this node's own store (or pulled into it on first start), and a relay to it that Ray streams back."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexa.cluster.affinity import RouteKey
from nexa.cluster.scaling import replica_stats
from nexa.engine.spec import WorkerSpec
from nexa.runtime.worker import Worker
from nexa.server.worker_client import worker_client
from nexa.store import Manifest, ModelRef, Store

if TYPE_CHECKING:  # huggingface_hub is slow to import: only a replica that pulls needs it
    from nexa.hub.resolve import RepoFiles

log = logging.getLogger("nexa.replica")


class _PullLog:
    """A replica's pull reports to the replica's log (Ray gathers it from every node)."""

    def __init__(self, name: str):
        self._name = name

    def status(self, text: str) -> None:
        log.info("%s: %s", self._name, text)

    def listed(self, files: RepoFiles) -> None:
        log.info("%s: found in %s at %s", self._name, files.repo, files.revision[:12])

    def waiting(self, repo: str) -> None:
        log.info("%s: another replica on this node is pulling it; waiting", repo)

    def file(self, name: str, size: int) -> Callable[[int], None]:
        log.info("%s: downloading %s (%d bytes)", self._name, name, size)
        return lambda done: None


def locate(spec: WorkerSpec, datadir: Path) -> WorkerSpec:
    """`spec` with this node's paths: the model from the node's store, pulled there first when it is
    missing (resumable and verified; the store's per-model lock makes a second replica on this node wait
    for the first one's download rather than fetch it again). A shared filesystem is simply found."""
    from nexa.hub.auto import pull_named  # on use: huggingface_hub is slow to import

    store = Store(datadir)
    ref = ModelRef.parse(spec.alias)
    if pull_named(store, ref, _PullLog(spec.alias)):
        log.info("%s: pulled into %s on this node", spec.alias, datadir)
    manifest, quant = store.resolve(ref)
    return spec.model_copy(update=_paths(store, manifest, quant))


def _paths(store: Store, manifest: Manifest, quant: str) -> dict[str, str | None]:
    folder = store.model_dir(manifest.name)
    return {
        "model_path": str(manifest.quants[quant].files[0].location(folder)),
        "mmproj_path": str(manifest.mmproj.location(folder)) if manifest.mmproj else None,
    }


def _here() -> dict[str, Any]:
    """Who this replica is, for the router's /v1/ps and its metrics' replica labels."""
    import ray
    from ray import serve

    context = ray.get_runtime_context()
    return {
        "replica": serve.get_replica_context().replica_id.unique_id,
        "node": context.get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "pid": os.getpid(),
    }


def with_own_key(spec: WorkerSpec) -> WorkerSpec:
    """`spec` with a random key of this replica's worker's own, as on one machine: none travels through the
    cluster, and no local user of any node can call the engine without it."""
    return spec.model_copy(update={"api_key": Worker.new_api_key()})


class ModelReplica:
    """The deployment's class. Serve constructs it on the node Ray chose, calls `relay` per request
    (streamed back to the router), `check_health` and `record_autoscaling_stats` now and then, and `__del__`
    when it scales down."""

    async def __init__(self, spec: dict[str, Any], datadir: str, load_timeout: float):
        located = await asyncio.to_thread(locate, WorkerSpec.model_validate(spec), Path(datadir))
        self._worker = Worker(with_own_key(located))
        await self._worker.start(load_timeout)
        # The router's own client to loopback workers (about 15 us of CPU per streamed token, not httpx's
        # default 110). The engine's HTTP server has a thread per open connection, idle ones included, and
        # closes any connection beyond them unanswered; Serve lets a replica answer at most its slots and
        # ENGINE_SPARE more at once (placement's max_ongoing_requests), and the pool keeps no more idle
        # connections than were ever open at once, far below the engine's threads (its slots and 16).
        self._client = worker_client()
        self._identity = _here()
        self._in_flight = 0  # requests relayed to the engine and not yet answered in full (the router's looks aside)
        log.info("replica %s serves %s on node %s", self._identity["replica"], located.alias, self._identity["node_ip"])

    async def relay(
        self, method: str, path: str, body: bytes | None, route: RouteKey | None = None,
        content_type: str = "application/json",
    ) -> AsyncIterator[dict[str, Any] | bytes]:
        """One request to the worker (a JSON body, or a multipart form: a transcript's audio): first its status,
        content type and this replica's identity, then the answer's bytes as they come. `route` is for the
        router that chose this replica (nexa.cluster.routing). Ray cancels this generator when the router's
        client leaves; leaving the stream closes the engine's connection, which stops the generation and frees
        the slot."""
        headers = {**self._worker.headers, "Content-Type": content_type}
        counted = int(route is None or not route.probe)
        self._in_flight += counted
        try:
            async with self._client.stream(method, self._worker.base_url + path, content=body, headers=headers) as answer:
                yield {"status": answer.status_code, "content_type": answer.headers.get("content-type", ""),
                       **self._identity}
                async for chunk in answer.aiter_raw():
                    yield chunk
        finally:
            self._in_flight -= counted

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's hook for custom autoscaling metrics: the engine's running and waiting requests, which
        nexa.cluster.scaling's policy scales on."""
        return replica_stats(self._in_flight, self._worker.spec.parallel)

    def identity(self) -> dict[str, Any]:
        return self._identity

    def check_health(self) -> None:
        """Serve replaces a replica whose worker died (a native crash): Ray restarts it where resources allow."""
        if not self._worker.alive:
            raise RuntimeError(f"the worker of {self._worker.spec.alias} exited with code {self._worker.returncode}")

    async def __del__(self) -> None:
        await self._client.aclose()
        await self._worker.close()
