"""Ollama's generation API on nexa's port: /api/chat, /api/generate, /api/embed and /api/embeddings.

Each request is translated (nexa.compat.ollama) onto the shared chat, completion or embeddings
path; answers stream as NDJSON (application/x-ndjson) unless `stream` is false. Model management
(/api/tags, /api/show, /api/ps, /api/pull, /api/delete) is in ollama_models.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse

from nexa.compat.ollama import (
    ChunkStream,
    Clock,
    Reply,
    chat_request,
    generate_chat_request,
    generate_completion_request,
    keep_alive_seconds,
    model_id,
    ndjson,
    resolve,
    store_name,
)
from nexa.compat.requests import completion_body
from nexa.compat.retrieval import embedding_inputs
from nexa.errors import InvalidRequest, NexaError
from nexa.runtime import Lease, ModelManager
from nexa.server.chat import start_chat
from nexa.server.deps import Manager, MediaRules, WorkerClient
from nexa.server.errors import nexa_error_response
from nexa.server.model_types import require_model_type
from nexa.server.relay import fetch_json, open_chunks
from nexa.server.routes.retrieval import embed as embed_inputs
from nexa.wire.ollama import (
    ChatRequest,
    EmbeddingResponse,
    EmbeddingsRequest,
    EmbedRequest,
    EmbedResponse,
    GenerateRequest,
)

router = APIRouter(tags=["ollama"])

_NDJSON = {200: {"description": "One JSON object, or (`stream`, the default) NDJSON chunks ending with done: true.",
                 "content": {"application/x-ndjson": {}}}}


@router.post("/api/chat", responses=_NDJSON, response_model=None)
async def chat(request: ChatRequest, manager: Manager, client: WorkerClient, media: MediaRules) -> Response:
    """A chat turn; no messages only loads (keep_alive 0: unloads) the model."""
    start = time.perf_counter_ns()
    reply = Reply(request.model, chat=True)
    if not request.messages:
        return await _load_or_unload(manager, request.model, request.keep_alive, reply, "/api/chat")
    translated = chat_request(request)
    resolve(manager.resolve, request.model)  # an unknown model gets Ollama's message
    lease, body = await start_chat(translated, manager, media, route="/api/chat")
    return await _answer(client, lease, "/v1/chat/completions", body, reply, Clock(start, time.perf_counter_ns()),
                         request.stream, "/api/chat")


@router.post("/api/generate", responses=_NDJSON, response_model=None)
async def generate(request: GenerateRequest, manager: Manager, client: WorkerClient, media: MediaRules) -> Response:
    """A completion of `prompt`: through the chat template, or as is with `raw`. An empty prompt only
    loads (keep_alive 0: unloads) the model."""
    start = time.perf_counter_ns()
    reply = Reply(request.model, chat=False)
    if not request.prompt and not request.images:
        return await _load_or_unload(manager, request.model, request.keep_alive, reply, "/api/generate")
    if not request.raw:
        translated = generate_chat_request(request)
        resolve(manager.resolve, request.model)
        lease, body = await start_chat(translated, manager, media, route="/api/generate")
        path = "/v1/chat/completions"
    else:
        completion = generate_completion_request(request)
        manifest, quant = resolve(manager.resolve, request.model)
        require_model_type(manifest, "/api/generate")
        body = completion_body(completion, manifest, await manager.context_for(manifest, quant))
        lease = await manager.acquire(manifest, quant, completion.keep_alive)
        path = "/v1/completions"
    return await _answer(client, lease, path, body, reply, Clock(start, time.perf_counter_ns()), request.stream,
                         "/api/generate")


async def _load_or_unload(manager: ModelManager, name: str, keep_alive: float | str | None, reply: Reply,
                          route: str) -> Response:
    manifest, quant = resolve(manager.resolve, name)
    require_model_type(manifest, route)
    seconds = keep_alive_seconds(keep_alive)
    if seconds == 0:
        await manager.unload(model_id(manifest, quant))
        return JSONResponse(reply.state("unload"))
    await manager.load(manifest, quant, seconds)
    return JSONResponse(reply.state("load"))


async def _answer(client: httpx.AsyncClient, lease: Lease, path: str, body: dict[str, Any], reply: Reply,
                  clock: Clock, stream: bool, route: str) -> Response:
    if not stream:
        answer = await fetch_json(client, lease, path, body)
        return JSONResponse(reply.answer(answer, clock, time.perf_counter_ns()))
    chunks = await open_chunks(client, lease, path, body)
    return StreamingResponse(_lines(chunks, ChunkStream(reply, clock), route), media_type="application/x-ndjson")


async def _lines(chunks: AsyncIterator[dict[str, Any]], stream: ChunkStream, route: str) -> AsyncIterator[bytes]:
    """NDJSON chunks; an error midway is a last {"error": ...} line (Ollama's clients raise it).
    A client that leaves closes `chunks`, which stops the generation."""
    async with aclosing(chunks):  # type: ignore[type-var]
        try:
            async for chunk in chunks:
                for line in stream.feed(chunk):
                    yield ndjson(line)
            yield ndjson(stream.finish(time.perf_counter_ns()))
        except NexaError as exc:
            yield bytes(nexa_error_response(exc, route).body) + b"\n"


@router.post("/api/embed", response_model=EmbedResponse)
async def embed(request: EmbedRequest, manager: Manager, client: WorkerClient) -> EmbedResponse:
    """One L2-normalised vector per input, in input order; long inputs are cut unless truncate is false."""
    if request.dimensions is not None:
        raise InvalidRequest("dimensions is not supported: vectors keep the model's own size; leave it unset",
                             param="dimensions")
    start = time.perf_counter_ns()
    resolve(manager.resolve, request.model)
    data, tokens = await embed_inputs(
        manager, client, store_name(request.model), embedding_inputs(request.input), route="/api/embed",
        truncate=request.truncate, keep_alive=keep_alive_seconds(request.keep_alive),
    )
    took = time.perf_counter_ns() - start
    return EmbedResponse(model=request.model, embeddings=[item.embedding for item in data],  # type: ignore[misc]
                         total_duration=took, load_duration=0, prompt_eval_count=tokens)


@router.post("/api/embeddings", response_model=EmbeddingResponse)
async def embeddings(request: EmbeddingsRequest, manager: Manager, client: WorkerClient) -> EmbeddingResponse:
    """The older form: one prompt, one vector (cut to the context if longer)."""
    resolve(manager.resolve, request.model)
    data, _ = await embed_inputs(
        manager, client, store_name(request.model), [request.prompt], route="/api/embeddings", truncate=True,
        keep_alive=keep_alive_seconds(request.keep_alive),
    )
    return EmbeddingResponse(embedding=data[0].embedding)  # type: ignore[arg-type]
