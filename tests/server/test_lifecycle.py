"""Many models at once through a real `nexa serve`: concurrency, keep-alive, memory budget, crashes,
corrupt files, cancellation and metrics. Each server here has its own store and flags."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from nexa.config import Settings
from nexa.runtime import ModelManager, memory
from nexa.store import FileEntry, Manifest, ModelType, QuantEntry, Store
from tests.conftest import TINY, ServerProcess, import_tiny, metric, worker_pids
from tests.fixtures.tiny_models import make_chat_llm

SCRIPT = "Hello from a scripted model."
HI = [{"role": "user", "content": "hi"}]
TEXT, OTHER, LOOP, BROKEN = "test/qwen3-text", "test/llama-text", "test/loop", "test/broken"
# The loop model repeats its script until max_tokens: LONG tokens take it well over 10 s on one thread
# (measured: 2,000 take 0.5 s and the pace slows as the context fills), so a slot that is idle again
# within a few seconds was freed by cancellation, not by the generation ending.
LONG = 30_000


@pytest.fixture(scope="module")
def lifecycle_store(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Store:
    store = Store(tmp_path_factory.mktemp("lifecycle"))
    for name in (TEXT, OTHER):
        import_tiny(store, tiny_dir, name, *TINY[name])
    files = tmp_path_factory.mktemp("lifecycle-files")
    make_chat_llm(str(files / "loop.gguf"), script=["Tick", " tock"], loop=True, n_ctx=65536)
    import_tiny(store, files, LOOP, ["loop.gguf"], None)
    # A file cut in half after it was pulled: the import would refuse it, so the manifest is written by hand.
    whole = (tiny_dir / "qwen3-script-text.gguf").read_bytes()
    broken = files / "broken.gguf"
    broken.write_bytes(whole[: len(whole) // 2])
    entry = FileEntry(name=broken.name, size=len(whole), sha256="0" * 64, path=str(broken))
    store.save(Manifest(name=BROKEN, model_type=ModelType.llm, quants={"F32": QuantEntry(files=[entry])}, source="test"))
    return store


@pytest.fixture(scope="module")
def server(lifecycle_store: Store, runtime_args: list[str]) -> Iterator[ServerProcess]:
    datadir = str(lifecycle_store.root) + "/"  # a spelling of its own, for worker_pids()
    process = ServerProcess(
        lifecycle_store.root, "--parallel", "4", "--model-option", f"{LOOP}:ctx=32768,parallel=1", *runtime_args,
        env={"NEXA_DATADIR": datadir},
    )
    yield process
    assert process.stop() in (0, -signal.SIGTERM)
    assert worker_pids(datadir) == []  # SIGTERM left no worker behind


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        yield client


def chat(http: httpx.Client, model: str, **fields) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": model, "messages": HI, **fields})


def running(http: httpx.Client) -> dict[str, dict]:
    return {m["id"]: m for m in http.get("/v1/ps").json()["data"]}


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def model_id(http: httpx.Client, name: str) -> str:
    return http.get(f"/v1/models/{name}").json()["id"]


def test_two_models_are_served_at_once_each_in_its_own_worker(http, server):
    assert chat(http, TEXT).json()["choices"][0]["message"]["content"] == SCRIPT
    assert chat(http, OTHER).json()["choices"][0]["message"]["content"] == "Bonjour tout le monde"
    loaded = running(http)
    text, other = loaded[model_id(http, TEXT)], loaded[model_id(http, OTHER)]
    assert text["pid"] != other["pid"] and text["memory"] > 0 and text["type"] == "llm"
    assert (text["parallel"], text["slots_busy"], text["in_flight"]) == (4, 0, 0)
    listed = http.get("/v1/ps").json()  # as its engine reported allocating: in RAM, no GPU here
    assert text["memory_estimate"] > memory.PROCESS_BASELINE and text["device_memory"] == {}
    assert listed["memory_estimate"] >= text["memory_estimate"] + other["memory_estimate"]
    assert listed["device_memory_budget"] == listed["device_memory"] == {}
    shown = subprocess.run([sys.executable, "-m", "nexa", "ps", "--host", server.base_url],
                           capture_output=True, text=True, timeout=30, env={**os.environ, "COLUMNS": "200"})
    assert shown.returncode == 0 and text["id"] in shown.stdout and str(text["pid"]) in shown.stdout


def test_64_concurrent_streams_over_4_slots_all_complete(server):
    async def stream(client: httpx.AsyncClient) -> str:
        body = {"model": TEXT, "messages": HI, "stream": True}
        text = ""
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    for choice in json.loads(line[6:])["choices"]:
                        text += choice["delta"].get("content") or ""
        return text

    async def run() -> list[str]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as client:
            return await asyncio.gather(*(stream(client) for _ in range(64)))

    assert asyncio.run(run()) == [SCRIPT] * 64


def test_keep_alive_in_a_request_unloads_the_model_when_idle(http):
    assert chat(http, OTHER, keep_alive=0.5).status_code == 200
    wait_for(lambda: model_id(http, OTHER) not in running(http))
    assert metric(http, "nexa_model_unloads_total", model=model_id(http, OTHER), reason="idle") >= 1


def test_unload_and_load_routes(http):
    assert http.post("/v1/load", json={"model": OTHER, "keep_alive": -1}).json()["keep_alive"] == -1
    assert model_id(http, OTHER) in running(http)
    assert http.post("/v1/unload", json={"model": OTHER}).json()["status"] == "unloaded"
    assert http.post("/v1/unload", json={"model": OTHER}).json()["status"] == "not_loaded"
    assert model_id(http, OTHER) not in running(http)


@pytest.mark.parity
def test_client_disconnect_cancels_the_generation_and_frees_the_slot(http):
    loop_id = model_id(http, LOOP)
    body = {"model": LOOP, "messages": HI, "stream": True, "max_tokens": LONG}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = response.iter_lines()  # held: dropping a half-read iterator would close the connection early
        next(line for line in lines if '"content":"T' in line)
        assert running(http)[loop_id]["slots_busy"] == 1
    # Leaving the block closed the connection mid-stream.
    wait_for(lambda: (m := running(http)[loop_id])["slots_busy"] == 0 and m["in_flight"] == 0, timeout=5)
    # One slot only: this answer could not start before the cancelled one ended.
    reply = chat(http, LOOP, max_tokens=4)
    assert reply.json()["choices"][0]["message"]["content"] == "Tick tockTick tock"


@pytest.mark.parity
def test_killed_worker_fails_only_its_requests_and_restarts_on_the_next(http):
    loop_id = model_id(http, LOOP)
    assert chat(http, LOOP, max_tokens=2).status_code == 200
    pid = running(http)[loop_id]["pid"]
    body = {"model": LOOP, "messages": HI, "stream": True, "max_tokens": LONG}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = response.iter_lines()
        next(line for line in lines if '"content":"T' in line)
        os.kill(pid, signal.SIGKILL)
        last = [line for line in lines if line][-1]
    assert json.loads(last.removeprefix("data: "))["error"]["code"] == "worker_crashed"
    assert chat(http, TEXT).json()["choices"][0]["message"]["content"] == SCRIPT
    assert chat(http, LOOP, max_tokens=2).json()["choices"][0]["message"]["content"] == "Tick tock"
    assert running(http)[loop_id]["pid"] != pid
    assert metric(http, "nexa_worker_crashes_total", model=loop_id) == 1
    assert metric(http, "nexa_worker_restarts_total", model=loop_id) == 1


@pytest.mark.parity
def test_corrupt_gguf_is_a_503_naming_the_model_while_others_keep_answering(http):
    reply = chat(http, BROKEN)
    assert reply.status_code == 503
    error = reply.json()["error"]
    assert error["code"] == "model_load_failed" and model_id(http, BROKEN) in error["message"]
    assert "failed to load:" in error["message"] and "model is corrupted or incomplete" in error["message"]
    assert reply.headers["retry-after"]
    assert chat(http, TEXT).json()["choices"][0]["message"]["content"] == SCRIPT


@pytest.mark.parity
def test_metrics_move_as_requests_are_served(http):
    text_id, route = model_id(http, TEXT), "/v1/chat/completions"
    requests = metric(http, "nexa_requests_total", route=route, model=text_id, status="200")
    generated = metric(http, "nexa_generated_tokens_total", model=text_id)
    first_tokens = metric(http, "nexa_time_to_first_token_seconds_count", route=route, model=text_id)
    with http.stream("POST", route, json={"model": TEXT, "messages": HI, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert '"usage"' not in "".join(lines)  # asked upstream for the metrics, not passed to a client that did not ask
    # The client has the last event a moment before the server's middleware records the request.
    wait_for(lambda: metric(http, "nexa_requests_total", route=route, model=text_id, status="200") == requests + 1)
    assert metric(http, "nexa_generated_tokens_total", model=text_id) == generated + 6  # five pieces + end
    assert metric(http, "nexa_time_to_first_token_seconds_count", route=route, model=text_id) == first_tokens + 1
    assert metric(http, "nexa_models_loaded") == len(running(http))
    # The same prompt again: the engine takes all of it but its last token from the prompt cache.
    prompt, cached = (metric(http, name, model=text_id) for name in ("nexa_prompt_tokens_total",
                                                                      "nexa_prompt_cached_tokens_total"))
    usage = chat(http, TEXT).json()["usage"]
    wait_for(lambda: metric(http, "nexa_prompt_tokens_total", model=text_id) == prompt + usage["prompt_tokens"])
    reused = metric(http, "nexa_prompt_cached_tokens_total", model=text_id) - cached
    assert reused == usage["prompt_tokens_details"]["cached_tokens"] and 0 < reused < usage["prompt_tokens"]


def test_small_budget_evicts_the_least_recently_used_model_and_preload_loads_at_start(lifecycle_store):
    settings = Settings(datadir=lifecycle_store.root, ctx=1024, parallel=2)
    manager = ModelManager(lifecycle_store, settings)
    estimates = []
    for name in (TEXT, OTHER):
        manifest, quant = manager.resolve(name)
        estimates.append(memory.estimate(manager.planner.spec(manifest, quant), manifest.quants[quant].size, {}).ram)
    budget = max(estimates) + min(estimates) // 2  # room for one of the two, never both
    server = ServerProcess(lifecycle_store.root, "--memory-budget", str(budget), "--preload", TEXT,
                           env={"NEXA_DATADIR": str(lifecycle_store.root) + "//"})
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            text_id, other_id = model_id(http, TEXT), model_id(http, OTHER)
            assert set(running(http)) == {text_id}  # preloaded before any request
            assert chat(http, OTHER).status_code == 200
            assert set(running(http)) == {other_id}
            assert metric(http, "nexa_model_unloads_total", model=text_id, reason="evicted") == 1
    finally:
        server.stop()


@pytest.mark.parity
def test_sigterm_cuts_a_running_stream_with_an_error_event_and_leaves_no_worker(lifecycle_store, runtime_args):
    datadir = str(lifecycle_store.root) + "///"
    server = ServerProcess(lifecycle_store.root, "--model-option", f"{LOOP}:ctx=32768,parallel=1",
                           *runtime_args, env={"NEXA_DATADIR": datadir})
    body = {"model": LOOP, "messages": HI, "stream": True, "max_tokens": LONG}
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            next(line for line in lines if '"content":"T' in line)
            server.process.send_signal(signal.SIGTERM)
            refused = [httpx.get(server.base_url + path, timeout=10) for path in ("/health", "/api/tags")]
            last = [line for line in lines if line][-1]  # the grace (8 s) is shorter than the generation
    assert json.loads(last.removeprefix("data: "))["error"]["code"] == "server_shutting_down"
    # During the drain a new connection is answered (not refused): 503, Retry-After, in its dialect's shape.
    assert [r.status_code for r in refused] == [503, 503] and all(r.headers["retry-after"] for r in refused)
    assert refused[0].json()["error"]["code"] == "server_shutting_down"
    assert "shutting down" in refused[1].json()["error"]  # Ollama's error is a string
    assert server.stop() in (0, -signal.SIGTERM)
    assert worker_pids(datadir) == []

