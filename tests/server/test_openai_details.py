"""OpenAI details real clients trip on: tools a model cannot use, deprecated functions, completions' own shape."""

from __future__ import annotations

import json

import openai
import pytest

WEATHER = {"role": "user", "content": "What is the weather in Paris?"}
GET_WEATHER_FUNCTION = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
GET_WEATHER = {"type": "function", "function": GET_WEATHER_FUNCTION}


# ---------------------------------------------------------------- tools on a template without tool support


@pytest.mark.parametrize("choice", ["auto", "required"])
def test_tools_to_a_model_without_tool_support_are_refused_by_name(client, starter_name, choice):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=starter_name, messages=[WEATHER], tools=[GET_WEATHER], tool_choice=choice, max_tokens=4
        )
    error = caught.value.body
    assert starter_name in error["message"] and "tools" in error["message"]
    assert error["param"] == "tools" and error["code"] == "tools_not_supported"


def test_tool_choice_none_lets_such_a_model_answer_without_them(client, starter_name):
    reply = client.chat.completions.create(
        model=starter_name, messages=[WEATHER], tools=[GET_WEATHER], tool_choice="none", max_tokens=4
    )
    assert reply.choices[0].message.content and not reply.choices[0].message.tool_calls


def test_model_cards_say_which_models_can_call_tools(client, http, starter_name):
    cards = {card.id.split(":")[0]: card.model_extra["capabilities"] for card in client.models.list()}
    assert "tools" in cards["test/qwen3-tool"] and "chat" in cards["test/qwen3-tool"]
    assert "tools" not in cards[starter_name] and "chat" in cards[starter_name]
    assert cards["test/bert-embed"] == ["embeddings"]
    assert "vision" in cards["test/vision-gemma3"]
    one = http.get("/v1/models/test/qwen3-tool").json()
    assert "tools" in one["capabilities"]


# ---------------------------------------------------------------- deprecated functions


def test_functions_get_a_function_call_back(client):
    reply = client.chat.completions.create(
        model="test/qwen3-tool", messages=[WEATHER], functions=[GET_WEATHER_FUNCTION], function_call="auto"
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "function_call" and not choice.message.tool_calls
    assert choice.message.function_call.name == "get_weather"
    assert json.loads(choice.message.function_call.arguments) == {"city": "Paris"}
    assert reply.model == "test/qwen3-tool"


def test_a_named_function_call_streams_function_call_deltas(client):
    chunks = list(client.chat.completions.create(
        model="test/qwen3-tool", messages=[WEATHER], functions=[GET_WEATHER_FUNCTION],
        function_call={"name": "get_weather"}, stream=True,
    ))
    calls = [c.choices[0].delta.function_call for c in chunks if c.choices and c.choices[0].delta.function_call]
    assert calls and calls[0].name == "get_weather"
    assert json.loads("".join(c.arguments or "" for c in calls)) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "function_call"
    assert all(c.usage is None for c in chunks)


def test_function_turns_in_the_history_are_understood(client):
    reply = client.chat.completions.create(
        model="test/qwen3-text",
        messages=[
            WEATHER,
            {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"role": "function", "name": "get_weather", "content": "sunny, 21 C"},
        ],
        functions=[GET_WEATHER_FUNCTION], max_tokens=4,
    )
    assert reply.choices[0].message.content == "Hello from a scripted"


def test_functions_next_to_tools_are_refused(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="test/qwen3-tool", messages=[WEATHER], functions=[GET_WEATHER_FUNCTION], tools=[GET_WEATHER]
        )
    assert caught.value.body["param"] == "functions"


# ---------------------------------------------------------------- text completions


def test_completion_ids_and_logprobs_have_openais_shape(client):
    reply = client.completions.create(model="test/qwen3-text", prompt="Say hello", max_tokens=3, logprobs=2)
    assert reply.id.startswith("cmpl-") and reply.model == "test/qwen3-text"
    logprobs = reply.choices[0].logprobs
    assert "".join(logprobs.tokens) == reply.choices[0].text == "Hello from a"
    assert len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == 3
    assert logprobs.text_offset == [0, 5, 10]
    assert all(len(top) <= 2 and token in top for token, top in zip(logprobs.tokens, logprobs.top_logprobs))
    plain = client.completions.create(model="test/qwen3-text", prompt="Say hello", max_tokens=3)
    assert plain.choices[0].logprobs is None and plain.usage.completion_tokens == 3


def test_logprobs_zero_still_gives_each_tokens_logprob(client):
    logprobs = client.completions.create(model="test/qwen3-text", prompt="Say hello", max_tokens=2, logprobs=0).choices[0].logprobs
    assert logprobs.tokens == ["Hello", " from"] and len(logprobs.token_logprobs) == 2
    assert logprobs.top_logprobs == [{}, {}]


def test_streamed_completion_has_legacy_logprobs_and_a_usage_only_last_chunk(client):
    chunks = list(client.completions.create(
        model="test/qwen3-text", prompt="Say hello", max_tokens=3, logprobs=1, stream=True,
        stream_options={"include_usage": True},
    ))
    *text_chunks, last = chunks
    assert all(c.id.startswith("cmpl-") and c.id == chunks[0].id for c in chunks)
    assert last.choices == [] and last.usage.completion_tokens == 3
    assert all(c.usage is None for c in text_chunks)
    pieces = [c.choices[0].logprobs for c in text_chunks if c.choices[0].text]
    assert [p.tokens[0] for p in pieces] == ["Hello", " from", " a"]
    assert [p.text_offset[0] for p in pieces] == [0, 5, 10]


def test_streamed_completion_without_include_usage_has_none(client):
    chunks = list(client.completions.create(model="test/qwen3-text", prompt="Say hello", max_tokens=2, stream=True))
    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == "Hello from"


def test_completion_engine_errors_keep_openais_shape(http):
    response = http.post("/v1/completions", json={"model": "test/qwen3-text", "prompt": "x " * 3000, "max_tokens": 2})
    assert response.status_code == 400 and "--ctx" in response.json()["error"]["message"]


def test_max_tokens_minus_one_means_no_limit_as_in_llama_cpp(http):
    """llama.cpp's web UI sends -1 for 'unlimited'; 0 and other negatives stay a 400."""
    body = {"model": "test/qwen3-text", "messages": [{"role": "user", "content": "hi"}]}
    assert http.post("/v1/chat/completions", json={**body, "max_tokens": -1}).status_code == 200
    for bad in (0, -2):
        refused = http.post("/v1/chat/completions", json={**body, "max_tokens": bad})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "max_tokens"
