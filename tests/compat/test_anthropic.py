"""Anthropic Messages ↔ OpenAI chat translation, without a server."""

from __future__ import annotations

import json

import pytest

from nexa.compat.anthropic import MessageStream, ThinkingFilter, chat_request, message_response, without_thinking
from nexa.server.stream import sse_named as sse
from nexa.errors import EngineRefused, InvalidRequest
from nexa.wire.anthropic import CountTokensRequest, MessagesRequest, error_body
from nexa.wire.openai import NamedToolChoice

TOOL = {"name": "get_weather", "description": "Weather in a city.", "input_schema": {"type": "object"}}


def request(messages: list[dict], **fields) -> MessagesRequest:
    return MessagesRequest.model_validate({"model": "m", "max_tokens": 50, "messages": messages, **fields})


def dumped(req: MessagesRequest) -> list[dict]:
    return [m.model_dump(exclude_none=True) for m in chat_request(req).messages]


def test_system_blocks_and_a_tool_round_trip_become_openai_messages():
    req = request(
        [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Use the tool.", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xx"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                {"type": "text", "text": "And tomorrow?"},
            ]},
        ],
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
    )
    assert dumped(req) == [
        {"role": "system", "content": "Be brief.\n\nBe kind."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Checking.", "reasoning_content": "Use the tool.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        ]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
    ]


@pytest.mark.parametrize("system", [
    [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328.f86; cc_entrypoint=sdk-cli;"},
     {"type": "text", "text": "Be brief."}],
    "x-anthropic-billing-header: cc_version=2.1.328.7c5; cc_entrypoint=sdk-cli;\nBe brief.",
])
def test_claude_codes_billing_header_is_metadata_not_prompt(system):
    assert dumped(request([{"role": "user", "content": "hi"}], system=system))[0] == {
        "role": "system", "content": "Be brief."}


def test_images_become_image_url_parts_for_the_media_policy():
    req = request([{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
    ]}])
    parts = dumped(req)[0]["content"]
    assert [p["image_url"]["url"] for p in parts] == ["data:image/png;base64,AAAA", "https://example.com/a.png"]


def test_sampling_tools_choice_and_thinking_map_to_openai_fields():
    req = request([{"role": "user", "content": "hi"}], tools=[TOOL], tool_choice={"type": "any", "disable_parallel_tool_use": True},
                  stop_sequences=["END"], temperature=0.5, top_k=3, thinking={"type": "enabled", "budget_tokens": 2048},
                  metadata={"user_id": "u"})
    chat = chat_request(req)
    assert (chat.max_tokens, chat.stop, chat.temperature, chat.top_k) == (50, ["END"], 0.5, 3)
    assert (chat.tool_choice, chat.parallel_tool_calls, chat.enable_think) == ("required", False, True)
    assert chat.tools[0].function.parameters == {"type": "object"} and chat.stream is False
    named = chat_request(request([{"role": "user", "content": "hi"}], tools=[TOOL], tool_choice={"type": "tool", "name": "get_weather"}))
    assert named.tool_choice == NamedToolChoice(function={"name": "get_weather"})
    assert chat_request(request([{"role": "user", "content": "hi"}], tool_choice={"type": "none"})).tool_choice == "none"
    assert chat_request(request([{"role": "user", "content": "hi"}])).enable_think is False  # Anthropic's default
    assert chat_request(request([{"role": "user", "content": "hi"}], thinking={"type": "adaptive"})).enable_think is None


def test_an_output_format_becomes_a_json_schema_response_format():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    chat = chat_request(request([{"role": "user", "content": "hi"}],
                                output_config={"format": {"type": "json_schema", "schema": schema}, "effort": "low"}))
    assert chat.response_format.type == "json_schema" and chat.response_format.json_schema.schema_ == schema


