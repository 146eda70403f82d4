"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API on the shared chat path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse

from nexa.compat.anthropic import MessageStream, chat_request, message_response, shows_thinking, sse
from nexa.errors import NexaError
from nexa.server.chat import start_chat
from nexa.server.deps import Manager, MediaRules, WorkerClient
from nexa.server.errors import nexa_error_response
from nexa.server.lengths import tokenize
from nexa.server.relay import call, engine_refusal, fetch_json, open_chunks
from nexa.wire.anthropic import CountTokensRequest, MessageResponse, MessagesRequest, TokenCount

router = APIRouter(tags=["anthropic"])

_ROUTE = "/v1/messages"
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"description": "The message, or (`stream`) Anthropic's server-sent events.", "content": {"text/event-stream": {}}},
}


@router.post(_ROUTE, response_model=MessageResponse, responses=_STREAMED)
async def messages(request: MessagesRequest, manager: Manager, client: WorkerClient, media: MediaRules) -> Response:
    """A message, or (`stream`) Anthropic's server-sent events."""
    lease, body = await start_chat(chat_request(request), manager, media, route=_ROUTE)
    if request.stop_sequences:
        body["verbose"] = True  # the engine then names the stop sequence that fired (its `__verbose`)
    thinking = shows_thinking(request)
    if not request.stream:
        answer = await fetch_json(client, lease, "/v1/chat/completions", body)
        return JSONResponse(message_response(answer, request.model, thinking).model_dump())
    chunks = await open_chunks(client, lease, "/v1/chat/completions", body)
    return StreamingResponse(
        _events(chunks, MessageStream(request.model, thinking)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(chunks: AsyncIterator[dict[str, Any]], stream: MessageStream) -> AsyncIterator[bytes]:
    try:
        for event in stream.start():
            yield sse(event)
        async for chunk in chunks:
            for event in stream.feed(chunk):
                yield sse(event)
        events = stream.finish()
    except NexaError as exc:  # the worker died or the engine failed midway
        events = stream.error(json.loads(nexa_error_response(exc, _ROUTE).body))
    finally:
        await chunks.aclose()  # a client that left stops the generation
    for event in events:
        yield sse(event)


@router.post(_ROUTE + "/count_tokens", response_model=TokenCount)
async def count_tokens(request: CountTokensRequest, manager: Manager, client: WorkerClient, media: MediaRules) -> TokenCount:
    """The prompt's tokens as the model's own template and tokenizer make them."""
    lease, body = await start_chat(chat_request(request), manager, media, route=_ROUTE + "/count_tokens")
    try:
        rendered = await call(client, lease, "POST", "/apply-template", body)
        if rendered.status_code >= 400:
            raise engine_refusal(rendered.status_code, rendered.content)
        return TokenCount(input_tokens=len(await tokenize(client, lease, rendered.json()["prompt"])))
    finally:
        lease.release()
