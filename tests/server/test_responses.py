"""OpenAI's Responses API through the real engine, checked with the openai, langchain and agents clients."""

from __future__ import annotations

import asyncio
import base64
import json

import openai
import pytest
from openai.types.responses import Response

from tests.fixtures.media_samples import image_bytes

SCRIPT = "Hello from a scripted model."
GET_WEATHER = {
    "type": "function", "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def validated(http, **body) -> Response:
    """POST /v1/responses, parsed strictly by the SDK's own model (the client itself only constructs)."""
    reply = http.post("/v1/responses", json=body)
    assert reply.status_code == 200, reply.text
    return Response.model_validate(reply.json())


def test_string_input_gives_a_completed_response(http, client):
    response = validated(http, model="test/qwen3-text", input="hi", metadata={"k": "v"}, user="u1", temperature=0.2,
                         top_p=0.9, parallel_tool_calls=False)
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert response.model == "test/qwen3-text" and response.output_text == SCRIPT
    assert response.metadata == {"k": "v"} and response.parallel_tool_calls is False and response.temperature == 0.2
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0 and usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert client.responses.create(model="test/qwen3-text", input="hi").output_text == SCRIPT


def test_item_list_with_instructions_and_history(client):
    response = client.responses.create(
        model="test/qwen3-text", instructions="You are terse.", max_output_tokens=64,
        input=[{"role": "user", "content": "hi"},
               {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello."}]},
               {"role": "developer", "content": "Be kind."},
               {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "again"}]}],
    )
    assert response.output_text == SCRIPT and response.instructions == "You are terse."


def test_an_input_image_reaches_a_vision_model(client):
    image = "data:image/png;base64," + base64.b64encode(image_bytes("png")).decode()
    plain = client.responses.create(model="test/vision-gemma3", input="hi")
    with_image = client.responses.create(model="test/vision-gemma3", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "hi"}, {"type": "input_image", "image_url": image}]}])
    assert with_image.output_text == SCRIPT and with_image.usage.input_tokens > plain.usage.input_tokens


def test_max_output_tokens_makes_it_incomplete(http):
    response = validated(http, model="test/qwen3-text", input="hi", max_output_tokens=2)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 2 and response.output[0].status == "incomplete"


def test_stream_is_assembled_by_the_sdk(client):
    with client.responses.stream(model="test/qwen3-text", input="hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == SCRIPT
    assert final.output_text == SCRIPT and final.status == "completed" and final.usage.output_tokens > 0
    assert client.responses.retrieve(final.id).output_text == SCRIPT


def test_raw_stream_has_event_lines(http):
    with http.stream("POST", "/v1/responses", json={"model": "test/qwen3-text", "input": "hi", "stream": True}) as reply:
        lines = [line for line in reply.iter_lines() if line]
    assert lines[0] == "event: response.created" and json.loads(lines[1][6:])["type"] == "response.created"
    assert lines[-2] == "event: response.completed"
    Response.model_validate(json.loads(lines[-1][6:])["response"])


def test_a_tool_loop_with_previous_response_id(client):
    first = client.responses.create(model="test/qwen3-tool", input="What is the weather in Paris?", tools=[GET_WEATHER],
                                    tool_choice="required")
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"} and call.call_id
    assert first.tools[0].name == "get_weather" and first.tool_choice == "required"
    second = client.responses.create(
        model="test/qwen3-text", previous_response_id=first.id, tools=[GET_WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}],
    )
    assert second.output_text == SCRIPT and second.previous_response_id == first.id
    assert second.usage.input_tokens > first.usage.input_tokens  # the history was prepended


def test_a_streamed_tool_call_is_assembled(client):
    with client.responses.stream(model="test/qwen3-tool", input="Weather in Paris?", tools=[GET_WEATHER],
                                 tool_choice={"type": "function", "name": "get_weather"}) as stream:
        types = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in types and "response.function_call_arguments.done" in types
    (call,) = [item for item in final.output if item.type == "function_call"]
    assert json.loads(call.arguments) == {"city": "Paris"}


