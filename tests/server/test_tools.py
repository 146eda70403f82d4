"""Function tools through the real engine with scripted models, checked with the official openai client."""

from __future__ import annotations

import json

import openai
import pydantic
import pytest

WEATHER = {"role": "user", "content": "What is the weather in Paris?"}
GET_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
GET_TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current local time in a city, with its time zone and daylight saving rules.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "format": {"type": "string"}}},
    },
}


class GetWeather(pydantic.BaseModel):
    """Current weather in a city."""

    city: str


def assert_paris_call(call) -> None:
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


@pytest.mark.parity
@pytest.mark.parametrize("model", ["test/qwen3-tool", "test/qwen3-tool-split"])
def test_a_tool_call_comes_back_as_openai_tool_calls(client, model):
    reply = client.chat.completions.create(model=model, messages=[WEATHER], tools=[GET_WEATHER])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert_paris_call(call)
    assert "<tool_call>" not in (choice.message.content or "")


@pytest.mark.parity
def test_parallel_tool_calls_have_unique_ids(client):
    reply = client.chat.completions.create(model="test/qwen3-tool-parallel", messages=[WEATHER], tools=[GET_WEATHER])
    calls = reply.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Paris", "London"]
    assert len({c.id for c in calls}) == 2
    assert reply.choices[0].finish_reason == "tool_calls"


@pytest.mark.parity
def test_streamed_tool_call_deltas_follow_openai(client):
    chunks = list(client.chat.completions.create(
        model="test/qwen3-tool-split", messages=[WEATHER], tools=[GET_WEATHER], stream=True
    ))
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) > 1, "arguments should arrive in pieces"
    first, rest = deltas[0], deltas[1:]
    assert (first.index, first.type, first.function.name) == (0, "function", "get_weather") and first.id
    assert all(d.index == 0 and d.id is None and d.function.name is None for d in rest)
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_stream_helper_assembles_a_split_tool_call(client):
    with client.chat.completions.stream(
        model="test/qwen3-tool-split", messages=[WEATHER], tools=[openai.pydantic_function_tool(GetWeather, name="get_weather")]
    ) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in events
    (call,) = final.choices[0].message.tool_calls
    assert_paris_call(call)
    assert call.function.parsed_arguments == GetWeather(city="Paris")


def test_openai_stream_helper_assembles_parallel_calls(client):
    with client.chat.completions.stream(model="test/qwen3-tool-parallel", messages=[WEATHER], tools=[GET_WEATHER]) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"city": "London"}]
    assert final.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("as_dict", [True, False], ids=["assistant-dict", "assistant-openai-object"])
def test_tool_loop_renders_assistant_calls_and_tool_results(client, as_dict):
    first = client.chat.completions.create(model="test/qwen3-tool-split", messages=[WEATHER], tools=[GET_WEATHER])
    message = first.choices[0].message
    call = message.tool_calls[0]
    if as_dict:
        message = {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]}
    history = [WEATHER, message, {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 C"}]
    second = client.chat.completions.create(model="test/qwen3-tool-split", messages=history, tools=[GET_WEATHER])
    # The scripted model answers the same whatever the prompt; the longer prompt proves both turns rendered.
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + 10
    assert second.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("choice", ["auto", "required"])
def test_tool_choice_auto_and_required_call_the_tool(client, choice):
    reply = client.chat.completions.create(
        model="test/qwen3-tool-split", messages=[WEATHER], tools=[GET_WEATHER], tool_choice=choice,
        parallel_tool_calls=False,
    )
    assert_paris_call(reply.choices[0].message.tool_calls[0])


def test_tool_choice_none_leaves_the_reply_as_text(client):
    reply = client.chat.completions.create(
        model="test/qwen3-tool-split", messages=[WEATHER], tools=[GET_WEATHER], tool_choice="none"
    )
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason == "stop"


def test_named_tool_choice_offers_only_that_tool(client):
    both = client.chat.completions.create(model="test/qwen3-tool-split", messages=[WEATHER], tools=[GET_WEATHER, GET_TIME])
    named = client.chat.completions.create(
        model="test/qwen3-tool-split", messages=[WEATHER], tools=[GET_WEATHER, GET_TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert_paris_call(named.choices[0].message.tool_calls[0])
    assert named.usage.prompt_tokens < both.usage.prompt_tokens  # get_time was not in the prompt


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [GET_WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice.function.name"),
    ],
)
def test_tool_choice_without_a_matching_tool_is_400(http, extra, param):
    response = http.post("/v1/chat/completions", json={"model": "test/qwen3-tool-split", "messages": [WEATHER], **extra})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_earlier_tool_call_with_invalid_json_arguments_is_400(http):
    bad_call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{city: Paris"}}
    messages = [WEATHER, {"role": "assistant", "tool_calls": [bad_call]}, {"role": "tool", "tool_call_id": "c1", "content": "x"}]
    response = http.post("/v1/chat/completions", json={"model": "test/qwen3-tool-split", "messages": messages, "tools": [GET_WEATHER]})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[1].tool_calls[0].function.arguments"


def test_tool_call_the_grammar_rejects_is_a_clean_error(http):
    response = http.post("/v1/chat/completions", json={"model": "test/qwen3-tool-bad", "messages": [WEATHER], "tools": [GET_WEATHER]})
    assert response.status_code >= 500
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
