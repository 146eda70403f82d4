"""POST /v1/embeddings, /v1/reranking (Nexa) and /v1/rerank (Cohere/Jina/llama.cpp).

Large requests go to the worker in batches, several at a time so the engine's slots
stay busy; the answers are merged back into input order here.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel

from nexa.compat.retrieval import (
    MAX_DOCUMENTS,
    check_count,
    batches,
    embedding_inputs,
    normalize_method,
    normalized,
    ranking,
    scores_in_order,
)
from nexa.errors import InvalidRequest
from nexa.server.chat import resolve_for
from nexa.server.deps import Manager, WorkerClient
from nexa.server.embed import embed
from nexa.server.lengths import check_documents
from nexa.server.relay import post_all
from nexa.wire.openai import (
    EmbeddingList,
    EmbeddingRequest,
    Rerank,
    RerankDocument,
    Reranking,
    RerankingRequest,
    RerankRequest,
    RerankResult,
    RetrievalUsage,
)

router = APIRouter(tags=["retrieval"])


async def _json(body: BaseModel) -> Response:
    """Serialised in a thread: 2,048 vectors are megabytes of JSON."""
    return Response(await asyncio.to_thread(body.model_dump_json, exclude_none=True), media_type="application/json")


def _usage(tokens: int) -> RetrievalUsage:
    return RetrievalUsage(prompt_tokens=tokens, total_tokens=tokens)


@router.post("/v1/embeddings", response_model=EmbeddingList)
async def embeddings(request: EmbeddingRequest, manager: Manager, client: WorkerClient) -> Response:
    """One L2-normalised vector per input, in input order."""
    if request.dimensions is not None:
        raise InvalidRequest("dimensions is not supported: vectors keep the model's own size; leave it unset",
                             param="dimensions", code="unsupported_parameter")
    target = resolve_for("/v1/embeddings", manager, request.model)
    data, tokens = await embed(manager, client, target, embedding_inputs(request.input), truncate=request.truncate,
                               keep_alive=request.keep_alive, encoding_format=request.encoding_format)
    return await _json(EmbeddingList(model=request.model, data=data, usage=_usage(tokens)))


async def _scores(
    request: RerankingRequest | RerankRequest, route: str, documents: list[str], manager: Manager,
    client: WorkerClient,
) -> tuple[list[float], int]:
    """The model's raw score for each document, in input order, and the prompt tokens spent."""
    check_count("documents", len(documents), MAX_DOCUMENTS)
    manifest, quant = resolve_for(route, manager, request.model)
    async with await manager.acquire(manifest, quant, request.keep_alive) as lease:
        await check_documents(client, lease, request.query, documents)
        chunks = batches(documents)
        replies = await post_all(client, lease, "/v1/rerank", [
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


@router.post("/v1/reranking", response_model=Reranking)
async def reranking(request: RerankingRequest, manager: Manager, client: WorkerClient) -> Response:
    """Nexa's form: one score per document in input order, optionally normalised."""
    scores, tokens = await _scores(request, "/v1/reranking", request.documents, manager, client)
    method = normalize_method(request.normalize, request.normalize_method)
    result = scores_in_order(normalized(scores, method), request.top_n)
    return await _json(Reranking(model=request.model, result=result, usage=_usage(tokens)))


@router.post("/v1/rerank", response_model=Rerank)
async def rerank(request: RerankRequest, manager: Manager, client: WorkerClient) -> Response:
    """Cohere/Jina/llama.cpp form: results best first, cut to top_n."""
    texts = [d if isinstance(d, str) else d.text for d in request.documents]
    scores, tokens = await _scores(request, "/v1/rerank", texts, manager, client)
    results = [
        RerankResult(index=i, relevance_score=scores[i],
                     document=RerankDocument(text=texts[i]) if request.return_documents else None)
        for i in ranking(scores, request.top_n)
    ]
    return await _json(Rerank(model=request.model, results=results, usage=_usage(tokens)))
