"""Chat and text completions through the real server, the real engine and the official openai client."""

from __future__ import annotations

import json

import pytest

SCRIPT = "Hello from a scripted model."


@pytest.mark.parity
def test_chat_returns_an_openai_completion(client):
    reply = client.chat.completions.create(
        model="test/qwen3-text", messages=[{"role": "user", "content": "hi"}], temperature=1.3, seed=7
    )
    assert reply.id.startswith("chatcmpl-") and reply.created > 0 and reply.object == "chat.completion"
    assert reply.model == "test/qwen3-text"
    choice = reply.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == ("assistant", SCRIPT, "stop")
    assert reply.usage.completion_tokens == 6  # five pieces and the end token
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_model_field_echoes_the_name_the_client_used(client):
    reply = client.chat.completions.create(model="TEST/qwen3-text:f32", messages=[{"role": "user", "content": "hi"}])
    assert reply.model == "TEST/qwen3-text:f32"


def test_max_tokens_and_max_completion_tokens_cut_the_reply(client):
    for field in ("max_tokens", "max_completion_tokens"):
        reply = client.chat.completions.create(
            model="test/qwen3-text", messages=[{"role": "user", "content": "hi"}], **{field: 2}
        )
        assert reply.choices[0].message.content == "Hello from"
        assert reply.choices[0].finish_reason == "length"


def test_stop_sequences_are_passed_to_the_engine(client):
    reply = client.chat.completions.create(
        model="test/qwen3-text", messages=[{"role": "user", "content": "hi"}], stop=[" scripted"]
    )
    assert reply.choices[0].message.content == "Hello from a"


@pytest.mark.parity
def test_streamed_chat_keeps_openai_chunk_invariants(client):
    stream = client.chat.completions.create(
        model="test/qwen3-text", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    ids = {c.id for c in chunks}
    assert len(ids) == 1 and all(c.model == "test/qwen3-text" for c in chunks)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    with_choices = [c for c in chunks if c.choices]
    roles = [c.choices[0].delta.role for c in with_choices if c.choices[0].delta.role]
    assert roles == ["assistant"]
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text == SCRIPT
    finishes = [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason]
    assert finishes == ["stop"] and with_choices[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6


def test_stream_without_include_usage_sends_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(
        model="test/qwen3-text", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


@pytest.mark.parity
def test_raw_stream_is_sse_ending_with_done(http):
    with http.stream("POST", "/v1/chat/completions", json={
        "model": "test/llama-text", "messages": [{"role": "user", "content": "hi"}], "stream": True,
    }) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "Bonjour tout le monde"


@pytest.mark.parity
def test_text_completion_plain_and_streamed(client):
    reply = client.completions.create(model="test/qwen3-text", prompt="Say hello", max_tokens=3)
    assert reply.object == "text_completion" and reply.model == "test/qwen3-text"
    assert reply.choices[0].text == "Hello from a" and reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 3
    pieces = [c.choices[0].text for c in client.completions.create(
        model="test/qwen3-text", prompt="Say hello", stream=True) if c.choices]
    assert "".join(pieces) == SCRIPT


def test_curl_without_content_type_works(http):
    response = http.post("/v1/chat/completions", content=json.dumps(
        {"model": "test/qwen3-text", "messages": [{"role": "user", "content": "hi"}]}),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == SCRIPT


def test_random_weights_stream_without_breaking_utf8_or_the_protocol(client):
    chunks = list(client.chat.completions.create(
        model="test/qwen3-random", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=24))
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


@pytest.mark.slow
def test_the_briefs_curl_gets_paris_from_the_starter_model(http, starter_name):
    """As the product brief sends it: no system prompt, no temperature (the starter's defaults fill both)."""
    for _ in range(3):
        response = http.post("/v1/chat/completions", json={
            "model": starter_name, "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "stream": False,
        })
        assert "Paris" in response.json()["choices"][0]["message"]["content"]


@pytest.mark.slow
def test_starter_model_knows_the_capital_of_france(client, starter_name):
    reply = client.chat.completions.create(
        model=starter_name, messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0,
        max_tokens=40,
    )
    assert "Paris" in reply.choices[0].message.content
