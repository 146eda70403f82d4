"""POST /v1/responses (and /input_tokens), GET and DELETE /v1/responses/{id}: OpenAI's Responses
API on the shared chat path, with its stored responses kept by the router (never the engine)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response as HTTPResponse, StreamingResponse

from nexa.compat.responses import (
    ResponseStream,
    chat_request,
    dump,
    finished_response,
    hosted_tools,
    input_items,
    new_response,
    sse,
)
from nexa.errors import NexaError
from nexa.server.chat import start_chat
from nexa.server.deps import Manager, MediaRules, Responses, WorkerClient
from nexa.server.errors import nexa_error_response
from nexa.server.lengths import tokenize
from nexa.server.relay import call, engine_refusal, fetch_json, open_chunks
from nexa.wire.responses import DeletedResponse, InputTokens, Response, ResponsesRequest

router = APIRouter(tags=["responses"])
log = logging.getLogger("nexa.server")

_ROUTE = "/v1/responses"
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"description": "The response, or (`stream`) Responses' server-sent events.", "content": {"text/event-stream": {}}},
}


@router.post(_ROUTE, response_model=Response, responses=_STREAMED)
async def create(
    request: ResponsesRequest, http: Request, manager: Manager, client: WorkerClient, media: MediaRules, store: Responses
) -> HTTPResponse:
    """A response, or (`stream`) Responses' server-sent events ending in `response.completed`."""
    history = store.history(request.previous_response_id) if request.previous_response_id else []
    items = [*history, *input_items(request)]
    chat = chat_request(request, history)
    if hosted := hosted_tools(request):
        log.info("responses: left out hosted tools a local server cannot run: %s", ", ".join(hosted))
    lease, body = await start_chat(chat, manager, media, route=_ROUTE)
    draft = new_response(request)
    size = int(http.headers.get("content-length") or 0)

    def keep(response: Response) -> None:
        if request.store:
            store.put(items, response, size)

    if not request.stream:
        response = finished_response(draft, await fetch_json(client, lease, "/v1/chat/completions", body))
        keep(response)
        return JSONResponse(dump(response))
    chunks = await open_chunks(client, lease, "/v1/chat/completions", body)
    return StreamingResponse(
        _events(chunks, ResponseStream(draft), keep),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    chunks: AsyncIterator[dict[str, Any]], stream: ResponseStream, keep: Callable[[Response], None]
) -> AsyncIterator[bytes]:
    try:
        for event in stream.start():
            yield sse(event)
        async for chunk in chunks:
            for event in stream.feed(chunk):
                yield sse(event)
        events = stream.finish()
        keep(stream.response)
    except NexaError as exc:  # the worker died or the engine failed midway
        error = json.loads(nexa_error_response(exc, _ROUTE).body)["error"]
        events = stream.error(error["message"], error.get("code"))
    finally:
        await chunks.aclose()  # a client that left stops the generation
    for event in events:
        yield sse(event)


@router.post(_ROUTE + "/input_tokens", response_model=InputTokens)
async def input_tokens(
    request: ResponsesRequest, manager: Manager, client: WorkerClient, media: MediaRules, store: Responses
) -> InputTokens:
    """The input's tokens as the model's own template and tokenizer make them."""
    history = store.history(request.previous_response_id) if request.previous_response_id else []
    lease, body = await start_chat(chat_request(request, history), manager, media, route=_ROUTE + "/input_tokens")
    try:
        rendered = await call(client, lease, "POST", "/apply-template", body)
        if rendered.status_code >= 400:
            raise engine_refusal(rendered.status_code, rendered.content)
        return InputTokens(input_tokens=len(await tokenize(client, lease, rendered.json()["prompt"])))
    finally:
        lease.release()


def _not_stored(response_id: str) -> HTTPException:
    return HTTPException(404, f"no stored response '{response_id}' (unknown, sent with store=false, or dropped "
                              "from the server's bounded store)")


@router.get(_ROUTE + "/{response_id}", response_model=Response)
async def retrieve(response_id: str, store: Responses) -> JSONResponse:
    """A stored response, as it was returned."""
    response = store.get(response_id)
    if response is None:
        raise _not_stored(response_id)
    return JSONResponse(dump(response))


@router.delete(_ROUTE + "/{response_id}", response_model=DeletedResponse)
async def delete(response_id: str, store: Responses) -> DeletedResponse:
    if not store.delete(response_id):
        raise _not_stored(response_id)
    return DeletedResponse(id=response_id)
