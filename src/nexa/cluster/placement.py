"""How a model's Serve deployment is placed and scaled: `--model-option` and the serve-wide settings
turned into Ray Serve's deployment options. Pure, so it is tested without a cluster."""

from __future__ import annotations

from typing import Any

from nexa.cluster.affinity import BLOCK
from nexa.config import Settings
from nexa.engine.spec import WorkerSpec

# Seconds Serve waits before adding replicas for a queue: short, a queue of generations only grows.
UPSCALE_DELAY = 2.0
# Seconds of load Serve averages over: long enough to ride out gaps between requests.
LOOK_BACK = 10.0
ROUTER = "nexa.cluster.routing.PrefixRouter"
POLICY = "nexa.cluster.scaling.QueuePolicy"
# Connections llama-server serves beyond its slots (its HTTP threads: slots + 2 on a small machine); one
# more is closed unanswered (nexa.cluster.replica opens no more). A replica full with waiting requests
# refuses the next: Serve sends it on.
ENGINE_SPARE = 2
# Bytes of request JSON per token of prompt, roughly: how many prefix blocks a replica's caches hold.
JSON_PER_TOKEN = 4


def deployment_options(settings: Settings, spec: WorkerSpec) -> dict[str, Any]:
    """Serve's options for the deployment of `spec.alias` ('org/repo:QUANT').

    Each replica reserves what its worker uses (its threads as CPUs, unless num_cpus says otherwise)
    and takes as many requests as it has slots, plus the few that the router lets wait there for the
    prompt it caches (nexa.cluster.affinity); more wait in Serve's queue for room on any replica.
    `replicas=N` alone keeps exactly N; with min_replicas / max_replicas, replicas are added while requests
    wait with no free slot for them and go when the rest fit on fewer (nexa.cluster.scaling). By default a
    model has one replica, which goes after the keep-alive (scale to zero) and comes back on the next request."""
    name, _, quant = spec.alias.rpartition(":")
    options = settings.options_for(name, quant)
    keep_alive = settings.keepalive
    if options.replicas is not None and options.min_replicas is None and options.max_replicas is None:
        floor = ceiling = initial = options.replicas  # replicas=N alone: exactly N, always
    else:
        floor = options.min_replicas if options.min_replicas is not None else (0 if keep_alive >= 0 else 1)
        initial = options.replicas if options.replicas is not None else max(1, floor)
        ceiling = options.max_replicas or max(initial, floor, 1)
    if not floor <= initial <= ceiling or ceiling < 1:
        raise ValueError(
            f"model option for {name}: replicas={initial} must lie between min_replicas={floor} and "
            f"max_replicas={ceiling}, and max_replicas must be at least 1"
        )
    # Idle time before scaling down is the look-back window (load averaged over it) plus the delay.
    idle = keep_alive if keep_alive >= 0 else 600.0
    look_back = max(1.0, min(LOOK_BACK, idle / 2))
    actor: dict[str, Any] = {"num_cpus": spec.threads if options.num_cpus is None else options.num_cpus}
    if options.num_gpus:
        actor["num_gpus"] = options.num_gpus
    if options.resources:
        actor["resources"] = dict(options.resources)
    router = {"request_router_class": ROUTER, "request_router_kwargs": {
        "load_threshold": settings.route_load_threshold, "capacity": prefix_capacity(spec), "slots": spec.parallel,
    }}
    return {
        "ray_actor_options": actor,
        # Its slots, and as many waiting for them as the router lets a conversation wait for its replica, up to
        # what the engine's HTTP server holds at once; more wait in Serve's queue.
        "max_ongoing_requests": spec.parallel + min(settings.route_load_threshold, ENGINE_SPARE),
        "autoscaling_config": {
            "min_replicas": floor,
            "initial_replicas": initial,
            "max_replicas": ceiling,
            "policy": {"policy_function": POLICY, "policy_kwargs": {"slots": spec.parallel}},
            "target_ongoing_requests": spec.parallel,  # read only by Serve's own gauges and sanity checks now
            "upscale_delay_s": UPSCALE_DELAY,
            "look_back_period_s": look_back,
            "downscale_delay_s": max(1.0, idle - look_back),
        },
        # router=serve keeps Serve's own choice (for comparison: bench/cluster.py).
        **({"request_router_config": router} if options.router != "serve" else {}),
        # A replica loads a model (and may pull it first) before it is healthy.
        "health_check_timeout_s": 60.0,
        "graceful_shutdown_timeout_s": 10.0,
    }


def prefix_capacity(spec: WorkerSpec) -> int:
    """Prefix blocks the router remembers per replica: its slots' KV cache and as much again for the prompts
    the engine keeps beside it. Beyond that the replica has evicted them too, so the router forgets them."""
    return max(64, 2 * spec.ctx * spec.parallel * JSON_PER_TOKEN // BLOCK)
