"""How a model's Serve deployment is placed and scaled: `--model-option` and the serve-wide settings
turned into Ray Serve's deployment options. Pure, so it is tested without a cluster."""

from __future__ import annotations

from typing import Any

from nexa.config import Settings
from nexa.engine.spec import WorkerSpec

# Seconds Serve waits before adding replicas for a queue: short, a queue of generations only grows.
UPSCALE_DELAY = 2.0
# Seconds of load Serve averages over: long enough to ride out gaps between requests.
LOOK_BACK = 10.0


def deployment_options(settings: Settings, spec: WorkerSpec) -> dict[str, Any]:
    """Serve's options for the deployment of `spec.alias` ('org/repo:QUANT').

    Each replica reserves what its worker uses (its threads as CPUs, unless num_cpus says otherwise)
    and takes as many requests as it has slots; more wait in Serve's queue for a free slot on any
    replica. `replicas=N` alone keeps exactly N; with min_replicas / max_replicas, autoscaling targets
    full slots. By default a model has one replica, which goes after the keep-alive (scale to zero) and
    comes back on the next request."""
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
    return {
        "ray_actor_options": actor,
        "max_ongoing_requests": spec.parallel,
        "autoscaling_config": {
            "min_replicas": floor,
            "initial_replicas": initial,
            "max_replicas": ceiling,
            "target_ongoing_requests": spec.parallel,
            "upscale_delay_s": UPSCALE_DELAY,
            "look_back_period_s": look_back,
            "downscale_delay_s": max(1.0, idle - look_back),
        },
        # A replica loads a model (and may pull it first) before it is healthy.
        "health_check_timeout_s": 60.0,
        "graceful_shutdown_timeout_s": 10.0,
    }
