"""OpenAI's legacy forms: deprecated functions as tools, completions in OpenAI's shape, tool-support detection."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nexa.compat.completions import CompletionStream, completion_id, completion_reply, legacy_logprobs
from nexa.compat.tools import as_function_call, upgrade_functions
from nexa.store.facts import capabilities, supports_tools, template_reads_tools
from nexa.errors import InvalidRequest
from nexa.store import FileEntry, Manifest, ModelType, QuantEntry
from nexa.wire.openai import ChatCompletionRequest

WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def request(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "org/m", "messages": [{"role": "user", "content": "hi"}], **fields})


# ---------------------------------------------------------------- tool support


SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are SmolLM<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_a_template_supports_tools_when_its_code_reads_the_variable():
    assert not template_reads_tools(SMOLLM2)
    assert template_reads_tools("{%- if tools %}{{ tools | tojson }}{% endif %}")
    assert template_reads_tools("{%- if not tools is defined %}{% set tools = none %}{% endif %}")
    # the word in literal text or in a quoted string is not the variable
    assert not template_reads_tools("tools: {{ 'no <tools> here' }}{{ custom_tools }}")
    assert template_reads_tools("{{ never closed {% if x %}{{% if tools %}ok{% endif %}")


def test_reading_a_hostile_template_takes_one_pass():
    """Openers that never close: a lazy regex scans the rest of the template for each (5 s for 20,000 of them,
    minutes for 100,000)."""
    hostile = "{{ " * 100_000 + "{% if tools %}"
    started = time.process_time()
    assert template_reads_tools(hostile)
    assert time.process_time() - started < 2


def test_supports_tools_reads_each_models_own_template(tiny_dir: Path):
    def manifest(file: str, kind: ModelType = ModelType.llm) -> Manifest:
        entry = FileEntry(name=file, size=1, sha256="0", path=str(tiny_dir / file))
        return Manifest(name="org/m", model_type=kind, source="test", quants={"F32": QuantEntry(files=[entry])})

    assert supports_tools(manifest("qwen3-script-tool.gguf"), tiny_dir)
    assert capabilities(manifest("qwen3-script-text.gguf"), tiny_dir) == ["completion", "chat", "tools"]
    assert not supports_tools(manifest("bert-embed.gguf", ModelType.embedder), tiny_dir)
    assert capabilities(manifest("bert-embed.gguf", ModelType.embedder), tiny_dir) == ["embeddings"]
    assert not supports_tools(manifest("missing.gguf"), tiny_dir)


# ---------------------------------------------------------------- deprecated functions


def test_functions_and_function_call_become_tools_and_tool_choice():
    for legacy, choice in (("auto", "auto"), ("none", "none"), ({"name": "get_weather"}, "named")):
        upgraded = upgrade_functions(request(functions=[WEATHER], function_call=legacy))
        assert upgraded.functions is None and upgraded.function_call is None
        assert [t.model_dump(exclude_none=True) for t in upgraded.tools] == [{"type": "function", "function": WEATHER}]
        got = upgraded.tool_choice if isinstance(upgraded.tool_choice, str) else "named"
        assert got == choice
        if choice == "named":
            assert upgraded.tool_choice.function.name == "get_weather"


def test_function_turns_of_the_history_become_tool_turns():
    history = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"role": "function", "name": "get_weather", "content": "sunny"},
    ]
    upgraded = upgrade_functions(request(messages=history, functions=[WEATHER]))
    assistant, result = upgraded.messages[1], upgraded.messages[2]
    (call,) = assistant.tool_calls
    assert assistant.function_call is None and call.function.name == "get_weather"
    assert (result.role, result.tool_call_id, result.content) == ("tool", call.id, "sunny")


def test_mixing_legacy_and_current_forms_is_refused():
    tool = {"type": "function", "function": WEATHER}
    with pytest.raises(InvalidRequest) as caught:
        upgrade_functions(request(functions=[WEATHER], tools=[tool]))
    assert caught.value.param == "functions"
    with pytest.raises(InvalidRequest) as caught:
        upgrade_functions(request(function_call={"name": "get_weather"}))
    assert caught.value.param == "function_call"


def test_a_plain_request_is_left_alone():
    plain = request()
    assert upgrade_functions(plain) is plain


def test_tool_calls_come_back_as_a_function_call():
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [call]}, "finish_reason": "tool_calls"}]}
    choice = as_function_call(answer)["choices"][0]
    assert choice["message"] == {"role": "assistant", "function_call": {"name": "get_weather", "arguments": "{}"}}
    assert choice["finish_reason"] == "function_call"
    delta = {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"name": None, "arguments": "{"}}]}}]}
    assert as_function_call(delta)["choices"][0]["delta"] == {"function_call": {"arguments": "{"}}


# ---------------------------------------------------------------- completions


ENGINE_LOGPROBS = {
    "content": [
        {"token": "Hello", "logprob": -0.1, "top_logprobs": [{"token": "Hello", "logprob": -0.1}, {"token": "Hi", "logprob": -2.5}]},
        {"token": " world", "logprob": -0.2, "top_logprobs": [{"token": " world", "logprob": -0.2}, {"token": "!", "logprob": -3.0}]},
    ]
}


def test_ids_start_with_cmpl():
    assert completion_id("chatcmpl-abc") == "cmpl-abc"
    assert completion_id("cmpl-abc") == "cmpl-abc"


def test_logprobs_come_back_in_the_legacy_shape():
    assert legacy_logprobs(ENGINE_LOGPROBS, 1, offset=3) == {
        "tokens": ["Hello", " world"],
        "token_logprobs": [-0.1, -0.2],
        "top_logprobs": [{"Hello": -0.1}, {" world": -0.2}],
        "text_offset": [3, 8],
    }
    assert legacy_logprobs(None, 2) is None


def test_a_reply_gets_the_clients_model_and_no_logprobs_unless_asked():
    answer = {"id": "chatcmpl-x", "model": "alias", "choices": [{"index": 0, "text": "Hello world", "logprobs": ENGINE_LOGPROBS}]}
    reply = completion_reply(answer, "org/m", None)
    assert (reply["id"], reply["model"], reply["choices"][0]["logprobs"]) == ("cmpl-x", "org/m", None)
    assert completion_reply(answer, "org/m", 2)["choices"][0]["logprobs"]["top_logprobs"][0] == {"Hello": -0.1, "Hi": -2.5}


def test_a_stream_keeps_text_offsets_and_ends_with_summed_usage():
    stream = CompletionStream("org/m", 0, include_usage=True)
    piece = lambda text, index, **more: {  # noqa: E731
        "id": "chatcmpl-s", "object": "text_completion", "created": 1,
        "choices": [{"index": index, "text": text, "logprobs": {"content": [{"token": text, "logprob": 0.0}]}, **more}],
    }
    usage = {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    out = stream.feed(piece("ab", 0)) + stream.feed(piece("ab", 1)) + stream.feed(piece("c", 0))
    out += stream.feed({**piece("", 0, finish_reason="length"), "usage": usage})
    out += stream.feed({**piece("", 1, finish_reason="length"), "usage": usage})
    last = stream.finish()
    assert all(c["id"] == "cmpl-s" and c["model"] == "org/m" and "usage" not in c for c in out)
    assert [c["choices"][0]["logprobs"]["text_offset"] for c in out[:3]] == [[0], [0], [2]]
    assert last == [{"id": "cmpl-s", "created": 1, "object": "text_completion", "model": "org/m", "choices": [],
                     "usage": {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}}]
    assert CompletionStream("org/m", None, include_usage=False).finish() == []
