"""/openapi.json tells the requests nexa refuses from those it takes, rule by rule: each body below that nexa
answers with a 400 is invalid by the document, and bodies shaped as the real clients send them are valid.
(test_openapi.py runs schemathesis against a real server; this names each rule and each client's shape.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import jsonschema
import ollama
import openai
import pytest

from nexa.config import Settings
from nexa.runtime import ModelManager
from nexa.server.app import create_app
from nexa.store import Store

M = "org/model"
USER = {"role": "user", "content": "hi"}
FUNCTION = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
IMAGE = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root: Path = tmp_path_factory.mktemp("openapi-rules")
    return create_app(ModelManager(Store(root), Settings(datadir=root))).openapi()


def _valid(document: dict[str, Any], path: str, body: dict[str, Any]) -> bool:
    schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator({**schema, "components": document["components"]})
    return validator.is_valid(body)


REFUSED = {
    "a model name with a quant no name has": ("/v1/chat/completions", {"model": "org/model:Q4 K", "messages": [USER]}),
    "a seed past 2**53": ("/v1/completions", {"model": M, "prompt": "x", "seed": 2**60}),
    "echo": ("/v1/completions", {"model": M, "prompt": "x", "echo": True}),
    "tools and functions both": ("/v1/chat/completions", {
        "model": M, "messages": [USER], "tools": [{"type": "function", "function": FUNCTION}], "functions": [FUNCTION]}),
    "tool_choice required without tools": ("/v1/chat/completions", {
        "model": M, "messages": [USER], "tool_choice": "required"}),
    "17 images over two messages": ("/v1/chat/completions", {"model": M, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": IMAGE}}] * n} for n in (9, 8)]}),
    "an assistant turn that says nothing": ("/v1/chat/completions", {"model": M, "messages": [
        USER, {"role": "assistant", "content": None}]}),
    "a user turn without content": ("/v1/chat/completions", {"model": M, "messages": [{"role": "user"}]}),
    "an empty Ollama embed input": ("/api/embed", {"model": M, "input": ["a", ""]}),
    "dimensions": ("/v1/embeddings", {"model": M, "input": "x", "dimensions": 8}),
    "an Ollama system message with images": ("/api/chat", {"model": M, "messages": [
        {"role": "system", "content": "x", "images": ["AAAA"]}, USER]}),
    "an Ollama keep_alive that is no duration": ("/api/chat", {"model": M, "messages": [USER], "keep_alive": "5 min"}),
    "an Ollama think level it does not know": ("/api/chat", {"model": M, "messages": [USER], "think": "very"}),
    "an Ollama format that is neither json nor a schema": ("/api/chat", {"model": M, "messages": [USER], "format": "yaml"}),
    "an Ollama temperature past 2": ("/api/chat", {"model": M, "messages": [USER], "options": {"temperature": 9}}),
    "num_predict 0": ("/api/generate", {"model": M, "prompt": "x", "options": {"num_predict": 0}}),
    "raw with a system prompt": ("/api/generate", {"model": M, "prompt": "x", "raw": True, "system": "be brief"}),
    "a generate suffix": ("/api/generate", {"model": M, "prompt": "x", "suffix": "y"}),
    "an Ollama embed with dimensions": ("/api/embed", {"model": M, "input": "x", "dimensions": 8}),
    "a tool_use block in a user turn": ("/v1/messages", {"model": M, "max_tokens": 9, "messages": [
        {"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]}),
    "an image inside a tool_result": ("/v1/messages", {"model": M, "max_tokens": 9, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://x.example/a.png"}}]}]}]}),
    "a user turn with no blocks": ("/v1/messages/count_tokens", {"model": M, "messages": [{"role": "user", "content": []}]}),
    "tool_choice any without tools": ("/v1/messages", {"model": M, "max_tokens": 9, "messages": [USER],
                                                       "tool_choice": {"type": "any"}}),
    "a background response": ("/v1/responses", {"model": M, "input": "x", "background": True}),
    "an input image by file id": ("/v1/responses", {"model": M, "input": [
        {"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}),
    "reasoning alone": ("/v1/responses", {"model": M, "input": [{"type": "reasoning", "summary": []}]}),
    "a tool type nexa does not know": ("/v1/responses", {"model": M, "input": "x", "tools": [{"type": "frobnicate"}]}),
    "a hosted tool forced": ("/v1/responses", {"model": M, "input": "x", "tool_choice": {"type": "web_search"}}),
    "a namespaced function too long to name": ("/v1/responses", {"model": M, "input": "x", "tools": [
        {"type": "namespace", "name": "mcp", "tools": [{"type": "function", "name": "f" * 200}]}]}),
}


@pytest.mark.parametrize("rule", list(REFUSED))
def test_what_nexa_refuses_is_invalid_by_the_document(document, rule):
    path, body = REFUSED[rule]
    assert not _valid(document, path, body)


TAKEN = {
    # The openai SDK: chat with an image part, tools and a forced tool; the deprecated functions form.
    "openai chat": ("/v1/chat/completions", {
        "model": M, "stream": True, "stream_options": {"include_usage": True}, "seed": 7, "temperature": 0.2,
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "what is it?"},
                                                  {"type": "image_url", "image_url": {"url": IMAGE}}]},
                     {"role": "assistant", "content": None, "tool_calls": [
                         {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
        "tools": [{"type": "function", "function": FUNCTION}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
    "openai functions": ("/v1/chat/completions", {
        "model": M, "messages": [USER], "functions": [FUNCTION], "function_call": {"name": "get_weather"}}),
    "one image in each of three turns": ("/v1/chat/completions", {"model": M, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": IMAGE}}]}] * 3}),
    "openai embeddings": ("/v1/embeddings", {"model": M, "input": ["a", "b"], "encoding_format": "base64"}),
    # The ollama SDK and LangChain's ChatOllama.
    "ollama chat": ("/api/chat", {
        "model": "hf.co/" + M + ":latest", "stream": False, "keep_alive": "5m", "think": "high", "format": "json",
        "options": {"temperature": 0.7, "num_predict": -1, "num_ctx": 8192, "seed": 42, "mirostat": 0},
        "messages": [USER | {"images": ["AAAA"]}, {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                     {"role": "tool", "content": "sunny", "tool_name": "get_weather"}],
        "tools": [{"type": "function", "function": FUNCTION}]}),
    "ollama generate": ("/api/generate", {"model": M, "prompt": "x", "raw": True, "keep_alive": -1, "stream": True}),
    "ollama load": ("/api/generate", {"model": M, "keep_alive": "1h30m"}),
    "ollama embed": ("/api/embed", {"model": M, "input": ["a"], "truncate": True, "keep_alive": 300}),
    # Claude Code: system blocks, a system turn, thinking and tool use, tool results.
    "claude code": ("/v1/messages", {
        "model": M, "max_tokens": 32000, "stream": True, "thinking": {"type": "enabled", "budget_tokens": 4000},
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2"}, {"type": "text", "text": "sys"}],
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}}], "tool_choice": {"type": "auto"},
        "metadata": {"user_id": "u"},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "run ls"}]},
                     {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                                       {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                   "content": [{"type": "text", "text": "a.txt"}]}]},
                     {"role": "system", "content": "note"}]}),
    # Codex: namespace tools, reasoning and calls in the history, no store.
    "codex": ("/v1/responses", {
        "model": M, "instructions": "sys", "store": False, "stream": True, "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"}, "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "k", "tool_choice": "auto",
        "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}},
                  {"type": "namespace", "name": "mcp__fs", "tools": [{"type": "function", "name": "read"}]},
                  {"type": "custom", "name": "apply_patch"}, {"type": "web_search"}],
        "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "env"}]},
                  {"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                               {"type": "input_image", "image_url": IMAGE}]},
                  {"type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}], "encrypted_content": None},
                  {"type": "function_call", "call_id": "c", "name": "shell", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": "c", "output": "ok"}]}),
}


@pytest.mark.parametrize("client", list(TAKEN))
def test_what_real_clients_send_is_valid_by_the_document(document, client):
    path, body = TAKEN[client]
    assert _valid(document, path, body)


def test_a_model_name_in_a_query_has_the_name_grammar(document):
    for path in ("/props", "/slots"):
        (model,) = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "model"]
        schema = {**model["schema"], "components": document["components"]}
        assert jsonschema.Draft202012Validator(schema).is_valid("org/model:Q4_K_M")
        assert not jsonschema.Draft202012Validator(schema).is_valid("0" * 100)


class _Sent(Exception):
    """Raised by the transport once it has the body: the SDK's request, not an answer, is what is checked."""