def test_count_tokens_requests_translate_without_sampling_fields():
    chat = chat_request(CountTokensRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
    assert chat.max_tokens is None and chat.messages[0].content == "hi"


@pytest.mark.parametrize(
    ("role", "block", "param"),
    [
        ("user", {"type": "tool_use", "id": "t", "name": "f", "input": {}}, "messages[0].content[0]"),
        ("assistant", {"type": "tool_result", "tool_use_id": "t", "content": "x"}, "messages[0].content[0]"),
        ("assistant", {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}, "messages[0].content[0]"),
        ("user", {"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}]}, "messages[0].content[0].content"),
    ],
)
def test_blocks_in_the_wrong_place_are_refused_by_position(role, block, param):
    with pytest.raises(InvalidRequest) as caught:
        chat_request(request([{"role": role, "content": [block]}]))
    assert caught.value.param == param


def test_too_many_images_is_an_invalid_request_not_a_crash():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    with pytest.raises(InvalidRequest, match="at most"):
        chat_request(request([{"role": "user", "content": [image] * 17}]))


def test_an_engine_answer_becomes_a_message_with_thinking_text_and_tool_use():
    answer = {
        "id": "chatcmpl-1",
        "choices": [{"finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me check.", "reasoning_content": "Tool needed.",
            "tool_calls": [{"id": "abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}],
        }}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
                  "prompt_tokens_details": {"cached_tokens": 10}},
    }
    message = message_response(answer, "org/repo").model_dump()
    assert message["id"].startswith("msg_") and message["model"] == "org/repo"
    thinking, text, tool = message["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] == "Tool needed." and thinking["signature"]
    assert text == {"type": "text", "text": "Let me check."}
    assert tool["id"].startswith("toolu_") and (tool["name"], tool["input"]) == ("get_weather", {"city": "Paris"})
    # as Anthropic counts them: input_tokens are those processed, the rest were read from the prompt cache
    assert (message["stop_reason"], message["usage"]) == ("tool_use", {
        "input_tokens": 2, "output_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10})


@pytest.mark.parametrize(("finish", "stop"), [("stop", "end_turn"), ("length", "max_tokens")])
def test_finish_reasons_map_to_stop_reasons(finish, stop):
    answer = {"choices": [{"finish_reason": finish, "message": {"content": "x"}}], "usage": {}}
    assert message_response(answer, "m").stop_reason == stop


def test_tool_arguments_that_are_not_an_object_are_an_engine_error():
    answer = {"choices": [{"finish_reason": "tool_calls", "message": {"tool_calls": [
        {"id": "a", "function": {"name": "f", "arguments": "[1"}}]}}]}
    with pytest.raises(EngineRefused):
        message_response(answer, "m")


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"choices": choices, **({"usage": usage} if usage else {})}


def test_chunks_become_anthropic_events_in_order():
    stream = MessageStream("m")
    events = stream.start()
    for c in [
        chunk({"role": "assistant", "content": None}),
        chunk({"reasoning_content": "hmm"}),
        chunk({"content": "Hi"}),
        chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
        chunk({}, finish="tool_calls"),
        chunk(usage={"prompt_tokens": 5, "completion_tokens": 9}),
    ]:
        events += stream.feed(c)
    events += stream.finish()
    shapes = [(name, data.get("index"), (data.get("delta") or data.get("content_block") or {}).get("type")) for name, data in events]
    assert shapes == [
        ("message_start", None, None), ("ping", None, None),
        ("content_block_start", 0, "thinking"), ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"), ("content_block_stop", 0, None),
        ("content_block_start", 1, "text"), ("content_block_delta", 1, "text_delta"), ("content_block_stop", 1, None),
        ("content_block_start", 2, "tool_use"), ("content_block_delta", 2, "input_json_delta"),
        ("content_block_delta", 2, "input_json_delta"), ("content_block_stop", 2, None),
        ("message_delta", None, None), ("message_stop", None, None),
    ]
    assert events[9][1]["content_block"]["name"] == "f" and events[9][1]["content_block"]["id"].startswith("toolu_")
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"] == {"input_tokens": 5, "output_tokens": 9, "cache_creation_input_tokens": 0,
                                      "cache_read_input_tokens": 0}


def test_each_tool_call_gets_a_block_of_its_own():
    stream = MessageStream("m")
    events = []
    for index in (0, 1):
        call = {"index": index, "id": f"c{index}", "function": {"name": "f", "arguments": "{}"}}
        events += stream.feed(chunk({"tool_calls": [call]}))
    starts = [data["index"] for name, data in events if name == "content_block_start"]
    assert starts == [0, 1]


def test_sse_frames_carry_an_event_line():
    frame = sse(("ping", {"type": "ping"}))
    assert frame == b'event: ping\ndata: {"type":"ping"}\n\n'


@pytest.mark.parametrize(
    ("status", "type_"),
    [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"), (404, "not_found_error"),
     (413, "request_too_large"), (429, "rate_limit_error"), (500, "api_error"), (503, "overloaded_error"),
     (529, "overloaded_error"), (405, "invalid_request_error"), (502, "api_error")],
)
def test_error_bodies_take_anthropics_types(status, type_):
    body = error_body(status, {"error": {"message": "boom", "type": "x", "param": None, "code": None}})
    assert body == {"type": "error", "error": {"type": type_, "message": "boom"}}
    json.dumps(body)


# ---------------------------------------------------------------- thinking the client did not ask for


RAW = "<think>\nThe user asks.\n</think>\n\nIt is sunny."


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
def test_a_raw_think_block_is_filtered_out_however_the_stream_splits_it(size):
    cases = ((RAW, "It is sunny."), ("  " + RAW, "It is sunny."), ("<thin", "<thin"),
             ("Plain <think>", "Plain <think>"), ("<think>never closed", ""))
    for text, answer in cases:
        think = ThinkingFilter()
        out = "".join(think.feed(text[i:i + size]) for i in range(0, len(text), size)) + think.rest()
        assert out.strip() == answer.strip() and without_thinking(text).strip() == answer.strip()


def test_a_message_without_thinking_asked_has_neither_block_nor_tags():
    answer = {"choices": [{"finish_reason": "stop", "message": {"content": RAW, "reasoning_content": "parsed"}}]}
    shown = message_response(answer, "m", thinking=False)
    assert [(b.type, b.text) for b in shown.content] == [("text", "It is sunny.")]
    asked = message_response(answer, "m")
    assert [b.type for b in asked.content] == ["thinking", "text"]
