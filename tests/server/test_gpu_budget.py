"""The GPU memory budget end to end, through `nexa serve` and real engines. This machine has no GPU, so the
one boundary faked is the runtime's word: a wrapper around the cached native llama-server answers
--list-devices with one CUDA GPU and reports the engine's KV cache and compute buffers as allocated on it.
Everything else (the report read from the log, the budget, eviction, /v1/ps, /api/ps, /metrics) is real."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nexa.runtime.memory import DEVICE_SHARE, MIB
from nexa.store import Store
from tests.conftest import ServerProcess, native_binary, native_datadir

CPU_MODEL, GPU_MODEL, OTHER_GPU_MODEL = "test/qwen3-random", "test/qwen3-text", "test/llama-text"
GPU_MIB = 1024
HI = [{"role": "user", "content": "hi"}]
BUDGET = 5 * MIB

WRAPPER = """#!/usr/bin/env bash
if [ "$1" = --list-devices ]; then
    printf 'Available devices:\\n  CUDA0: NVIDIA Fake GPU ({mib} MiB, {mib} MiB free)\\n'
    exit 0
fi
exec "{real}" "$@" 2> >(exec sed -u -e 's/ CPU KV buffer/ CUDA0 KV buffer/' -e 's/ CPU compute buffer/ CUDA0 compute buffer/' >&2)
"""


@pytest.fixture(scope="module")
def gpu_server(session_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    real = native_binary()
    if real is None:
        pytest.skip(f"no native runtime cached in {native_datadir()} (see tests/conftest.py)")
    wrapper = tmp_path_factory.mktemp("gpu") / "llama-server"
    wrapper.write_text(WRAPPER.format(mib=GPU_MIB, real=real))
    wrapper.chmod(0o755)
    # A budget of 5 MiB on the GPU: room for one tiny model's KV cache and compute buffers (4.3 MiB), not two.
    server = ServerProcess(session_store.root, "--runtime", str(wrapper), "--device-memory-budget", "5MiB",
                           "--model-option", f"{CPU_MODEL}:runtime=xllamacpp")
    yield server
    server.stop()


def chat(http: httpx.Client, model: str) -> None:
    response = http.post("/v1/chat/completions", json={"model": model, "messages": HI, "max_tokens": 2})
    assert response.status_code == 200, response.text


def loaded(http: httpx.Client) -> dict[str, dict]:
    return {m["id"].split(":")[0]: m for m in http.get("/v1/ps").json()["data"]}


def gauge(http: httpx.Client, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def test_a_gpu_model_counts_what_its_engine_put_on_the_gpu_and_makes_room_there_not_in_ram(gpu_server):
    with httpx.Client(base_url=gpu_server.base_url, timeout=60) as http:
        chat(http, CPU_MODEL)  # the least recently used from here on, but it holds nothing on the GPU
        chat(http, GPU_MODEL)
        running = loaded(http)
        on_gpu = running[GPU_MODEL]["device_memory"]["CUDA0"]
        assert 3 * MIB < on_gpu < BUDGET and running[CPU_MODEL]["device_memory"] == {}
        assert running[GPU_MODEL]["memory_estimate"] > 0  # its weights stayed in RAM: the engine said so
        listing = http.get("/v1/ps").json()
        assert listing["device_memory_budget"] == {"CUDA0": BUDGET} and listing["device_memory"] == {"CUDA0": on_gpu}
        vram = {m["name"].split(":")[0]: m["size_vram"] for m in http.get("/api/ps").json()["models"]}
        assert vram == {GPU_MODEL: on_gpu, CPU_MODEL: 0}
        assert gauge(http, "nexa_device_memory_bytes", device="CUDA0") == on_gpu
        assert gauge(http, "nexa_device_memory_budget_bytes", device="CUDA0") == BUDGET

        chat(http, OTHER_GPU_MODEL)  # the GPU is over its budget: the GPU model makes way, the CPU one stays
        assert set(loaded(http)) == {CPU_MODEL, OTHER_GPU_MODEL}
    assert f"GPU CUDA0: NVIDIA Fake GPU, {GPU_MIB * MIB / 1e9:.1f} GB" in gpu_server.output
    assert int(GPU_MIB * MIB * DEVICE_SHARE) != BUDGET  # the flag, not the default, set the budget
