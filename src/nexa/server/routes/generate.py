"""POST /v1/chat/completions and /v1/completions: text generation, streamed or not."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response

from nexa.compat.requests import completion_body
from nexa.server.chat import apply_keep_cache, start_chat
from nexa.server.deps import Manager, MediaRules, WorkerClient
from nexa.server.model_types import require_model_type
from nexa.server.relay import post_json, post_stream
from nexa.wire.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ErrorResponse,
)

router = APIRouter(tags=["generation"])

_ERRORS = {status: {"model": ErrorResponse} for status in (400, 404, 503)}

KeepCache = Annotated[
    str | None,
    Header(
        alias="Nexa-KeepCache",
        description="Nexa: anything but 'true' makes the engine process the whole prompt afresh instead of "
        "reusing its cached prefix (cache_prompt=false). Absent: the prefix cache is used.",
    ),
]


def _responses(model: type, chunk: type | None = None) -> dict:
    ok: dict = {"model": model, "description": "The completion, or server-sent events when `stream` is true."}
    if chunk is not None:
        ok["content"] = {"text/event-stream": {"schema": {"$ref": f"#/components/schemas/{chunk.__name__}"}}}
    return {200: ok, **_ERRORS}


@router.post("/v1/chat/completions", responses=_responses(ChatCompletion, ChatCompletionChunk), response_model=None)
async def chat_completions(
    request: ChatCompletionRequest, manager: Manager, client: WorkerClient, media: MediaRules, keep_cache: KeepCache = None
) -> Response:
    lease, body = await start_chat(request, manager, media, keep_cache=keep_cache)
    relay = post_stream if request.stream else post_json
    return await relay(client, lease, "/v1/chat/completions", body, request.model)


@router.post("/v1/completions", responses=_responses(Completion), response_model=None)
async def completions(
    request: CompletionRequest, manager: Manager, client: WorkerClient, keep_cache: KeepCache = None
) -> Response:
    manifest, quant = manager.resolve(request.model)
    require_model_type(manifest, "/v1/completions")
    body = completion_body(request, manifest, manager.ctx_for(manifest, quant))
    apply_keep_cache(body, keep_cache)
    lease = await manager.acquire(manifest, quant, request.keep_alive)
    relay = post_stream if request.stream else post_json
    return await relay(client, lease, "/v1/completions", body, request.model)
