"""One translated stream: engine chunks in, a dialect's translator (nexa.compat.translator) in the
middle, the dialect's framing out (server-sent events or NDJSON).

Every streamed answer of every dialect goes through `respond`, so its rules are written once here:
an error midway (the worker died, the engine failed) ends the stream with the dialect's own error
event, built as data from the error; a client that leaves closes the chunk iterator, which closes
the engine's connection and so stops the generation. Where the client speaks the engine's own
dialect the chunks are the engine's lines and the translator passes their bytes on untouched
(nexa.server.relay); where it translates, each chunk is parsed once, by the relay.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import StreamingResponse

from nexa.compat.translator import Translator
from nexa.errors import NexaError
from nexa.server.errors import nexa_error_body

log = logging.getLogger("nexa.stream")

# Every server-sent event stream's headers: no cache may hold it, no proxy buffer it.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def sse_data(event: dict[str, Any]) -> bytes:
    """A `data:`-only event, as OpenAI's chat and completions stream."""
    return b"data: " + _json(event) + b"\n\n"


def sse_named(event: tuple[str, dict[str, Any]]) -> bytes:
    """An (event name, data) pair as an event with its `event:` line, as Anthropic streams."""
    name, data = event
    return b"event: " + name.encode() + b"\ndata: " + _json(data) + b"\n\n"


def sse_typed(event: dict[str, Any]) -> bytes:
    """An event whose `event:` line is its own `type`, as OpenAI streams Responses."""
    return sse_named((event["type"], event))


def ndjson(event: dict[str, Any]) -> bytes:
    """One JSON object a line, as Ollama streams."""
    return _json(event) + b"\n"


def _as_is(event: bytes) -> bytes:
    return event


@dataclass(frozen=True)
class Framing:
    """How a dialect writes its events on the wire: the content type, one event's bytes, and what
    ends a stream that finished (not one that failed)."""

    media_type: str
    encode: Callable[[Any], bytes]
    end: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: dict(SSE_HEADERS))


OPENAI = Framing("text/event-stream", sse_data, end=b"data: [DONE]\n\n")
ANTHROPIC = Framing("text/event-stream", sse_named)
RESPONSES = Framing("text/event-stream", sse_typed)
OLLAMA = Framing("application/x-ndjson", ndjson, headers={})
ENGINE = Framing("text/event-stream", _as_is)  # the engine's own events, already framed (its [DONE] included)


def event_stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    """Server-sent events that need no translation (an event feed of the router's own)."""
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


def respond(
    chunks: AsyncIterator[Any],
    translator: Translator,
    framing: Framing,
    route: str,
    finished: Callable[[], None] | None = None,
) -> StreamingResponse:
    """The streamed answer: `translator`'s events for `chunks`, framed. `route` picks the error's shape
    (nexa.server.errors.DIALECTS); `finished` runs once a stream has finished well (not on failure)."""
    return StreamingResponse(_frames(chunks, translator, framing, route, finished),
                             media_type=framing.media_type, headers=framing.headers)


async def _frames(
    chunks: AsyncIterator[Any],
    translator: Translator,
    framing: Framing,
    route: str,
    finished: Callable[[], None] | None,
) -> AsyncIterator[bytes]:
    encode = framing.encode
    async with aclosing(chunks):  # type: ignore[type-var]  # a client that leaves closes it: the generation stops
        try:
            for event in translator.start():
                yield encode(event)
            async for chunk in chunks:
                for event in translator.feed(chunk):
                    yield encode(event)
            closing = translator.finish()
            if finished is not None:
                finished()
        except NexaError as exc:  # the worker died or the engine failed midway
            log.warning("%s stream ended early: %s", route, exc.message)
            for event in translator.fail(nexa_error_body(exc, route)):
                yield encode(event)
            return
    for event in closing:
        yield encode(event)
    if framing.end:
        yield framing.end
