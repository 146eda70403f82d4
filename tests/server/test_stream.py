"""The one translated stream (nexa.server.stream): framing, the mid-stream error event in each dialect's
shape, the disconnect rule. The chunk source is faked here; every dialect's real stream runs end to end in
its own tests (test_generate, test_anthropic, test_responses, test_ollama)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from nexa.compat.anthropic import MessageStream
from nexa.compat.translator import Translator
from nexa.errors import WorkerCrashed
from nexa.server.stream import ANTHROPIC, OLLAMA, OPENAI, SSE_HEADERS, respond


class Echo(Translator):
    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        return [chunk]


class Source:
    """Chunks, then (optionally) the worker dies; remembers whether it was closed."""

    def __init__(self, chunks: list[dict[str, Any]], fail: bool = False):
        self.chunks, self.fail, self.closed = chunks, fail, False

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._run()

    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        try:
            for chunk in self.chunks:
                yield chunk
            if self.fail:
                raise WorkerCrashed("the worker for 'o/r:Q' stopped while answering", code="worker_crashed")
        finally:
            self.closed = True


def body(response: Any, take: int | None = None) -> bytes:
    async def read() -> bytes:
        out = b""
        iterator = response.body_iterator
        async for piece in iterator:
            out += piece
            if take is not None and out.count(b"\n") >= take:
                await iterator.aclose()  # the client left
                break
        return out

    return asyncio.run(read())


def test_openai_events_end_with_done_and_close_the_source():
    source = Source([{"a": 1}, {"b": "é"}])
    done: list[bool] = []
    response = respond(aiter(source), Echo(), OPENAI, "/v1/completions", finished=lambda: done.append(True))
    assert body(response) == b'data: {"a":1}\n\ndata: {"b":"\xc3\xa9"}\n\ndata: [DONE]\n\n'
    assert source.closed and done == [True]
    assert response.media_type == "text/event-stream" and response.headers["cache-control"] == SSE_HEADERS["Cache-Control"]


def test_a_failure_midway_is_the_last_event_in_the_dialects_shape_without_done():
    source = Source([{"a": 1}], fail=True)
    done: list[bool] = []
    openai = body(respond(aiter(source), Echo(), OPENAI, "/v1/chat/completions", finished=lambda: done.append(True)))
    last = json.loads(openai.split(b"\n\n")[-2].removeprefix(b"data: "))
    assert last["error"]["type"] == "worker_error" and last["error"]["code"] == "worker_crashed"
    assert b"[DONE]" not in openai and done == [] and source.closed

    ollama = body(respond(aiter(Source([], fail=True)), Echo(), OLLAMA, "/api/chat"))
    assert json.loads(ollama) == {"error": "the worker for 'o/r:Q' stopped while answering"}

    anthropic = body(respond(aiter(Source([], fail=True)), MessageStream("o/r"), ANTHROPIC, "/v1/messages"))
    name, data = anthropic.split(b"\n\n")[-2].split(b"\n")
    assert name == b"event: error" and json.loads(data.removeprefix(b"data: "))["error"]["type"] == "overloaded_error"


def test_a_client_that_leaves_closes_the_source():
    source = Source([{"n": i} for i in range(100)])
    assert body(respond(aiter(source), Echo(), OLLAMA, "/api/chat"), take=3).count(b"\n") == 3
    assert source.closed
