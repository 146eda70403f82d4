"""The embeddings path every dialect shares (OpenAI's /v1/embeddings, Ollama's /api/embed and
/api/embeddings): inputs fitted to the model's context, sent in batches several at a time so the
engine's slots stay busy, the vectors merged back into input order."""

from __future__ import annotations

import asyncio

import httpx

from nexa.compat.retrieval import EngineInput, batches
from nexa.runtime import ModelManager
from nexa.server.chat import Target
from nexa.server.lengths import fit_inputs
from nexa.server.relay import post_all
from nexa.wire.openai import Embedding, EmbeddingList


async def embed(
    manager: ModelManager, client: httpx.AsyncClient, target: Target, inputs: list[EngineInput], *,
    truncate: bool, keep_alive: float | None, encoding_format: str = "float",
) -> tuple[list[Embedding], int]:
    """The vectors of `inputs` in input order, and the prompt tokens spent, from the model `target`
    (see nexa.server.chat.resolve_for). An engine refusal is raised (EngineRefused), so each dialect shapes it."""
    manifest, quant = target
    async with await manager.acquire(manifest, quant, keep_alive) as lease:
        inputs = await fit_inputs(client, lease, inputs, truncate)
        chunks = batches(inputs)
        replies = await post_all(client, lease, "/v1/embeddings", [
            {"input": items, "encoding_format": encoding_format} for _, items in chunks
        ])
    return await asyncio.to_thread(_merged, [offset for offset, _ in chunks], replies)


def _merged(offsets: list[int], replies: list[bytes]) -> tuple[list[Embedding], int]:
    """The batches' vectors in input order and their tokens; parsing megabytes of them is off the event loop."""
    data, tokens = [], 0
    for offset, raw in zip(offsets, replies):
        part = EmbeddingList.model_validate_json(raw)
        for item in part.data:
            item.index += offset
        data += part.data
        tokens += part.usage.prompt_tokens
    data.sort(key=lambda item: item.index)
    return data, tokens
