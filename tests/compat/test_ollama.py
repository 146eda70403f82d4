"""Ollama ↔ OpenAI translation, without a server."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from nexa.compat.ollama import (
    ChunkStream,
    Clock,
    Reply,
    chat_request,
    generate_chat_request,
    generate_completion_request,
    keep_alive_seconds,
    ollama_capabilities,
    parameter_size,
    resolve,
    store_name,
)
from nexa.errors import EngineRefused, InvalidRequest, ModelNotFound
from nexa.store import ModelType
from nexa.store.facts import Facts
from nexa.wire.ollama import ChatRequest, GenerateRequest, error_body


@pytest.mark.parametrize("name, expected", [
    ("org/repo", "org/repo"),
    ("org/repo:latest", "org/repo"),
    ("org/repo:Q4_K_M", "org/repo:Q4_K_M"),
    ("hf.co/org/repo", "org/repo"),
    ("hf.co/org/repo:q8_0", "org/repo:q8_0"),
    ("huggingface.co/org/repo:LATEST", "org/repo"),
    ("https://hf.co/org/repo", "org/repo"),
])
def test_ollama_names_map_onto_store_names(name, expected):
    assert store_name(name) == expected


def test_resolve_gives_ollamas_not_found_with_the_pull_commands():
    def missing(name: str):
        raise ModelNotFound(f"model '{name}' has no quant Q2_K (pulled: F32); run: nexa pull {name}")

    with pytest.raises(ModelNotFound) as exc:
        resolve(missing, "hf.co/org/repo:Q2_K")
    assert exc.value.message == ("model 'hf.co/org/repo:Q2_K' not found (pulled: F32), try pulling it first: "
                                 "nexa pull org/repo:Q2_K (or ollama pull hf.co/org/repo:Q2_K)")
    with pytest.raises(ModelNotFound, match="org/repo"):
        resolve(missing, "llama3:8b")
    assert resolve(lambda name: name, "hf.co/org/repo:latest") == "org/repo"


@pytest.mark.parametrize("value, seconds", [
    (None, None), (300, 300.0), (0, 0.0), (-1, -1.0), (-5, -1.0), ("0", 0.0), ("-1", -1.0), ("300", 300.0),
    ("5m", 300.0), ("1h30m", 5400.0), ("1.5h", 5400.0), ("500ms", 0.5), ("-1m", -1.0), ("10s", 10.0),
])
def test_keep_alive_numbers_and_durations_become_seconds(value, seconds):
    assert keep_alive_seconds(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5x", "m", "1h 30m", "nan"])
def test_keep_alive_that_is_no_duration_is_refused(value):
    with pytest.raises(InvalidRequest) as exc:
        keep_alive_seconds(value)
    assert exc.value.param == "keep_alive"


def test_chat_request_maps_options_tools_images_and_think():
    request = ChatRequest.model_validate({
        "model": "hf.co/org/repo:latest",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is this?", "images": ["iVBORw0KGgo="]},
            {"role": "assistant", "content": "", "thinking": "hmm",
             "tool_calls": [{"function": {"name": "look", "arguments": {"x": 1}}}, {"function": {"name": "peek", "arguments": {}}}]},
            {"role": "tool", "tool_name": "peek", "content": "peeked"},
            {"role": "tool", "content": "looked"},
        ],
        "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}],
        "options": {"temperature": 0.5, "num_predict": 7, "repeat_penalty": 1.1, "num_ctx": 8192, "stop": ["\n"],
                    "seed": 3, "top_k": 4, "mirostat": 2},
        "format": "json", "think": True, "keep_alive": "5m",
    })
    chat = chat_request(request)
    assert chat.model == "org/repo" and chat.keep_alive == 300 and chat.enable_think is True
    assert (chat.temperature, chat.max_tokens, chat.repetition_penalty, chat.stop, chat.seed, chat.top_k) == (
        0.5, 7, 1.1, ["\n"], 3, 4)
    assert chat.response_format.type == "json_object"
    user = chat.messages[1]
    assert [p.type for p in user.content] == ["image_url", "text"]
    assert user.content[0].image_url.url == "data:image/png;base64,iVBORw0KGgo="
    assistant = chat.messages[2]
    assert assistant.reasoning_content == "hmm"
    assert [json.loads(c.function.arguments) for c in assistant.tool_calls] == [{"x": 1}, {}]
    look, peek = (c.id for c in assistant.tool_calls)
    assert [m.tool_call_id for m in chat.messages[3:]] == [peek, look]


def test_format_schema_think_levels_and_unlimited_num_predict():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    chat = chat_request(ChatRequest(model="o/r", messages=[{"role": "user", "content": "x"}], format=schema,
                                    think="high", options={"num_predict": -1}))
    assert chat.response_format.json_schema.schema_ == schema and chat.enable_think is True
    assert chat.max_tokens is None


@pytest.mark.parametrize("fields, param", [
    ({"options": {"num_predict": 0}}, "options.num_predict"),
    ({"format": "yaml"}, "format"),
    ({"think": "very"}, "think"),
    ({"messages": [{"role": "assistant", "content": "x", "images": ["AAAA"]}]}, "messages[0].images"),
])
def test_bad_fields_are_named_by_their_ollama_names(fields, param):
    with pytest.raises(InvalidRequest) as exc:
        chat_request(ChatRequest(**{"model": "o/r", "messages": [{"role": "user", "content": "x"}], **fields}))
    assert exc.value.param == param


@pytest.mark.parametrize("option", [{"temperature": 9}, {"repeat_penalty": 99}, {"seed": 2**64}])
def test_options_out_of_range_are_refused_where_they_are_read(option):
    """The ranges are the chat request's, so /openapi.json shows them under `options`."""
    with pytest.raises(ValidationError) as exc:
        ChatRequest(model="o/r", messages=[{"role": "user", "content": "x"}], options=option)
    assert exc.value.errors()[0]["loc"] == ("options", *option)


