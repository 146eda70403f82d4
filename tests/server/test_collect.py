"""Streamed chunks, as llama.cpp sends them, collected into the answer it sends whole."""

from __future__ import annotations

from nexa.server.collect import Collector

TOP = {"created": 1, "id": "chatcmpl-x", "model": "t", "system_fingerprint": "b0", "object": "chat.completion.chunk"}
USAGE = {"completion_tokens": 3, "prompt_tokens": 9, "total_tokens": 12}


def collected(*chunks: dict) -> dict:
    collector = Collector()
    for chunk in chunks:
        collector.feed(chunk)
    return collector.result()


def chat(delta: dict, finish: str | None = None, **extra) -> dict:
    return {**TOP, "choices": [{"finish_reason": finish, "index": 0, "delta": delta, **extra}]}


def test_parallel_tool_calls_are_assembled_by_index_and_lose_it():
    answer = collected(
        chat({"role": "assistant", "content": None}),
        chat({"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "w", "arguments": '{"ci'}}]}),
        chat({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}),
        chat({"tool_calls": [{"index": 1, "id": "b", "type": "function", "function": {"name": "w", "arguments": "{}"}}]}),
        chat({}, "tool_calls"),
        {**TOP, "choices": [], "usage": USAGE, "timings": {"predicted_n": 3}},
    )
    assert answer["object"] == "chat.completion" and answer["usage"] == USAGE and answer["timings"] == {"predicted_n": 3}
    [choice] = answer["choices"]
    assert choice["finish_reason"] == "tool_calls" and "delta" not in choice
    assert choice["message"] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "w", "arguments": '{"city": "Paris"}'}},
        {"id": "b", "type": "function", "function": {"name": "w", "arguments": "{}"}},
    ]}


def test_reasoning_and_content_concatenate_and_logprobs_extend():
    token = {"id": 1, "token": "x", "logprob": 0.0}
    answer = collected(
        chat({"role": "assistant", "content": None}, logprobs={"content": [token]}),
        chat({"reasoning_content": "Think"}, logprobs={"content": [token]}),
        chat({"reasoning_content": "ing."}),
        chat({"content": "It is "}),
        chat({"content": "sunny."}, logprobs={"content": [token]}),
        chat({}, "stop"),
    )
    [choice] = answer["choices"]
    assert choice["message"] == {"role": "assistant", "content": "It is sunny.", "reasoning_content": "Thinking."}
    assert choice["logprobs"] == {"content": [token, token, token]} and choice["finish_reason"] == "stop"


def test_a_text_completion_keeps_its_shape_and_a_closing_null_changes_nothing():
    top = {**TOP, "object": "text_completion"}
    piece = {"id": 2, "token": "Hi", "logprob": 0.0}
    answer = collected(
        {**top, "choices": [{"text": "Hi", "index": 0, "logprobs": {"content": [piece]}, "finish_reason": None}]},
        {**top, "choices": [{"text": " there", "index": 0, "logprobs": {"content": [piece]}, "finish_reason": None}]},
        {**top, "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}], "usage": USAGE},
    )
    assert answer["object"] == "text_completion" and answer["usage"] == USAGE
    assert answer["choices"] == [
        {"text": "Hi there", "index": 0, "logprobs": {"content": [piece, piece]}, "finish_reason": "length"}]
