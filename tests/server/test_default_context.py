"""A model's context at nexa's defaults: its trained length when that fits its memory budget, lowered when the
budget is small; its slots share one KV cache, so a single request may use all of it. Real `nexa serve`, real
engine, a tiny model trained for 131,072 tokens and the starter model (8,192)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from nexa.hub.starter import STARTER_NAME, fetch_starter
from nexa.store import ModelRef, Store
from nexa.store.importer import import_local
from tests.conftest import ServerProcess, cache_dir

LONG = "test/long-context"
TRAINED = 131072
MIB = 1024 * 1024
BUDGET = 96 * MIB + 2 * MIB + 48 * MIB  # the process, the weights and logits, and 48 MiB for the context


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, long_context_model: Path) -> Store:
    store = Store(tmp_path_factory.mktemp("context-store"))
    import_local(store, ModelRef.parse(LONG), long_context_model, None)
    fetch_starter(store, cache_dir() / "wheels")
    return store


@pytest.fixture(scope="module")
def default_server(store: Store) -> Iterator[ServerProcess]:
    server = ServerProcess(store.root, engine=())
    yield server
    server.stop()


def contexts(http: httpx.Client) -> dict[str, int]:
    return {card["id"].split(":")[0]: card["context_length"] for card in http.get("/v1/models").json()["data"]}


def long_prompt(tokens: int) -> str:
    """About `tokens` tokens for the tiny models' byte-level vocabulary (one token a character)."""
    return ("lorem ipsum dolor sit amet " * (tokens // 27 + 1))[:tokens]


def test_the_default_context_is_the_trained_length(default_server: ServerProcess):
    with httpx.Client(base_url=default_server.base_url, timeout=120) as http:
        assert contexts(http) == {LONG: TRAINED, STARTER_NAME: 8192}
        show = http.post("/api/show", json={"model": LONG}).json()
        assert f"num_ctx {TRAINED}" in show["parameters"].splitlines()
        # Longer than nexa's former default context (4,096): an agent's first request is answered.
        answer = http.post("/v1/chat/completions", json={
            "model": LONG, "max_tokens": 8, "messages": [{"role": "user", "content": long_prompt(6000)}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["prompt_tokens"] > 6000
        props = http.get("/props", params={"model": LONG}).json()
        assert props["default_generation_settings"]["n_ctx"] == TRAINED
        running = {m["id"].split(":")[0]: m for m in http.get("/v1/ps").json()["data"]}
        assert running[LONG]["ctx"] == TRAINED and running[LONG]["parallel"] == 4
        assert {m["name"].split(":")[0]: m["context_length"] for m in http.get("/api/ps").json()["models"]} \
            == {LONG: TRAINED}
    env = {**os.environ, "COLUMNS": "200"}
    ps = subprocess.run([sys.executable, "-m", "nexa", "ps", "--host", default_server.base_url],
                        capture_output=True, text=True, env=env, timeout=60)
    assert "CONTEXT" in ps.stdout and f"{TRAINED:,}" in ps.stdout, ps.stdout + ps.stderr


def test_nexa_show_says_the_context_a_model_gets(store: Store):
    env = {**os.environ, "NEXA_DATADIR": str(store.root), "COLUMNS": "200"}
    shown = subprocess.run([sys.executable, "-m", "nexa", "show", LONG], capture_output=True, text=True, env=env,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert f"{TRAINED:,} tokens, f16 KV cache" in shown.stdout
    env["NEXA_KV_CACHE_TYPE"] = "q8_0"
    env["NEXA_CTX"] = "16384"
    shown = subprocess.run([sys.executable, "-m", "nexa", "show", LONG], capture_output=True, text=True, env=env,
                           timeout=120)
    assert "16,384 tokens, q8_0 KV cache" in shown.stdout, shown.stdout + shown.stderr


def test_a_small_budget_lowers_the_context_and_a_longer_prompt_is_a_clear_400(store: Store):
    # The tiny model takes 1.5 KiB a token of context (512 bytes of KV cache, 1 KiB of attention mask): a budget
    # with 48 MiB to spare leaves room for about 32k tokens.
    budget = BUDGET
    server = ServerProcess(store.root, "--memory-budget", str(budget), engine=())
    try:
        with httpx.Client(base_url=server.base_url, timeout=120) as http:
            ctx = contexts(http)[LONG]
            assert 4096 <= ctx < TRAINED // 2 and ctx % 256 == 0
            # longer than an even share of the 4 slots: the one KV cache they share holds it
            fits = http.post("/v1/chat/completions", json={
                "model": LONG, "max_tokens": 4, "messages": [{"role": "user", "content": long_prompt(ctx // 4 + 1000)}]})
            assert fits.status_code == 200, fits.text
            running = http.get("/v1/ps").json()
            # what the engine reports it allocated (replacing the estimate) is within 5% of the budget fitted to
            assert running["data"][0]["ctx"] == ctx and running["memory_estimate"] <= budget * 1.05
            too_long = {"model": LONG, "max_tokens": 4,
                        "messages": [{"role": "user", "content": long_prompt(ctx + 1000)}]}
            refused = http.post("/v1/chat/completions", json=too_long)
            assert refused.status_code == 400
            message = refused.json()["error"]["message"]
            assert str(ctx) in message and "--ctx" in message and "kv-cache-type" in message
        claude = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0)
        with pytest.raises(anthropic.BadRequestError) as refused_anthropic:
            claude.messages.create(model=LONG, max_tokens=4, messages=too_long["messages"])
        assert refused_anthropic.value.body["type"] == "error" and str(ctx) in str(refused_anthropic.value.body)
    finally:
        server.stop()


def test_a_quantized_kv_cache_fits_more_context_in_the_same_budget(store: Store):
    budget = BUDGET
    server = ServerProcess(store.root, "--memory-budget", str(budget), "--kv-cache-type", "q8_0", engine=())
    try:
        with httpx.Client(base_url=server.base_url, timeout=120) as http:
            q8 = contexts(http)[LONG]
            answer = http.post("/v1/chat/completions", json={
                "model": LONG, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
            assert answer.status_code == 200, answer.text
            assert http.get("/v1/ps").json()["data"][0]["ctx"] == q8
    finally:
        server.stop()
    server = ServerProcess(store.root, "--memory-budget", str(budget), engine=())
    try:
        with httpx.Client(base_url=server.base_url, timeout=120) as http:
            f16 = contexts(http)[LONG]
    finally:
        server.stop()
    assert q8 > f16  # by 272 against 512 bytes a token of KV cache (the attention mask stays f16)
