"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API on the shared chat path."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from nexa.compat.anthropic import MessageStream, chat_request, message_response, shows_thinking
from nexa.server.chat import resolve_for, start_chat
from nexa.server.deps import Manager, MediaRules, WorkerClient
from nexa.server.lengths import prompt_tokens
from nexa.server.relay import fetch_json, open_chunks
from nexa.server.stream import ANTHROPIC, respond
from nexa.wire.anthropic import CountTokensRequest, MessageResponse, MessagesRequest, TokenCount

router = APIRouter(tags=["anthropic"])

_ROUTE = "/v1/messages"
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"description": "The message, or (`stream`) Anthropic's server-sent events.", "content": {"text/event-stream": {}}},
}


@router.post(_ROUTE, response_model=MessageResponse, responses=_STREAMED)
async def messages(request: MessagesRequest, manager: Manager, client: WorkerClient, media: MediaRules) -> Response:
    """A message, or (`stream`) Anthropic's server-sent events."""
    chat = chat_request(request)
    lease, body = await start_chat(chat, manager, media, resolve_for(_ROUTE, manager, chat.model))
    if request.stop_sequences:
        body["verbose"] = True  # the engine then names the stop sequence that fired (its `__verbose`)
    thinking = shows_thinking(request)
    if not request.stream:
        answer = await fetch_json(client, lease, "/v1/chat/completions", body)
        return JSONResponse(message_response(answer, request.model, thinking).model_dump())
    chunks = await open_chunks(client, lease, "/v1/chat/completions", body)
    return respond(chunks, MessageStream(request.model, thinking), ANTHROPIC, _ROUTE)


@router.post(_ROUTE + "/count_tokens", response_model=TokenCount)
async def count_tokens(request: CountTokensRequest, manager: Manager, client: WorkerClient, media: MediaRules) -> TokenCount:
    """The prompt's tokens as the model's own template and tokenizer make them."""
    chat = chat_request(request)
    lease, body = await start_chat(chat, manager, media, resolve_for(_ROUTE + "/count_tokens", manager, chat.model))
    return TokenCount(input_tokens=await prompt_tokens(client, lease, body))
