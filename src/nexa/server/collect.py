"""A streamed answer collected into the non-streamed one.

The router asks the engine for every generation as a stream, because llama.cpp notices a closed
connection only when it writes to it: a non-streamed request whose client left keeps its slot
generating while any other traffic on that engine keeps waking its wait for results (the
engine's 1 s poll of the connection never times out). Streamed, the next token written stops it.
"""

from __future__ import annotations

from typing import Any

# Fields whose streamed pieces are concatenated; every other scalar is sent once and kept.
_TEXT = frozenset({"text", "content", "reasoning_content", "arguments"})
_OBJECTS = {"chat.completion.chunk": "chat.completion"}


def _merge(into: dict[str, Any], delta: dict[str, Any]) -> None:
    for key, value in delta.items():
        old = into.get(key)
        if value is None:
            into.setdefault(key, None)
        elif key in _TEXT and isinstance(value, str):
            into[key] = (old or "") + value
        elif key == "tool_calls" and isinstance(value, list):
            into[key] = _merge_indexed(old or [], value)
        elif isinstance(value, dict):
            into[key] = old if isinstance(old, dict) else {}
            _merge(into[key], value)
        elif isinstance(value, list) and isinstance(old, list):
            old.extend(value)
        else:
            into[key] = value


def _merge_indexed(items: list[dict[str, Any]], deltas: list[Any]) -> list[dict[str, Any]]:
    """Tool-call deltas name their place with `index`; the first of each carries its id and name."""
    for delta in deltas:
        if not isinstance(delta, dict):
            continue
        index = delta.get("index", len(items))
        while len(items) <= index:
            items.append({})
        _merge(items[index], delta)
    return items


class Collector:
    """Feed it the stream's chunks in order; `result()` is the answer as the engine would have sent it whole."""

    def __init__(self) -> None:
        self._top: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}

    def feed(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict):
                _merge(self._choices.setdefault(choice.get("index", 0), {}), choice)
        _merge(self._top, {key: value for key, value in chunk.items() if key != "choices"})

    def result(self) -> dict[str, Any]:
        answer = {**self._top, "choices": [self._finished(self._choices[i]) for i in sorted(self._choices)]}
        answer["object"] = _OBJECTS.get(answer.get("object", ""), answer.get("object"))
        return answer

    @staticmethod
    def _finished(choice: dict[str, Any]) -> dict[str, Any]:
        if "delta" not in choice:
            return choice  # a text completion's choice is already whole
        choice = dict(choice)
        message = choice.pop("delta")
        message["content"] = message.get("content") or ""
        for call in message.get("tool_calls") or ():
            call.pop("index", None)
        choice["message"] = message
        return choice
