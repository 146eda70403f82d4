"""OpenAI's (legacy) text completions from llama.cpp's answers, where the engine's differ.

llama.cpp's /v1/completions ids start with `chatcmpl-`, its `logprobs` come in the chat shape
(`{content: [{token, logprob, top_logprobs: [...]}]}`), and with `include_usage` it puts the usage
on the last text chunk. OpenAI's completions have `cmpl-` ids, logprobs as parallel lists
(`tokens`, `token_logprobs`, `top_logprobs` as token → logprob maps, `text_offset`) and the usage
in a last chunk of its own with `choices: []`.
"""

from __future__ import annotations

from typing import Any

from nexa.compat.translator import Translator

_ID_PREFIX = "cmpl-"


def completion_id(engine_id: str) -> str:
    """`cmpl-<the engine's random part>`: stable across a stream's chunks."""
    return engine_id if engine_id.startswith(_ID_PREFIX) else _ID_PREFIX + engine_id.removeprefix("chatcmpl-")


def legacy_logprobs(logprobs: dict[str, Any] | None, top_n: int, offset: int = 0) -> dict[str, Any] | None:
    """The chat-shaped `logprobs` in the completions shape. `offset` is where this piece starts in the
    generated text (text_offset counts characters of the completion, prompt excluded)."""
    if not logprobs or logprobs.get("content") is None:
        return None
    tokens, token_logprobs, top_logprobs, text_offset = [], [], [], []
    for entry in logprobs["content"]:
        token = entry.get("token", "")
        tokens.append(token)
        token_logprobs.append(entry.get("logprob"))
        top: dict[str, float] = {}
        for alternative in (entry.get("top_logprobs") or [])[:top_n]:
            top.setdefault(alternative.get("token", ""), alternative.get("logprob"))
        top_logprobs.append(top)
        text_offset.append(offset)
        offset += len(token)
    return {
        "tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs, "text_offset": text_offset,
    }


def _choice(choice: dict[str, Any], top_n: int | None, offset: int) -> dict[str, Any]:
    shaped = {**choice}
    shaped["logprobs"] = None if top_n is None else legacy_logprobs(choice.get("logprobs"), top_n, offset)
    return shaped


def completion_reply(answer: dict[str, Any], model: str, top_n: int | None) -> dict[str, Any]:
    """A non-streamed answer; `top_n` is the request's `logprobs` (None: none asked)."""
    return {
        **answer,
        "id": completion_id(str(answer.get("id", ""))),
        "model": model,
        "choices": [_choice(c, top_n, 0) for c in answer.get("choices") or []],
    }


class CompletionStream(Translator):
    """Engine chunks in, OpenAI completion chunks out. The engine is always asked for usage; the
    client gets it, summed over its prompts, in one last chunk when it asked (`include_usage`)."""

    def __init__(self, model: str, top_n: int | None, include_usage: bool):
        self._model, self._top_n, self._include_usage = model, top_n, include_usage
        self._offsets: dict[int, int] = {}  # choice index -> characters of text sent so far
        self._usage: dict[str, int] = {}
        self._last: dict[str, Any] = {}

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunk(s) to send for one engine chunk: its usage is kept back, a usage-only chunk dropped."""
        self._add_usage(chunk.pop("usage", None))
        self._last = {"id": completion_id(str(chunk.get("id", ""))), "created": chunk.get("created")}
        if not chunk.get("choices"):
            return []
        choices = []
        for choice in chunk["choices"]:
            index = int(choice.get("index", 0))
            offset = self._offsets.get(index, 0)
            choices.append(_choice(choice, self._top_n, offset))
            self._offsets[index] = offset + len(choice.get("text") or "")
        return [{**chunk, **self._last, "model": self._model, "choices": choices}]

    def finish(self) -> list[dict[str, Any]]:
        """The closing usage chunk, when the client asked for it."""
        if not self._include_usage or not self._usage:
            return []
        return [{**self._last, "object": "text_completion", "model": self._model, "choices": [], "usage": self._usage}]

    def _add_usage(self, usage: dict[str, Any] | None) -> None:
        """Each prompt's last chunk carries that prompt's usage: the totals are their sums."""
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            if usage and isinstance(usage.get(key), int):
                self._usage[key] = self._usage.get(key, 0) + usage[key]
