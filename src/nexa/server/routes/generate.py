"""POST /v1/chat/completions and /v1/completions: text generation, streamed or not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response, StreamingResponse

from nexa.compat.completions import CompletionStream, completion_reply
from nexa.compat.requests import completion_body
from nexa.compat.tools import as_function_call, upgrade_functions, uses_functions
from nexa.errors import NexaError
from nexa.server.chat import apply_keep_cache, start_chat
from nexa.server.deps import Manager, MediaRules, WorkerClient
from nexa.server.errors import nexa_error_response
from nexa.server.model_types import require_model_type
from nexa.server.relay import fetch_json, open_chunks, post_json, post_stream
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
    lease, body = await start_chat(request, manager, media, keep_cache=keep_cache)
    if not legacy:  # the fast path: the engine's answer as it is
        relay = post_stream if request.stream else post_json
        return await relay(client, lease, "/v1/chat/completions", body, request.model)
    # The deprecated functions form: the reply carries `function_call` instead of tool calls.
    if not request.stream:
        answer = await fetch_json(client, lease, "/v1/chat/completions", body)
        return JSONResponse(as_function_call({**answer, "model": request.model}))
    wants_usage = bool(request.stream_options and request.stream_options.include_usage)
    chunks = await open_chunks(client, lease, "/v1/chat/completions", body)

    def translate(chunk: dict[str, Any]) -> list[dict[str, Any]]:
        if not chunk.get("choices") and not wants_usage:
            return []  # the usage chunk the client did not ask for
        return [as_function_call({**chunk, "model": request.model})]

    return _event_stream(chunks, translate)


@router.post("/v1/completions", responses=_responses(Completion), response_model=None)
async def completions(
    request: CompletionRequest, manager: Manager, client: WorkerClient, keep_cache: KeepCache = None
) -> Response:
    manifest, quant = manager.resolve(request.model)
    require_model_type(manifest, "/v1/completions")
    body = completion_body(request, manifest, await manager.context_for(manifest, quant))
    apply_keep_cache(body, keep_cache)
    lease = await manager.acquire(manifest, quant, request.keep_alive)
    if not request.stream:
        answer = await fetch_json(client, lease, "/v1/completions", body)
        return JSONResponse(completion_reply(answer, request.model, request.logprobs))
    stream = CompletionStream(
        request.model, request.logprobs, bool(request.stream_options and request.stream_options.include_usage)
    )
    return _event_stream(await open_chunks(client, lease, "/v1/completions", body), stream.feed, stream.finish)


def _event_stream(
    chunks: AsyncIterator[dict[str, Any]],
    translate: Callable[[dict[str, Any]], list[dict[str, Any]]],
    finish: Callable[[], list[dict[str, Any]]] = list,
) -> StreamingResponse:
    """Translated chunks as server-sent events ending with [DONE]; an error mid-stream is a last
    `data: {"error": ...}` event. A client that leaves closes `chunks`, which stops the generation."""

    async def events() -> AsyncIterator[bytes]:
        async with aclosing(chunks):  # type: ignore[type-var]
            try:
                async for chunk in chunks:
                    for event in translate(chunk):
                        yield _sse(event)
                for event in finish():
                    yield _sse(event)
            except NexaError as exc:
                yield b"data: " + bytes(nexa_error_response(exc).body) + b"\n\n"
                return
        yield b"data: [DONE]\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
