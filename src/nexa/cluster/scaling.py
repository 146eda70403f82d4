"""How many replicas a model wants, from its queue: Serve's autoscaling policy for nexa's deployments
(`AutoscalingConfig(policy=...)`, named by nexa.cluster.placement).

Each replica reports to Serve, through its `record_autoscaling_stats` hook (nexa.cluster.replica), the
requests its engine runs and those it holds beyond the engine's slots; Serve adds the requests no replica
has taken yet (queued at the ingress's handle) and averages them over the look-back window. A replica is
added when requests wait that no free slot anywhere could take (a request may wait on its replica for the
prompt it caches while another replica has room: that is the router's choice, not a shortage), enough to
give each a slot; replicas go when what runs and waits fits on fewer, down to none when nothing does.
Serve bounds the answer by min_replicas and max_replicas and applies its delays.

Serve pickles this module by value into its controller: it keeps no state and imports nothing of nexa's."""

from __future__ import annotations

import math
from typing import Any

RUNNING = "nexa_running"  # requests a replica's engine runs: at most its slots
WAITING = "nexa_waiting"  # requests a replica holds beyond its slots: they wait in its engine for one to free
UPSCALE_AT = 1.0  # requests waiting with no free slot for them, on average over the look-back window


def replica_stats(in_flight: int, slots: int) -> dict[str, float]:
    """What one replica reports: its running and waiting requests now."""
    running = min(in_flight, slots)
    return {RUNNING: float(running), WAITING: float(in_flight - running)}


def desired_replicas(current: int, demand: float, slots: int) -> int:
    """Replicas for `demand` requests running or waiting (averages), `slots` each, `current` now."""
    wanted = math.ceil(demand / slots)
    if demand - current * slots >= UPSCALE_AT:
        return wanted
    return min(current, wanted)


class QueuePolicy:
    """Serve's policy object: made once per deployment with its policy_kwargs, called on every control-loop
    tick with an AutoscalingContext."""

    def __init__(self, slots: int = 1):
        self.slots = max(1, slots)

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        if ctx.current_num_replicas == 0:  # none to report; Serve starts one for the first request itself
            return ctx.target_num_replicas, {}
        reported = ctx.aggregated_metrics or {}
        demand = (sum(reported.get(RUNNING, {}).values()) + sum(reported.get(WAITING, {}).values())
                  + (ctx.total_queued_requests or 0.0))
        # A replica reports every metrics interval; Serve's own count of the handle's requests covers one
        # that has not reported yet, so that no replica is taken away under a request it runs.
        demand = max(demand, ctx.total_num_requests or 0.0)
        return desired_replicas(ctx.current_num_replicas, demand, self.slots), {}
