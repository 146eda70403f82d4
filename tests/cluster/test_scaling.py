"""The autoscaling rule (nexa.cluster.scaling) without Ray: replicas follow requests that wait with no free
slot for them, and go when what runs fits on fewer. Serve itself bounds and delays the answer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nexa.cluster.scaling import RUNNING, WAITING, QueuePolicy, desired_replicas, replica_stats


def test_a_replica_reports_what_its_engine_runs_and_what_waits_for_a_slot() -> None:
    assert replica_stats(0, 4) == {RUNNING: 0.0, WAITING: 0.0}
    assert replica_stats(3, 4) == {RUNNING: 3.0, WAITING: 0.0}
    assert replica_stats(6, 4) == {RUNNING: 4.0, WAITING: 2.0}


def test_replicas_are_added_for_requests_that_wait_with_no_free_slot() -> None:
    assert desired_replicas(current=1, demand=4.0, slots=1) == 4  # 1 runs, 3 wait: a slot for each
    assert desired_replicas(current=2, demand=9.0, slots=4) == 3
    assert desired_replicas(current=2, demand=8.5, slots=4) == 2  # half a request waiting on average: not yet


def test_replicas_go_when_what_runs_fits_on_fewer_and_all_go_when_nothing_runs() -> None:
    assert desired_replicas(current=3, demand=4.0, slots=4) == 1
    assert desired_replicas(current=2, demand=5.0, slots=4) == 2
    assert desired_replicas(current=1, demand=0.0, slots=4) == 0  # Serve keeps min_replicas


def context(current: int, running: dict, waiting: dict, queued: float = 0.0, handle: float = 0.0) -> SimpleNamespace:
    """The fields of Serve's AutoscalingContext the policy reads."""
    return SimpleNamespace(current_num_replicas=current, target_num_replicas=current, total_queued_requests=queued,
                           total_num_requests=handle, aggregated_metrics={RUNNING: running, WAITING: waiting})


def test_the_policy_adds_the_replicas_waiting_and_the_handles_queue() -> None:
    policy = QueuePolicy(slots=1)
    assert policy(context(1, {"r1": 1.0}, {"r1": 2.0}, queued=1.0)) == (4, {})  # 1 runs, 2 wait there, 1 in Serve's queue
    assert policy(context(2, {"r1": 1.0, "r2": 0.0}, {"r1": 1.0, "r2": 0.0})) == (2, {})  # waits by choice: r2 is free
    assert policy(context(2, {"r1": 0.0}, {"r1": 0.0})) == (0, {})


def test_a_replica_that_has_not_reported_yet_keeps_its_requests_counted() -> None:
    """Replicas report every metrics interval; Serve's handle saw the requests the new one runs."""
    policy = QueuePolicy(slots=1)
    assert policy(context(2, {"r1": 1.0}, {"r1": 0.0}, handle=2.0)) == (2, {})


def test_at_zero_replicas_serve_starts_the_first_itself() -> None:
    assert QueuePolicy(slots=4)(SimpleNamespace(current_num_replicas=0, target_num_replicas=1)) == (1, {})


def test_serve_takes_the_policy_from_the_deployment_options() -> None:
    """The options nexa.cluster.placement gives Serve name the policy and its slots; Serve pickles it by value."""
    serve_config = pytest.importorskip("ray.serve.config", reason="needs pip install -e '.[ray]'")
    from tests.cluster.test_placement import options

    config = serve_config.AutoscalingConfig(**options("org/model:min_replicas=1,max_replicas=2")["autoscaling_config"])
    policy = config.policy.get_policy()(**config.policy.policy_kwargs)
    assert policy.slots == 4
    assert policy(context(1, {"r1": 4.0}, {"r1": 2.0})) == (2, {})


def test_a_deployment_counts_the_slots_of_the_replicas_its_router_sees(tmp_path) -> None:
    """What waits beyond them counts against --max-waiting; before its router has seen one, one replica's."""
    from nexa.cluster.affinity import shared_affinity
    from nexa.cluster.deployment import ServeDeployment
    from nexa.cluster.transport import ReplicaTransport
    from nexa.config import load_settings
    from tests.cluster.test_placement import spec

    deployment = ServeDeployment(spec(alias="org/slots:Q4_K_M", parallel=3), load_settings(), ReplicaTransport())
    assert deployment.slots == 3
    affinity = shared_affinity(deployment.app, load_threshold=2, capacity=64, slots=3)
    affinity.serving({"r1", "r2"})
    assert deployment.slots == 6
    affinity.serving(set())  # scaled to zero: Serve is starting one
    assert deployment.slots == 3
