"""Tool fields and structured output as the engine receives them, from validated requests."""

from __future__ import annotations

import pytest

from nexa.compat.bodies import chat_body
from nexa.compat.tools import check_tool_turns, tool_fields
from nexa.errors import InvalidRequest
from nexa.wire.openai import ChatCompletionRequest
from nexa.store import Manifest, ModelType
from nexa.store.manifest import FileEntry, QuantEntry

HI = [{"role": "user", "content": "hi"}]
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_time"}},
]
MANIFEST = Manifest(
    name="org/m", model_type=ModelType.llm, source="test",
    quants={"F32": QuantEntry(files=[FileEntry(name="m.gguf", size=1, sha256="0")])},
)


def request(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "org/m", "messages": HI, **fields})


def test_tools_pass_through_with_auto_none_required_and_parallel_flag():
    for choice in ("auto", "none", "required"):
        fields = tool_fields(request(tools=TOOLS, tool_choice=choice, parallel_tool_calls=False))
        assert fields == {"tools": TOOLS, "tool_choice": choice, "parallel_tool_calls": False}
    assert tool_fields(request()) == {}


def test_a_named_choice_becomes_required_over_that_tool_alone():
    fields = tool_fields(request(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_time"}}))
    assert fields == {"tools": [TOOLS[1]], "tool_choice": "required"}


def test_a_named_choice_must_be_one_of_the_tools():
    with pytest.raises(InvalidRequest, match="get_weather, get_time") as info:
        tool_fields(request(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}))
    assert info.value.param == "tool_choice.function.name"


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_time"}}])
def test_forcing_a_call_without_tools_is_refused(choice):
    with pytest.raises(InvalidRequest, match="requires tools"):
        tool_fields(request(tool_choice=choice))


def test_auto_or_none_without_tools_is_harmless():
    assert tool_fields(request(tool_choice="auto")) == {"tool_choice": "auto"}


def test_earlier_calls_need_json_arguments():
    call = {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    good = request(messages=[*HI, {"role": "assistant", "tool_calls": [call]}]).messages
    check_tool_turns(good)
    bad_call = {**call, "function": {"name": "get_time", "arguments": "not json"}}
    bad = request(messages=[*HI, {"role": "assistant", "tool_calls": [call, bad_call]}]).messages
    with pytest.raises(InvalidRequest) as info:
        check_tool_turns(bad)
    assert info.value.param == "messages[1].tool_calls[1].function.arguments"


def test_chat_body_carries_tools_reasoning_and_response_format():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = chat_body(request(
        tools=TOOLS, tool_choice="required", enable_think=False, reasoning_format="raw",
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}},
    ), MANIFEST, 1024)
    assert body["tools"] == TOOLS and body["tool_choice"] == "required"
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["reasoning_format"] == "none"
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}


def test_json_schema_format_without_its_schema_object_is_refused():
    with pytest.raises(InvalidRequest) as info:
        chat_body(request(response_format={"type": "json_schema"}), MANIFEST, 1024)
    assert info.value.param == "response_format.json_schema"
