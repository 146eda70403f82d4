"""Responses ↔ chat translation and the response store, without a server."""

from __future__ import annotations

import pytest
from openai.types.responses import Response as SDKResponse

from nexa.compat.responses import ResponseStream, as_input, chat_request, dump, finished_response, input_items, new_response
from nexa.errors import InvalidRequest, NotStored
from nexa.server.response_store import ResponseStore
from nexa.wire.openai import NamedToolChoice
from nexa.wire.responses import ResponsesRequest


def request(input_, **fields) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", "input": input_, **fields})


def dumped(req: ResponsesRequest, history=()) -> list[dict]:
    return [m.model_dump(exclude_none=True) for m in chat_request(req, list(history)).messages]


def test_items_of_one_assistant_turn_become_one_chat_message():
    req = request([
        {"role": "user", "content": "Weather?"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "Use it."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "sunny"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "And "}, {"type": "input_image", "image_url": "a.png"}]},
    ], instructions="Be brief.")
    assert dumped(req) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Checking.", "reasoning_content": "Use it.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "user", "content": [{"type": "text", "text": "And "}, {"type": "image_url", "image_url": {"url": "a.png"}}]},
    ]


def test_tools_choice_format_and_sampling_map_onto_chat_fields():
    req = request("hi", tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}],
                  tool_choice={"type": "function", "name": "f"}, max_output_tokens=9, temperature=0.5,
                  text={"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}}},
                  reasoning={"effort": "none"})
    chat = chat_request(req, [])
    assert chat.tools[0].function.name == "f" and chat.tool_choice == NamedToolChoice(function={"name": "f"})
    assert chat.max_tokens == 9 and chat.temperature == 0.5 and chat.enable_think is False
    assert chat.response_format.type == "json_schema" and chat.response_format.json_schema.schema_ == {"type": "object"}
    assert chat_request(request("hi", text={"format": {"type": "json_object"}}), []).response_format.type == "json_object"


def test_a_bad_item_type_names_the_item():
    with pytest.raises(Exception) as caught:
        request([{"type": "web_search_call", "id": "x"}])
    assert "function_call_output" in str(caught.value)
    with pytest.raises(InvalidRequest) as refused:
        chat_request(request([{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]), [])
    assert refused.value.param == "input[0].content[0].image_url"


ANSWER = {
    "choices": [{"finish_reason": "tool_calls", "message": {
        "content": "Checking.", "reasoning_content": "Think.",
        "tool_calls": [{"id": "c1", "function": {"name": "get_weather", "arguments": "{}"}}]}}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}},
}


def test_an_answer_becomes_reasoning_message_and_call_items_the_sdk_accepts():
    response = finished_response(new_response(request("hi")), ANSWER)
    parsed = SDKResponse.model_validate(dump(response))
    assert [item.type for item in parsed.output] == ["reasoning", "message", "function_call"]
    assert parsed.output_text == "Checking." and parsed.usage.total_tokens == 8
    assert parsed.usage.input_tokens_details.cached_tokens == 2
    assert [m.model_dump(exclude_none=True)["role"] for m in chat_request(request("next"), as_input(response.output)).messages] \
        == ["assistant", "user"]


def chunk(**delta) -> dict:
    return {"choices": [{"delta": delta}]}


def test_the_stream_opens_and_closes_one_item_at_a_time():
    stream = ResponseStream(new_response(request("hi")))
    events = stream.start()
    for piece in (chunk(reasoning_content="Th"), chunk(reasoning_content="ink."), chunk(content="Hi"),
                  chunk(tool_calls=[{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{\"a\""}}]),
                  chunk(tool_calls=[{"index": 0, "function": {"arguments": ":1}"}}]),
                  {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
                  {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 5}}):
        events += stream.feed(piece)
    events += stream.finish()
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    added = [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"]
    assert added == ["reasoning", "message", "function_call"]
    assert events[-1]["type"] == "response.completed"
    final = SDKResponse.model_validate(events[-1]["response"])
    assert final.output[0].content[0].text == "Think." and final.output_text == "Hi"
    assert final.output[2].arguments == '{"a":1}' and final.usage.output_tokens == 5


def test_a_length_cut_stream_ends_incomplete_and_a_failure_ends_failed():
    stream = ResponseStream(new_response(request("hi")))
    stream.feed({"choices": [{"delta": {"content": "Hel"}, "finish_reason": "length"}]})
    assert stream.finish()[-1]["type"] == "response.incomplete"
    assert stream.response.incomplete_details.reason == "max_output_tokens"
    failing = ResponseStream(new_response(request("hi")))
    failing.feed(chunk(content="Hel"))
    error, failed = failing.error("worker died", "worker_crashed")
    assert error["type"] == "error" and failed["type"] == "response.failed"
    assert SDKResponse.model_validate(failed["response"]).status == "failed"


def test_the_store_is_bounded_by_count_and_bytes_and_keeps_history():
    store = ResponseStore(2, max_bytes=10_000)
    responses = [finished_response(new_response(request(str(i))), ANSWER) for i in range(3)]
    for r in responses:
        store.put(([], 0), input_items(request("q")), r)
    assert len(store) == 2 and store.get(responses[0].id) is None
    history = store.history(responses[2].id)
    assert [getattr(item, "role", item.type) for item in history] == ["user", "reasoning", "assistant", "function_call"]
    store.put(([], 0), input_items(request("q" * 20_000)), responses[0])  # alone over the byte budget: not kept
    assert store.get(responses[0].id) is None


def test_the_store_counts_what_it_keeps_and_keeps_no_encrypted_reasoning():
    store = ResponseStore(100, max_bytes=1_000_000)
    secret = "x" * 30_000_000  # what the engine never sees is not kept, whatever the request's size
    own = ResponsesRequest(model="m", input=[
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": secret},
        {"type": "message", "role": "user", "content": "q"},
    ])
    first = finished_response(new_response(request("q")), ANSWER)
    store.put(([], 0), input_items(own), first)
    assert 0 < store.bytes < 10_000
    assert all(getattr(item, "encrypted_content", None) is None for item in store.history(first.id))
    # A conversation counts its history again in every response that keeps it.
    second = finished_response(new_response(request("q")), ANSWER)
    history = store.history_of(first.id)
    store.put(history, input_items(request("more")), second)
    assert store.bytes > 2 * history[1]
    with pytest.raises(NotStored) as missing:
        store.history("resp_gone")
    assert missing.value.param == "previous_response_id" and "resp_gone" in missing.value.message
