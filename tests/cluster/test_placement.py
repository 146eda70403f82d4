"""How --model-option becomes a Serve deployment's placement and scaling, and `--ray` without Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nexa.cluster.placement import deployment_options
from nexa.config import ModelOptions, load_settings
from nexa.engine.spec import WorkerSpec
from nexa.store import ModelType


def spec(alias: str = "org/model:Q4_K_M", threads: int = 3, parallel: int = 4) -> WorkerSpec:
    return WorkerSpec(model_path="/m.gguf", model_type=ModelType.llm, alias=alias, ctx=1024, parallel=parallel,
                      threads=threads, api_key="k")


def options(*model_options: str, keepalive: float = 300.0) -> dict:
    return deployment_options(load_settings(model_options=list(model_options), keepalive=keepalive), spec())


def test_by_default_one_replica_reserves_its_threads_and_goes_after_the_keep_alive() -> None:
    chosen = options()
    assert chosen["ray_actor_options"] == {"num_cpus": 3}
    assert chosen["max_ongoing_requests"] == 4 + 2  # its slots, and 2 waiting for them; more in Serve's queue
    router = chosen["request_router_config"]
    assert router["request_router_class"] == "nexa.cluster.routing.PrefixRouter"
    assert router["request_router_kwargs"] == {"load_threshold": 2, "capacity": 2 * 1024 * 4 * 4 // 512, "slots": 4}
    assert "request_router_config" not in options("org/model:router=serve")
    scaling = chosen["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["initial_replicas"], scaling["max_replicas"]) == (0, 1, 1)
    assert scaling["policy"] == {"policy_function": "nexa.cluster.scaling.QueuePolicy", "policy_kwargs": {"slots": 4}}
    assert scaling["look_back_period_s"] + scaling["downscale_delay_s"] == 300.0


def test_a_negative_keep_alive_never_scales_to_zero() -> None:
    assert options(keepalive=-1)["autoscaling_config"]["min_replicas"] == 1


def test_replicas_alone_is_a_fixed_count_and_resources_place_them() -> None:
    chosen = options("org/model:replicas=2,num_cpus=0.5,num_gpus=1,resource.big_node=1")
    scaling = chosen["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["initial_replicas"], scaling["max_replicas"]) == (2, 2, 2)
    assert chosen["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 1.0, "resources": {"big_node": 1.0}}


def test_bounds_make_it_autoscale() -> None:
    scaling = options("org/model:min_replicas=1,max_replicas=4")["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["initial_replicas"], scaling["max_replicas"]) == (1, 1, 4)


def test_options_for_another_model_do_not_apply() -> None:
    assert options("org/other:replicas=3")["autoscaling_config"]["max_replicas"] == 1


def test_contradictory_bounds_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="replicas=5 must lie between min_replicas=0 and max_replicas=2"):
        options("org/model:replicas=5,max_replicas=2")


def test_an_unknown_option_key_lists_the_ray_ones() -> None:
    with pytest.raises(ValueError, match="replicas, min_replicas, max_replicas, num_cpus, num_gpus, resource.NAME"):
        ModelOptions.parse("org/model:replica=2")


def test_serve_ray_without_the_extra_says_how_to_install_it(tmp_path: Path) -> None:
    fake = tmp_path / "ray"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    result = subprocess.run(
        [sys.executable, "-m", "nexa", "serve", "--ray", "--data-dir", str(tmp_path / "data")],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    said = " ".join((result.stdout + result.stderr).split())  # rich wraps long lines
    assert "needs Ray Serve; install it with: pip install 'nexa[ray]'" in said
