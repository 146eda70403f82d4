"""A model unloaded by keep-alive, by request or by shutdown gets its prompt caches back when it loads again: its
engine saves each slot's KV cache to DATADIR/prompt-cache on the way out and restores it before serving, so the
next session's long prefix is read from disk instead of processed again. Real `nexa serve`, the real engine, the
OpenAI SDK, a tiny model trained for 131,072 tokens; every figure is the engine's cached-token count."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest

from nexa.store import ModelRef, Store
from nexa.store.importer import import_local
from tests.conftest import ServerProcess
from tests.server.test_prompt_cache import MODEL, prefix

KEEP_ALIVE_0 = {"keep_alive": 0}


@pytest.fixture
def store(tmp_path: Path, long_context_model: Path) -> Store:
    """A store of its own for each test: what one test's servers saved is no other's business."""
    store = Store(tmp_path)
    import_local(store, ModelRef.parse(MODEL), long_context_model, None)
    return store


def saved_files(store: Store) -> list[Path]:
    return list((store.root / "prompt-cache").glob("*/*.slot"))


def ask(server: ServerProcess, name: str, **extra) -> openai.types.CompletionUsage:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    messages = [{"role": "system", "content": prefix(name)}, {"role": "user", "content": "one"}]
    return client.chat.completions.create(model=MODEL, max_tokens=4, messages=messages, extra_body=extra).usage


def wait_unloaded(server: ServerProcess, store: Store, timeout: float = 30.0) -> None:
    """Until keep-alive took the model out of service and its engine, stopping, saved its slot."""
    deadline = time.monotonic() + timeout
    while httpx.get(server.base_url + "/v1/ps", timeout=10).json()["data"] or not saved_files(store):
        assert time.monotonic() < deadline, "the model did not unload, or saved nothing"
        time.sleep(0.1)


@pytest.mark.parity
def test_a_model_unloaded_by_keep_alive_gets_its_prefix_back(store: Store, runtime_args: list[str]):
    """On both runtimes: xllamacpp's engine and a llama-server binary save and restore slots alike."""
    server = ServerProcess(store.root, "--parallel", "1", *runtime_args, engine=())
    try:
        first = ask(server, "keep-alive", **KEEP_ALIVE_0)
        assert first.prompt_tokens_details.cached_tokens < 40
        wait_unloaded(server, store)
        assert len(saved_files(store)) == 1
        again = ask(server, "keep-alive")
        # read from the saved slot, not processed again: all but the last token(s) of the prompt
        assert again.prompt_tokens_details.cached_tokens > 0.9 * again.prompt_tokens
        assert saved_files(store) == []  # a restored file is the slot's now; the next unload writes it again
    finally:
        server.stop()
    assert "saved 1 prompt cache(s)" in server.output and "restored 1 prompt cache(s)" in server.output


def test_a_restarted_server_restores_what_its_shutdown_saved(store: Store):
    server = ServerProcess(store.root, "--parallel", "2", engine=())
    try:
        first = ask(server, "restart")
    finally:
        server.stop()
    # a server that restores the caches and stops before any request saves them again
    idle = ServerProcess(store.root, "--parallel", "2", "--preload", MODEL, engine=())
    idle.stop()
    assert "restored 1 prompt cache(s)" in idle.output and "saved 1 prompt cache(s)" in idle.output
    server = ServerProcess(store.root, "--parallel", "2", engine=())
    try:
        again = ask(server, "restart")
    finally:
        server.stop()
    assert first.prompt_tokens_details.cached_tokens < 40
    assert again.prompt_tokens_details.cached_tokens > 0.9 * again.prompt_tokens


def test_a_cache_saved_for_another_context_is_not_used(store: Store):
    """A cache is only valid for the same weights, context and KV cache type: its folder is keyed on them."""
    server = ServerProcess(store.root, "--parallel", "1", engine=())
    try:
        ask(server, "other-context")
        httpx.post(server.base_url + "/v1/unload", json={"model": MODEL}, timeout=60).raise_for_status()
    finally:
        server.stop()
    server = ServerProcess(store.root, "--parallel", "1", "--ctx", "8192", engine=())
    try:
        again = ask(server, "other-context")
    finally:
        server.stop()
    assert again.prompt_tokens_details.cached_tokens < 40


def test_a_broken_cache_file_is_deleted_and_the_model_serves(store: Store):
    server = ServerProcess(store.root, "--parallel", "1", engine=())
    try:
        ask(server, "broken", **KEEP_ALIVE_0)
        wait_unloaded(server, store)
        [saved] = saved_files(store)
        saved.write_bytes(b"not a slot" * 100)
        again = ask(server, "broken")
        assert again.prompt_tokens_details.cached_tokens < 40 and not saved.exists()
    finally:
        server.stop()
    assert "could not restore the prompt cache" in server.output


def test_with_saving_off_the_prefix_is_processed_again(store: Store):
    server = ServerProcess(store.root, "--parallel", "1", "--prompt-cache-disk", "0", engine=())
    try:
        ask(server, "off")
        unloaded = httpx.post(server.base_url + "/v1/unload", json={"model": MODEL}, timeout=60).json()
        assert unloaded["status"] == "unloaded"
        again = ask(server, "off")
    finally:
        server.stop()
    assert again.prompt_tokens_details.cached_tokens < 40 and saved_files(store) == []
