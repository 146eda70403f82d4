"""A model's Serve application, driven by the ModelManager exactly as it drives a local worker: `start`
deploys it (or joins the one already running), `close` deletes it. Ray places its replicas, scales them
with the load (to zero after the keep-alive) and restarts them; requests reach them through the
ReplicaTransport at `base_url`."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from typing import Any

import httpx

from nexa.cluster.affinity import affinity_of
from nexa.cluster.placement import deployment_options
from nexa.cluster.replica import ModelReplica
from nexa.cluster.transport import PROBE, ReplicaTransport, base_url
from nexa.config import Settings
from nexa.engine.spec import WorkerSpec
from nexa.errors import ModelLoadFailed
from nexa.runtime.worker import busy_slots

log = logging.getLogger("nexa.cluster")

APP_PREFIX = "nexa-model-"
# Seconds after a model's latest request during which /v1/ps asks its replica for busy slots.
PROBE_WINDOW = 10.0
_ACTIVE = {"RUNNING", "DEPLOYING", "UPSCALING", "DOWNSCALING"}


def app_name(alias: str) -> str:
    """A Serve application name for 'org/repo:QUANT': readable, and unique even where two names clean alike."""
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", alias).strip("-").lower()[:80]
    return f"{APP_PREFIX}{clean}-{hashlib.sha256(alias.encode()).hexdigest()[:8]}"


class ServeDeployment:
    def __init__(self, spec: WorkerSpec, settings: Settings, transport: ReplicaTransport):
        self.spec = spec.model_copy(update={"slot_save_path": None})  # replicas' slots are not saved on unload
        self.app = app_name(spec.alias)
        self.base_url = ""
        self._settings = settings
        self._transport = transport
        self._closed = asyncio.Event()

    # What the manager and /v1/ps read of a local worker; a deployment has no one process.
    headers: dict[str, str] = {}
    pid = None
    returncode = None

    @property
    def alive(self) -> bool:
        return not self._closed.is_set()

    @property
    def slots(self) -> int:
        """Requests its replicas run at once, as many as its router last saw serving: what waits beyond them
        counts against --max-waiting, as one machine's engine queue does. Never fewer than one replica's (a
        model scaled to zero has Serve starting one); one replica's under Serve's own router (router=serve),
        which tells nexa nothing."""
        affinity = affinity_of(self.app)
        replicas = affinity.replicas if affinity is not None else 1
        return self.spec.parallel * max(1, replicas)

    async def busy_slots(self, client: httpx.AsyncClient) -> int | None:
        """Busy slots of whichever replica answers (all of them when it has one). Asked only while the model is
        in use: Serve counts the question as load, so asking an idle model would keep it from scaling to zero
        (or start a replica); None then."""
        if not self.base_url or time.monotonic() - self._transport.last_request.get(self.app, -PROBE_WINDOW) > PROBE_WINDOW:
            return None
        return await busy_slots(client, self.base_url, {PROBE: "1"})

    async def start(self, timeout: float) -> None:
        """Deploy, and wait until its first replica has the model loaded (pulled first where its node lacks it)."""
        try:
            options = deployment_options(self._settings, self.spec)
        except ValueError as exc:
            raise ModelLoadFailed(str(exc)) from None
        try:
            await asyncio.wait_for(asyncio.to_thread(self._deploy, options), timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise ModelLoadFailed(
                f"no replica was ready within {timeout:.0f} s (is there a node with the resources it asks for: "
                f"{options['ray_actor_options']}?); raise --load-timeout or check `ray status`"
            ) from None
        except RuntimeError as exc:  # serve.run's DEPLOY_FAILED: the replica's own error is in its text
            await self.close()
            raise ModelLoadFailed(_first_line(exc)) from None
        self.base_url = base_url(self.app)
        log.info("%s is served by Serve application %s (%s)", self.spec.alias, self.app, options["ray_actor_options"])

    def _deploy(self, options: dict[str, Any]) -> None:
        from ray import serve

        running = serve.status().applications.get(self.app)
        if running is not None and running.status in _ACTIVE:
            log.info("joining the running Serve application %s", self.app)
            serve.get_app_handle(self.app)  # waits until it is ready
            return
        replica = serve.deployment(ModelReplica, name="model").options(**options)
        # The replica gives its worker a key of its own; none travels through the cluster.
        spec = self.spec.model_copy(update={"api_key": "-"}).model_dump()
        serve.run(replica.bind(spec, str(self._settings.datadir), self._settings.load_timeout),
                  name=self.app, route_prefix=None)

    def footprint(self) -> None:
        """Ray places and sizes replicas; the router keeps no budget of its own for them."""
        return None

    async def wait(self) -> int:
        await self._closed.wait()
        return 0

    async def close(self, grace: float = 5.0) -> None:
        """Delete the application: Serve stops its replicas (each stops its worker). Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._transport.forget(self.app)
        from ray import serve

        try:
            await asyncio.to_thread(serve.delete, self.app)
        except Exception as exc:  # noqa: BLE001 - the cluster may be gone already at shutdown
            log.warning("could not delete Serve application %s: %s", self.app, exc)

    async def replicas(self) -> list[dict[str, Any]]:
        """Its replicas now: state, node and pid, from Ray's state API; load and cached prefixes from its router."""
        found = await asyncio.to_thread(replicas_of, self.app)
        affinity = affinity_of(self.app)
        views = affinity.views() if affinity is not None else {}
        for replica in found:
            view = views.get(replica["replica"])
            replica.update(load=view.load if view else 0, cached_prefixes=view.cached_prefixes if view else 0)
        return found


def replicas_of(app: str) -> list[dict[str, Any]]:
    from ray.util.state import list_actors

    prefix = f"SERVE_REPLICA::{app}#"
    actors = list_actors(filters=[("ray_namespace", "=", "serve")], detail=True, raise_on_missing_output=False)
    return [
        {"replica": actor.name.rsplit("#", 1)[-1], "state": actor.state, "node": actor.node_id, "pid": actor.pid}
        for actor in actors if (actor.name or "").startswith(prefix) and actor.state != "DEAD"
    ]


def _first_line(exc: BaseException) -> str:
    """The telling line of a failed deployment's long message: the replica's own exception, else the first."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if "ModelLoadFailed" in line or "Error:" in line:
            return line
    return lines[0] if lines else "the deployment failed"
