"""POST /v1/embeddings, /v1/reranking (Nexa) and /v1/rerank (Cohere/Jina/llama.cpp).

Large requests go to the worker in batches, several at a time so the engine's slots
stay busy; the answers are merged back into input order here.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from nexa.compat.retrieval import (
    batches,
    embedding_inputs,
    normalize_method,
    normalized,
    ranking,
    scores_in_order,
)
from nexa.errors import InvalidRequest
from nexa.runtime import Lease
from nexa.server.deps import Manager, WorkerClient
from nexa.server.lengths import check_documents, fit_inputs
from nexa.server.model_types import require_model_type
from nexa.server.relay import call, engine_error, gather_limited
from nexa.wire.openai import (
    EmbeddingList,
    EmbeddingRequest,
    ErrorResponse,
    Rerank,
    RerankDocument,
    Reranking,
    RerankingRequest,
    RerankRequest,
    RerankResult,
    RetrievalUsage,
)

router = APIRouter(tags=["retrieval"])

_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (400, 404, 503)}


class _Refused(Exception):
    """The worker answered an error: the route returns it in our shape, with its status."""

    def __init__(self, response: JSONResponse):
        self.response = response


async def _post_batches(client: httpx.AsyncClient, lease: Lease, path: str, bodies: list[dict]) -> list[bytes]:
    replies = await gather_limited(call(client, lease, "POST", path, body) for body in bodies)
    for reply in replies:
        if reply.status_code >= 400:
            raise _Refused(engine_error(reply.status_code, reply.content))
    return [reply.content for reply in replies]


def _json(body: BaseModel) -> Response:
    return Response(body.model_dump_json(exclude_none=True), media_type="application/json")


def _usage(tokens: int) -> RetrievalUsage:
    return RetrievalUsage(prompt_tokens=tokens, total_tokens=tokens)


@router.post("/v1/embeddings", response_model=EmbeddingList, responses=_ERRORS)
async def embeddings(request: EmbeddingRequest, manager: Manager, client: WorkerClient) -> Response:
    """One L2-normalised vector per input, in input order."""
    if request.dimensions is not None:
        raise InvalidRequest("dimensions is not supported: vectors keep the model's own size; leave it unset",
                             param="dimensions", code="unsupported_parameter")
    inputs = embedding_inputs(request.input)
    manifest, quant = manager.resolve(request.model)
    require_model_type(manifest, "/v1/embeddings")
    try:
        async with await manager.acquire(manifest, quant, request.keep_alive) as lease:
            inputs = await fit_inputs(client, lease, inputs, request.truncate)
            chunks = batches(inputs)
            replies = await _post_batches(client, lease, "/v1/embeddings", [
                {"input": items, "encoding_format": request.encoding_format} for _, items in chunks
            ])
    except _Refused as refused:
        return refused.response
    data, tokens = [], 0
    for (offset, _), raw in zip(chunks, replies):
        part = EmbeddingList.model_validate_json(raw)
        for item in part.data:
            item.index += offset
        data += part.data
        tokens += part.usage.prompt_tokens
    data.sort(key=lambda item: item.index)
    return _json(EmbeddingList(model=request.model, data=data, usage=_usage(tokens)))


async def _scores(
    request: RerankingRequest | RerankRequest, route: str, documents: list[str], manager: Manager,
    client: WorkerClient,
) -> tuple[list[float], int]:
    """The model's raw score for each document, in input order, and the prompt tokens spent."""
    manifest, quant = manager.resolve(request.model)
    require_model_type(manifest, route)
    async with await manager.acquire(manifest, quant, request.keep_alive) as lease:
        await check_documents(client, lease, request.query, documents)
        chunks = batches(documents)
        replies = await _post_batches(client, lease, "/v1/rerank", [
            {"query": request.query, "documents": items, "top_n": len(items)} for _, items in chunks
        ])
    scores = [0.0] * len(documents)
    tokens = 0
    for (offset, _), raw in zip(chunks, replies):
        part = json.loads(raw)
        for result in part["results"]:
            scores[offset + result["index"]] = float(result["relevance_score"])
        tokens += part["usage"]["prompt_tokens"]
    return scores, tokens


@router.post("/v1/reranking", response_model=Reranking, responses=_ERRORS)
async def reranking(request: RerankingRequest, manager: Manager, client: WorkerClient) -> Response:
    """Nexa's form: one score per document in input order, optionally normalised."""
    try:
        scores, tokens = await _scores(request, "/v1/reranking", request.documents, manager, client)
    except _Refused as refused:
        return refused.response
    method = normalize_method(request.normalize, request.normalize_method)
    result = scores_in_order(normalized(scores, method), request.top_n)
    return _json(Reranking(model=request.model, result=result, usage=_usage(tokens)))


@router.post("/v1/rerank", response_model=Rerank, responses=_ERRORS)
async def rerank(request: RerankRequest, manager: Manager, client: WorkerClient) -> Response:
    """Cohere/Jina/llama.cpp form: results best first, cut to top_n."""
    texts = [d if isinstance(d, str) else d.text for d in request.documents]
    try:
        scores, tokens = await _scores(request, "/v1/rerank", texts, manager, client)
    except _Refused as refused:
        return refused.response
    results = [
        RerankResult(index=i, relevance_score=scores[i],
                     document=RerankDocument(text=texts[i]) if request.return_documents else None)
        for i in ranking(scores, request.top_n)
    ]
    return _json(Rerank(model=request.model, results=results, usage=_usage(tokens)))
