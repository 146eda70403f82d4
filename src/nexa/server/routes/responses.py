"""POST /v1/responses (and /input_tokens), GET and DELETE /v1/responses/{id}: OpenAI's Responses
API on the shared chat path, with its stored responses kept by the router (never the engine)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse, Response as HTTPResponse

from nexa.compat.responses import (
    ResponseStream,
    chat_request,
    dump,
    finished_response,
    hosted_tools,
    input_items,
    new_response,
)
from nexa.server.chat import resolve_for, start_chat
from nexa.server.deps import Manager, MediaRules, Responses, WorkerClient
from nexa.server.lengths import prompt_tokens
from nexa.server.relay import fetch_json, open_chunks
from nexa.server.stream import RESPONSES, respond
from nexa.wire.responses import DeletedResponse, InputTokens, Response, ResponsesRequest

router = APIRouter(tags=["responses"])
log = logging.getLogger("nexa.server")

_ROUTE = "/v1/responses"
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"description": "The response, or (`stream`) Responses' server-sent events.", "content": {"text/event-stream": {}}},
}


@router.post(_ROUTE, response_model=Response, responses=_STREAMED)
async def create(
    request: ResponsesRequest, manager: Manager, client: WorkerClient, media: MediaRules, store: Responses
) -> HTTPResponse:
    """A response, or (`stream`) Responses' server-sent events ending in `response.completed`."""
    history = store.history_of(request.previous_response_id)
    chat = chat_request(request, history[0])
    if hosted := hosted_tools(request):
        log.info("responses: left out hosted tools a local server cannot run: %s", ", ".join(hosted))
    lease, body = await start_chat(chat, manager, media, resolve_for(_ROUTE, manager, chat.model))
    draft = new_response(request)

    def keep(response: Response) -> None:
        if request.store:
            store.put(history, input_items(request), response)

    if not request.stream:
        response = finished_response(draft, await fetch_json(client, lease, "/v1/chat/completions", body))
        keep(response)
        return JSONResponse(dump(response))
    chunks = await open_chunks(client, lease, "/v1/chat/completions", body)
    stream = ResponseStream(draft)
    return respond(chunks, stream, RESPONSES, _ROUTE, finished=lambda: keep(stream.response))


@router.post(_ROUTE + "/input_tokens", response_model=InputTokens)
async def input_tokens(
    request: ResponsesRequest, manager: Manager, client: WorkerClient, media: MediaRules, store: Responses
) -> InputTokens:
    """The input's tokens as the model's own template and tokenizer make them."""
    history = store.history_of(request.previous_response_id)[0]
    chat = chat_request(request, history)
    lease, body = await start_chat(chat, manager, media, resolve_for(_ROUTE + "/input_tokens", manager, chat.model))
    return InputTokens(input_tokens=await prompt_tokens(client, lease, body))


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
