"""Speculative decoding per model (--model-option NAME:draft=...): lossless, so a greedy reply is the same as
without it, with an n-gram draft or a draft model from the store, on both runtimes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from nexa.hub.starter import STARTER_NAME
from nexa.store import Store
from tests.conftest import ServerProcess

TEXT = "test/qwen3-text"
HI = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def drafting(session_store: Store, runtime_args: list[str]) -> Iterator[ServerProcess]:
    """The scripted model drafts with n-grams; the starter model drafts with itself (a draft model must share
    the target's vocabulary; llama.cpp b11434 aborts on the tiny generated vocabularies as draft models)."""
    process = ServerProcess(session_store.root, "--model-option", f"{TEXT}:draft=ngram-mod",
                            "--model-option", f"{STARTER_NAME}:draft={STARTER_NAME}", *runtime_args)
    yield process
    process.stop()


def reply(base_url: str, model: str) -> str:
    body = {"model": model, "messages": HI, "max_tokens": 24, "temperature": 0, "seed": 1}
    response = httpx.post(base_url + "/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


@pytest.mark.parity
@pytest.mark.parametrize("model", [TEXT, STARTER_NAME])
def test_a_drafted_greedy_reply_is_the_reply_without_drafting(drafting, server, model):
    assert reply(drafting.base_url, model) == reply(server.base_url, model)


def test_a_draft_model_that_is_not_pulled_stops_the_start_with_the_pull_command(session_store):
    with pytest.raises(RuntimeError, match="nexa pull test/absent"):
        ServerProcess(session_store.root, "--model-option", f"{TEXT}:draft=test/absent")