def test_reasoning_is_a_reasoning_item_then_the_answer(client):
    response = client.responses.create(model="test/qwen3-think", input="hi", reasoning={"effort": "medium"})
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.content[0].text.strip()
    assert message.type == "message" and response.output_text.strip() and "<think>" not in response.output_text
    with client.responses.stream(model="test/qwen3-think", input="hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    thought = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert thought == reasoning.content[0].text and final.output[0].content[0].text == thought
    assert final.output_text == response.output_text


def test_json_schema_format_constrains_the_output(http):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}
    text = {"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}}
    response = validated(http, model="test/qwen3-random", input="JSON please", text=text, max_output_tokens=200)
    assert set(json.loads(response.output_text)) == {"ok"} and response.text.format.type == "json_schema"
    assert response.text.format.schema_ == schema
    loose = validated(http, model="test/qwen3-random", input="JSON", text={"format": {"type": "json_object"}},
                      max_output_tokens=200)
    assert isinstance(json.loads(loose.output_text), dict)


def test_store_false_is_not_kept_and_delete_forgets(client, http):
    kept = client.responses.create(model="test/qwen3-text", input="hi")
    assert client.responses.retrieve(kept.id).id == kept.id
    client.responses.delete(kept.id)
    unkept = client.responses.create(model="test/qwen3-text", input="hi", store=False)
    for response_id in (kept.id, unkept.id):
        reply = http.get(f"/v1/responses/{response_id}")
        assert reply.status_code == 404 and response_id in reply.json()["error"]["message"]


def test_input_tokens_grow_with_the_input(http):
    counts = [http.post("/v1/responses/input_tokens", json={"model": "test/qwen3-text", "input": text}).json()
              for text in ("hi", "hi " * 50)]
    assert counts[0]["object"] == "response.input_tokens" and 0 < counts[0]["input_tokens"] < counts[1]["input_tokens"]


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"input": [{"type": "computer_call", "id": "x"}]}, "input.0", "function_call_output"),
    ({"input": "hi", "tools": [{"type": "frobnicate"}]}, "tools.0.type", "frobnicate"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f1"}]}]},
     "input[0].content[0].image_url", "image_url"),
    ({"input": "hi", "background": True}, "background", "background"),
])
def test_bad_input_is_a_400_naming_the_field(http, body, param, words):
    reply = http.post("/v1/responses", json={"model": "test/qwen3-text", **body})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and words in error["message"]


def test_an_unknown_previous_response_is_a_404_naming_it(http):
    """Whether a response is stored depends on the server, not on the request: a 404, as for an unknown model."""
    reply = http.post("/v1/responses", json={"model": "test/qwen3-text", "input": "hi", "previous_response_id": "resp_nope"})
    assert reply.status_code == 404, reply.text
    error = reply.json()["error"]
    assert (error["param"], error["code"]) == ("previous_response_id", "previous_response_not_found")
    assert "resp_nope" in error["message"]


def test_an_engine_failure_mid_stream_is_a_failed_event(client):
    with client.responses.stream(model="test/qwen3-tool-bad", input="Weather?", tools=[GET_WEATHER]) as stream:
        types = [e.type for e in stream]
    assert types[0] == "response.created" and types[-2:] == ["error", "response.failed"]


