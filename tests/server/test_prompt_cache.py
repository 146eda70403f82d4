"""Turn N+1 costs only its new tokens: a conversation that comes back after an unrelated request finds its prefix
in the engine's prompt cache (host RAM, counted in the budget), each dialect reports the cached tokens, and
Claude Code's billing-header system block stays out of the prompt so sessions share their prefix. Real
`nexa serve` at its defaults but for one slot (the hardest case: the side request takes that slot), real SDKs,
a tiny model trained for 131,072 tokens; every figure is the engine's token count, never a timing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest

from nexa.store import ModelRef, Store
from nexa.store.importer import import_local
from tests.conftest import ServerProcess

MODEL = "test/long-context"


def prefix(name: str) -> str:
    """An agent-like system prompt of ~3,000 tokens (the tiny vocabulary: one token a character), its own per test."""
    rules = "".join(f"{n}. Read the file before editing it, keep changes small, run the tests. " for n in range(40))
    return f"You are {name}, a coding agent.\n{rules}"[:3000]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, long_context_model: Path) -> Store:
    store = Store(tmp_path_factory.mktemp("prompt-cache-store"))
    import_local(store, ModelRef.parse(MODEL), long_context_model, None)
    return store


@pytest.fixture(scope="module")
def server(store: Store) -> Iterator[ServerProcess]:
    server = ServerProcess(store.root, "--parallel", "1", engine=())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oai(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def side_request(oai: openai.OpenAI) -> None:
    """What an agent asks between turns (a title), with a system prompt of its own: it takes the one slot."""
    oai.chat.completions.create(model=MODEL, max_tokens=4, messages=[
        {"role": "system", "content": "Write a five-word title."}, {"role": "user", "content": "fix the tests " * 20}])


def test_chat_reuses_the_prefix_after_an_unrelated_request(oai: openai.OpenAI):
    system = {"role": "system", "content": prefix("chat")}
    first = oai.chat.completions.create(model=MODEL, max_tokens=4, messages=[system, {"role": "user", "content": "one"}])
    assert first.usage.prompt_tokens_details.cached_tokens < 40
    side_request(oai)
    second = oai.chat.completions.create(model=MODEL, max_tokens=4, messages=[
        system, {"role": "user", "content": "one"}, {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "two"}])
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= first.usage.prompt_tokens - 8 and second.usage.prompt_tokens - cached < 40


def test_messages_report_cache_reads_as_anthropic_does(server: ServerProcess, oai: openai.OpenAI):
    claude = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0)
    system = prefix("messages")
    first = claude.messages.create(model=MODEL, max_tokens=4, system=system, messages=[{"role": "user", "content": "one"}])
    # (only the template's opening, shared with the requests before, can come from the cache)
    assert first.usage.cache_read_input_tokens < 40 and first.usage.input_tokens > 2500
    side_request(oai)
    streamed = claude.messages.stream(model=MODEL, max_tokens=4, system=system,
                                      messages=[{"role": "user", "content": "one"}])
    with streamed as events:
        usage = events.get_final_message().usage
    # input_tokens counts only what the engine processed; the rest was read from its prompt cache
    assert usage.cache_read_input_tokens >= first.usage.input_tokens - 8 and usage.input_tokens < 10


def test_responses_report_cached_input_tokens(oai: openai.OpenAI):
    system = prefix("responses")
    first = oai.responses.create(model=MODEL, instructions=system, input="one", max_output_tokens=4, store=False)
    assert first.usage.input_tokens_details.cached_tokens < 40
    side_request(oai)
    second = oai.responses.create(model=MODEL, instructions=system, input="one", max_output_tokens=4, store=False,
                                  prompt_cache_key="session-1")
    assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens - 8


def test_ollama_counts_only_the_prompt_tokens_it_evaluated(server: ServerProcess, oai: openai.OpenAI):
    lama = ollama.Client(host=server.base_url)
    messages = [{"role": "system", "content": prefix("ollama")}, {"role": "user", "content": "one"}]
    first = lama.chat(model=MODEL, messages=messages, options={"num_predict": 4})
    assert first.prompt_eval_count > 2500
    side_request(oai)
    second = lama.chat(model=MODEL, messages=messages, stream=True, options={"num_predict": 4})
    last = list(second)[-1]
    assert last.done and last.prompt_eval_count < 10


def test_claude_codes_billing_header_is_left_out_so_sessions_share_their_prefix(server: ServerProcess,
                                                                                oai: openai.OpenAI):
    claude = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0)

    def session(suffix: str, question: str) -> anthropic.types.Usage:
        system = [{"type": "text", "text": f"x-anthropic-billing-header: cc_version=2.1.328.{suffix}; "
                                           "cc_entrypoint=sdk-cli;"},
                  {"type": "text", "text": prefix("claude")}]
        return claude.messages.create(model=MODEL, max_tokens=4, system=system,
                                      messages=[{"role": "user", "content": question}]).usage

    first = session("f86", "What is the capital of France?")
    side_request(oai)
    second = session("7c5", "List the files.")
    # without the header the two sessions' prompts differ only in their last message
    assert second.cache_read_input_tokens >= first.input_tokens - 40
    count = claude.messages.count_tokens(model=MODEL, system=[
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=1;"}, {"type": "text", "text": "Be brief."}],
        messages=[{"role": "user", "content": "hi"}])
    alone = claude.messages.count_tokens(model=MODEL, system="Be brief.", messages=[{"role": "user", "content": "hi"}])
    assert count.input_tokens == alone.input_tokens


def test_without_a_prompt_cache_the_prefix_is_processed_again(store: Store):
    """The control: the host-RAM prompt cache (counted in the budget) is what keeps the prefix."""
    server = ServerProcess(store.root, "--parallel", "1", "--prompt-cache", "0", engine=())
    try:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
        messages = [{"role": "system", "content": prefix("control")}, {"role": "user", "content": "one"}]
        client.chat.completions.create(model=MODEL, max_tokens=4, messages=messages)
        side_request(client)
        again = client.chat.completions.create(model=MODEL, max_tokens=4, messages=messages)
        assert again.usage.prompt_tokens_details.cached_tokens < 100
    finally:
        server.stop()


def test_the_prompt_cache_is_counted_in_the_budget(server: ServerProcess):
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        held = http.get("/v1/ps").json()["data"][0]
    # a full context's KV cache (131,072 tokens x 512 bytes) of host RAM for prompts, beside the model itself
    assert held["ctx"] == 131072 and held["memory_estimate"] > 64 * 1024 * 1024 + 96 * 1024 * 1024
