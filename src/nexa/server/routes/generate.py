"""POST /v1/chat/completions and /v1/completions: text generation, streamed or not."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response

from nexa.compat.completions import CompletionStream, completion_reply
from nexa.compat.tools import FunctionCallStream, as_function_call, upgrade_functions, uses_functions
from nexa.server.chat import resolve_for, start_chat, start_completion
from nexa.server.deps import Manager, MediaRules, WorkerClient
from nexa.server.relay import fetch_json, open_chunks, post_json, post_stream
from nexa.server.stream import OPENAI, respond
from nexa.wire.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
)

router = APIRouter(tags=["generation"])

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
    return {200: ok}


@router.post("/v1/chat/completions", responses=_responses(ChatCompletion, ChatCompletionChunk), response_model=None)
async def chat_completions(
    request: ChatCompletionRequest, manager: Manager, client: WorkerClient, media: MediaRules, keep_cache: KeepCache = None
) -> Response:
    legacy = uses_functions(request)
    request = upgrade_functions(request)
    target = resolve_for("/v1/chat/completions", manager, request.model)
    lease, body = await start_chat(request, manager, media, target, keep_cache)
    if not legacy:  # the fast path: the engine's answer as it is
        relay = post_stream if request.stream else post_json
        return await relay(client, lease, "/v1/chat/completions", body, request.model)
    # The deprecated functions form: the reply carries `function_call` instead of tool calls.
    if not request.stream:
        answer = await fetch_json(client, lease, "/v1/chat/completions", body)
        return JSONResponse(as_function_call({**answer, "model": request.model}))
    chunks = await open_chunks(client, lease, "/v1/chat/completions", body)
    return respond(chunks, FunctionCallStream(request.model, _wants_usage(request)), OPENAI, "/v1/chat/completions")


@router.post("/v1/completions", responses=_responses(Completion), response_model=None)
async def completions(
    request: CompletionRequest, manager: Manager, client: WorkerClient, keep_cache: KeepCache = None
) -> Response:
    target = resolve_for("/v1/completions", manager, request.model)
    lease, body = await start_completion(request, manager, target, keep_cache)
    if not request.stream:
        answer = await fetch_json(client, lease, "/v1/completions", body)
        return JSONResponse(completion_reply(answer, request.model, request.logprobs))
    chunks = await open_chunks(client, lease, "/v1/completions", body)
    stream = CompletionStream(request.model, request.logprobs, _wants_usage(request))
    return respond(chunks, stream, OPENAI, "/v1/completions")


def _wants_usage(request: ChatCompletionRequest | CompletionRequest) -> bool:
    return bool(request.stream_options and request.stream_options.include_usage)
