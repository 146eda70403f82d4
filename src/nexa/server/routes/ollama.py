"""Ollama's generation API on nexa's port: /api/chat, /api/generate, /api/embed and /api/embeddings.

Each request is translated (nexa.compat.ollama) onto the shared chat, completion or embeddings
path; answers stream as NDJSON (application/x-ndjson) unless `stream` is false. Model management
(/api/tags, /api/show, /api/ps, /api/pull, /api/delete) is in ollama_models.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from nexa.compat.ollama import (
    ChunkStream,
    Clock,
    Reply,
    chat_request,
    generate_chat_request,
    generate_completion_request,
    keep_alive_seconds,
    resolve,
)
from nexa.compat.retrieval import embedding_inputs
from nexa.errors import InvalidRequest
from nexa.runtime import Lease, ModelManager
from nexa.server.chat import Target, resolve_for, start_chat, start_completion
from nexa.server.deps import Manager, MediaRules, WorkerClient
from nexa.server.embed import embed as shared_embed
from nexa.server.relay import fetch_json, open_chunks
from nexa.server.stream import OLLAMA, respond
from nexa.store.facts import model_id
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
    lease, body = await start_chat(translated, manager, media, _resolve("/api/chat", manager, request.model))
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
        lease, body = await start_chat(translated, manager, media, _resolve("/api/generate", manager, request.model))
        path = "/v1/chat/completions"
    else:
        completion = generate_completion_request(request)
        lease, body = await start_completion(completion, manager, _resolve("/api/generate", manager, request.model))
        path = "/v1/completions"
    return await _answer(client, lease, path, body, reply, Clock(start, time.perf_counter_ns()), request.stream,
                         "/api/generate")


def _resolve(route: str, manager: ModelManager, name: str) -> Target:
    """The model an Ollama-style `name` means, with Ollama's not-found message, refused unless `route` serves it."""
    return resolve_for(route, manager, name, functools.partial(resolve, manager.resolve))


async def _load_or_unload(manager: ModelManager, name: str, keep_alive: float | str | None, reply: Reply,
                          route: str) -> Response:
    manifest, quant = _resolve(route, manager, name)
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
    return respond(await open_chunks(client, lease, path, body), ChunkStream(reply, clock), OLLAMA, route)


@router.post("/api/embed", response_model=EmbedResponse)
async def embed(request: EmbedRequest, manager: Manager, client: WorkerClient) -> EmbedResponse:
    """One L2-normalised vector per input, in input order; long inputs are cut unless truncate is false."""
    if request.dimensions is not None:
        raise InvalidRequest("dimensions is not supported: vectors keep the model's own size; leave it unset",
                             param="dimensions")
    start = time.perf_counter_ns()
    data, tokens = await shared_embed(
        manager, client, _resolve("/api/embed", manager, request.model), embedding_inputs(request.input),
        truncate=request.truncate, keep_alive=keep_alive_seconds(request.keep_alive),
    )
    took = time.perf_counter_ns() - start
    return EmbedResponse(model=request.model, embeddings=[item.embedding for item in data],  # type: ignore[misc]
                         total_duration=took, load_duration=0, prompt_eval_count=tokens)


@router.post("/api/embeddings", response_model=EmbeddingResponse)
async def embeddings(request: EmbeddingsRequest, manager: Manager, client: WorkerClient) -> EmbeddingResponse:
    """The older form: one prompt, one vector (cut to the context if longer)."""
    data, _ = await shared_embed(
        manager, client, _resolve("/api/embeddings", manager, request.model), [request.prompt], truncate=True,
        keep_alive=keep_alive_seconds(request.keep_alive),
    )
    return EmbeddingResponse(embedding=data[0].embedding)  # type: ignore[arg-type]