def _sent_by(call: Any) -> dict[str, Any]:
    """The JSON body an SDK call sends through the transport it is given, which keeps it and goes no further.
    (The anthropic SDK speaks httpx2, the others httpx: each gets its own package's transport.)"""
    bodies: list[dict[str, Any]] = []

    def keep(request: Any) -> Any:
        bodies.append(json.loads(request.content))
        raise _Sent

    with pytest.raises(Exception):
        call(lambda http: http.MockTransport(keep))
    return bodies[0]


def _openai(transport: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://nexa/v1", api_key="-", max_retries=0,
                         http_client=httpx.Client(transport=transport(httpx)))


def _ollama(transport: Any) -> ollama.Client:
    return ollama.Client(host="http://nexa", transport=transport(httpx))


SDK_CALLS = {
    "openai chat": ("/v1/chat/completions", lambda t: _openai(t).chat.completions.create(
        model=M, messages=[{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                        {"type": "image_url", "image_url": {"url": IMAGE}}]}],
        tools=[{"type": "function", "function": FUNCTION}], tool_choice="required", seed=3, stream=True,
        stream_options={"include_usage": True}, max_completion_tokens=50, reasoning_effort="low")),
    "openai responses": ("/v1/responses", lambda t: _openai(t).responses.create(
        model=M, input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                                     {"type": "input_image", "image_url": IMAGE, "detail": "auto"}]}],
        instructions="sys", tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False}],
        store=False, reasoning={"effort": "low"}, text={"format": {"type": "json_object"}})),
    "openai embeddings": ("/v1/embeddings", lambda t: _openai(t).embeddings.create(model=M, input=["a", "b"])),
    "anthropic messages": ("/v1/messages", lambda t: anthropic.Anthropic(
        base_url="http://nexa", api_key="-", max_retries=0,
        http_client=httpx2.Client(transport=t(httpx2))).messages.create(
        model=M, max_tokens=64, system="sys", thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[{"name": "f", "input_schema": {"type": "object"}}], tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "hi"},
                  {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}])),
    "ollama chat": ("/api/chat", lambda t: _ollama(t).chat(
        model=M, messages=[{"role": "user", "content": "hi", "images": [b"\x89PNG"]}], think=True, keep_alive="5m",
        format="json", options={"temperature": 0, "num_predict": 8, "seed": 1, "num_ctx": 4096},
        tools=[{"type": "function", "function": FUNCTION}])),
    "ollama generate": ("/api/generate", lambda t: _ollama(t).generate(
        model=M, prompt="hi", system="sys", keep_alive=0, options={"top_k": 5})),
    "ollama embed": ("/api/embed", lambda t: _ollama(t).embed(
        model=M, input=["a"], truncate=True, keep_alive=-1)),
}


@pytest.mark.parametrize("call", list(SDK_CALLS))
def test_what_the_sdks_send_is_valid_by_the_document(document, call):
    path, sdk_call = SDK_CALLS[call]
    body = _sent_by(sdk_call)
    assert _valid(document, path, body), body