def test_generate_becomes_a_chat_turn_or_a_raw_completion():
    chat = generate_chat_request(GenerateRequest(model="o/r", prompt="hi", system="sys", stream=False))
    assert [(m.role, m.content) for m in chat.messages] == [("system", "sys"), ("user", "hi")] and not chat.stream
    raw = generate_completion_request(GenerateRequest(model="o/r:latest", prompt="hi", raw=True,
                                                      options={"num_predict": 3, "temperature": 0}))
    assert (raw.model, raw.prompt, raw.max_tokens, raw.temperature, raw.stream) == ("o/r", "hi", 3, 0, True)
    for fields, param in (({"suffix": "end"}, "suffix"), ({"raw": True, "format": "json"}, "format"),
                          ({"context": [1, 2]}, "context")):
        request = GenerateRequest(model="o/r", prompt="hi", **fields)
        with pytest.raises(InvalidRequest) as exc:
            (generate_completion_request if request.raw else generate_chat_request)(request)
        assert exc.value.param == param


ANSWER = {
    "choices": [{"message": {"role": "assistant", "content": None, "reasoning_content": "thought",
                             "tool_calls": [{"id": "c1", "type": "function",
                                             "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
                 "finish_reason": "tool_calls"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14},
    "timings": {"prompt_ms": 2.5, "predicted_ms": 8.0},
}


def test_a_whole_answer_becomes_ollamas_with_durations_in_ns():
    body = Reply("o/r", chat=True).answer(ANSWER, Clock(start=0, leased=1_000), end=50_000_000)
    assert body["message"] == {"role": "assistant", "content": "", "thinking": "thought",
                               "tool_calls": [{"function": {"index": 0, "name": "f", "arguments": {"a": 1}}}]}
    assert (body["done"], body["done_reason"], body["prompt_eval_count"], body["eval_count"]) == (True, "stop", 10, 4)
    assert (body["total_duration"], body["load_duration"], body["prompt_eval_duration"], body["eval_duration"]) == (
        50_000_000, 1_000, 2_500_000, 8_000_000)
    text = Reply("o/r", chat=False).answer({"choices": [{"text": "hi", "finish_reason": "length"}]}, Clock(0, 0), 0)
    assert (text["response"], text["done_reason"]) == ("hi", "length")


def test_arguments_that_are_no_object_are_an_engine_error():
    bad = {**ANSWER, "choices": [{**ANSWER["choices"][0], "message": {
        "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}}]}
    with pytest.raises(EngineRefused):
        Reply("o/r", chat=True).answer(bad, Clock(0, 0), 0)


def test_streamed_chunks_gather_tool_call_fragments_into_one_chunk():
    stream = ChunkStream(Reply("o/r", chat=True), Clock(0, 0))
    out = []
    for chunk in [
        {"choices": [{"delta": {"reasoning_content": "th"}}]},
        {"choices": [{"delta": {"content": "Hi"}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "get", "arguments": "{\"ci"}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "ty\": \"Paris\"}"}}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}, "timings": {"predicted_ms": 1.0}},
    ]:
        out += stream.feed(chunk)
    [final] = stream.finish(end=10)
    assert [c["message"].get("thinking") for c in out] == ["th", None, None]
    assert [c["message"]["content"] for c in out] == ["", "Hi", ""]
    assert out[2]["message"]["tool_calls"] == [{"function": {"index": 0, "name": "get", "arguments": {"city": "Paris"}}}]
    assert not any(c["done"] for c in out)
    assert (final["done"], final["done_reason"], final["eval_count"], final["eval_duration"]) == (True, "stop", 5, 1_000_000)


def test_capabilities_use_ollamas_names():
    facts = Facts("qwen3", "q", 2048, 1, "{% if enable_thinking %}{% endif %}")
    assert ollama_capabilities(["completion", "chat", "tools"], facts, ModelType.llm) == ["completion", "tools", "thinking"]
    assert ollama_capabilities(["embeddings"], Facts("bert", "b", 512, 1, ""), ModelType.embedder) == ["embedding"]
    assert (parameter_size(135_000_000), parameter_size(1_700_000_000), parameter_size(365_440)) == ("135M", "1.7B", "365.4K")


def test_errors_take_ollamas_shape():
    assert error_body(404, {"error": {"message": "gone", "type": "not_found_error"}}) == {"error": "gone"}