def test_langchain_chat_openai_with_the_responses_api(server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(use_responses_api=True, base_url=server.base_url + "/v1", api_key="x", model="test/qwen3-text",
                     max_retries=0)
    assert llm.invoke("hi").text == SCRIPT


def test_openai_agents_runs_a_function_tool(server):
    from agents import Agent, Runner, function_tool, set_tracing_disabled
    from agents.exceptions import MaxTurnsExceeded
    from agents.models.openai_responses import OpenAIResponsesModel

    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        calls.append(city)
        return "sunny, 21 C"

    async def run() -> None:
        model = OpenAIResponsesModel(model="test/qwen3-tool",
                                     openai_client=openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x"))
        agent = Agent(name="weather", instructions="Answer with the tool.", tools=[get_weather], model=model)
        with pytest.raises(MaxTurnsExceeded):  # the scripted model calls the tool on every turn
            await Runner.run(agent, "Weather in Paris?", max_turns=2)
        plain = Agent(name="plain", model=OpenAIResponsesModel(
            model="test/qwen3-text", openai_client=openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x")))
        assert (await Runner.run(plain, "hi")).final_output == SCRIPT

    asyncio.run(run())
    assert calls and set(calls) == {"Paris"}


def test_a_wrong_type_in_any_field_is_never_a_5xx(http):
    from nexa.wire.responses import ResponsesRequest

    for field, info in ResponsesRequest.model_fields.items():
        for wrong in ({"nested": [1, {"x": None}]}, [[1], "a", None], "a string", -1.5, True):
            reply = http.post("/v1/responses", json={"model": "test/qwen3-text", "input": "hi", "max_output_tokens": 4,
                                                     info.alias or field: wrong})
            assert reply.status_code < 500, (field, wrong, reply.text[:300])
            if reply.status_code >= 400:
                assert set(reply.json()["error"]) == {"message", "type", "param", "code"}


def _rss_mb(pid: int) -> float:
    status = open(f"/proc/{pid}/status").read()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


def test_chunked_bodies_with_encrypted_reasoning_do_not_grow_the_store(http, server):
    """Ten chunked bodies (no Content-Length) with 20 MB of encrypted_content each grew the router by 253 MB."""
    def post(store: bool) -> None:
        data = json.dumps({"model": "test/qwen3-text", "max_output_tokens": 4, "store": store, "input": [
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x" * 20_000_000},
            {"type": "message", "role": "user", "content": "hi"},
        ]}).encode()
        reply = http.post("/v1/responses", content=(data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)),
                          headers={"Content-Type": "application/json"})
        assert reply.status_code == 200 and "content-length" not in reply.request.headers

    for _ in range(2):
        post(store=False)  # the router's high-water mark for such a body: its allocator keeps that much
    before = _rss_mb(server.process.pid)
    for _ in range(6):
        post(store=True)
    assert _rss_mb(server.process.pid) - before < 60  # 6 x 20 MB stored would be 120 MB (allocator slack aside)


# ---------------------------------------------------------------- agents (issue 20): Codex's tools and fields

NAMESPACE = {"type": "namespace", "name": "weather", "description": "Weather tools.",
             "tools": [{k: v for k, v in GET_WEATHER.items()}]}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Apply a patch.",
               "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
HOSTED = [{"type": "web_search", "external_web_access": False}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
          {"type": "code_interpreter", "container": {"type": "auto"}}, {"type": "image_generation"},
          {"type": "computer_use_preview", "display_width": 1024, "display_height": 768, "environment": "linux"},
          {"type": "mcp", "server_label": "x", "server_url": "https://example.com"}, {"type": "local_shell"}]


def test_a_codex_shaped_request_is_accepted_and_hosted_tools_left_out(http, server):
    body = {"model": "test/qwen3-text", "stream": False, "tool_choice": "auto", "parallel_tool_calls": True,
            "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
                      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            "tools": [GET_WEATHER, NAMESPACE, APPLY_PATCH, *HOSTED], "reasoning": {"summary": "auto"}, "store": False,
            "include": ["reasoning.encrypted_content"], "prompt_cache_key": "session-1",
            "client_metadata": {"turn_id": "t1", "x-codex-turn-metadata": "{}"}}
    response = validated(http, **body)
    assert response.output_text == SCRIPT and response.store is False
    assert [tool.type for tool in response.tools] == ["function", "namespace", "custom", *(t["type"] for t in HOSTED)]
    assert "left out hosted tools" in server.output  # said in the log
    without_hosted = http.post("/v1/responses/input_tokens", json={**body, "tools": body["tools"][:3]}).json()
    assert http.post("/v1/responses/input_tokens", json=body).json() == without_hosted  # not in the prompt


def test_a_namespaced_call_comes_back_with_its_namespace(client):
    first = client.responses.create(model="test/qwen3-tool-namespaced", input="Weather in Paris?", tools=[NAMESPACE])
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert (call.name, call.namespace, json.loads(call.arguments)) == ("get_weather", "weather", {"city": "Paris"})
    with client.responses.stream(model="test/qwen3-tool-namespaced", input="Weather?", tools=[NAMESPACE]) as stream:
        streamed = [item for item in stream.get_final_response().output if item.type == "function_call"]
    assert [(c.name, c.namespace) for c in streamed] == [("get_weather", "weather")]
    again = client.responses.create(model="test/qwen3-text", tools=[NAMESPACE], input=[
        {"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert again.output_text == SCRIPT


def test_a_custom_tool_call_is_one_string_input(client, http):
    first = client.responses.create(model="test/qwen3-tool-custom", input="Patch it.", tools=[APPLY_PATCH])
    (call,) = [item for item in first.output if item.type == "custom_tool_call"]
    assert call.name == "apply_patch" and call.input == "*** Begin Patch\n*** End Patch" and call.call_id
    with client.responses.stream(model="test/qwen3-tool-custom", input="Patch it.", tools=[APPLY_PATCH]) as stream:
        types = [event.type for event in stream]
        (streamed,) = [item for item in stream.get_final_response().output if item.type == "custom_tool_call"]
    assert "response.custom_tool_call_input.done" in types and streamed.input == call.input
    again = validated(http, model="test/qwen3-text", tools=[APPLY_PATCH], input=[
        {"role": "user", "content": "Patch it."}, call.model_dump(exclude_none=True),
        {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done!"}])
    assert again.output_text == SCRIPT


@pytest.mark.parametrize("body, words", [
    ({"tools": [{"type": "frobnicate"}]}, "tool type 'frobnicate' is not supported"),
    ({"tools": HOSTED[:1], "tool_choice": {"type": "web_search"}}, "forces the hosted tool 'web_search'"),
    ({"tools": HOSTED[1:2], "tool_choice": {"type": "file_search"}}, "forces the hosted tool 'file_search'"),
])
def test_an_unknown_or_forced_hosted_tool_is_a_400_naming_it(http, body, words):
    reply = http.post("/v1/responses", json={"model": "test/qwen3-text", "input": "hi", **body})
    assert reply.status_code == 400 and words in reply.json()["error"]["message"], reply.text
