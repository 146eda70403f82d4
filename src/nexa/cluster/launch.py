"""`nexa serve --ray [ADDRESS]`: connect to (or start) a Ray cluster, put nexa's ingress and HTTP port on
it, and on SIGTERM or Ctrl-C take every nexa application off it again."""

from __future__ import annotations

import logging
import os
import signal
import threading

from nexa.config import Settings
from nexa.errors import NexaError

log = logging.getLogger("nexa.cluster")

INGRESS_APP = "nexa"
LOCAL = "local"
# What a replica needs from the driver's environment to pull from Hugging Face on its own node.
HUB_VARIABLES = ("HF_ENDPOINT", "HF_TOKEN", "NEXA_HFTOKEN", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_XET")
# Requests the ingress relays at once. It only waits on I/O, and Serve's default (5) would cap the whole
# cluster at 5 requests in flight, every model together.
INGRESS_CONCURRENCY = 4096
INSTALL_HINT = "nexa serve --ray needs Ray Serve; install it with: pip install 'nexa[ray]' (from a clone: pip install -e '.[ray]')"


def require_ray() -> None:
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise NexaError(INSTALL_HINT) from None


def hub_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in HUB_VARIABLES if name in os.environ}


def run(settings: Settings, address: str) -> None:
    """Serve on the cluster at `address` ('local' starts one on this machine) until a signal."""
    require_ray()
    import ray
    from ray import serve

    from nexa.cluster.deployment import APP_PREFIX
    from nexa.cluster.ingress import NexaIngress

    own_cluster = address == LOCAL
    ray.init(address=None if own_cluster else address, namespace="nexa", logging_level=logging.WARNING,
             runtime_env={"env_vars": hub_environment()})
    host, port = settings.bind()
    try:
        serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
        # The ingress sits on the head node, beside Serve's controller and its HTTP proxy.
        head = {"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}}
        ingress = serve.deployment(NexaIngress, name="ingress", ray_actor_options=head,
                                   max_ongoing_requests=INGRESS_CONCURRENCY)
        serve.run(ingress.bind(settings), name=INGRESS_APP, route_prefix="/")
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        log.info("nexa is on a Ray cluster of %d node%s at %s", len(nodes), "s" * (len(nodes) != 1), address)
        _wait_for_signal()
    finally:
        log.info("taking nexa's applications off the cluster")
        _delete_apps(serve, APP_PREFIX)
        if own_cluster:
            serve.shutdown()
        ray.shutdown()


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def _delete_apps(serve, prefix: str) -> None:  # noqa: ANN001 - ray.serve, imported on use
    """The ingress first (no new requests), then every model application; each stops its workers."""
    try:
        serve.delete(INGRESS_APP)
        for name in serve.status().applications:
            if name.startswith(prefix):
                serve.delete(name)
    except Exception as exc:  # noqa: BLE001 - a cluster that is gone has nothing left to remove
        log.warning("could not remove every nexa application: %s", exc)
