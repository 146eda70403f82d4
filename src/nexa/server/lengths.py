"""Input lengths, measured by the worker's own tokenizer.

The engine refuses an over-long embedding input without saying which one it was (and
as a 500 when the input is larger than a batch), so lengths are checked here first.
Only texts that could be too long are tokenized: short ones cost nothing.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import httpx

from nexa.compat.retrieval import (
    MAX_TOTAL_TOKENS,
    EngineInput,
    check_token_ids,
    check_total_tokens,
    fit,
    may_exceed,
    token_bound,
    truncated,
)
from nexa.errors import InvalidRequest, WorkerCrashed
from nexa.runtime import Lease
from nexa.runtime.worker import Worker
from nexa.server.relay import call, engine_refusal, gather_limited


@dataclass(frozen=True)
class InputLimits:
    tokens: int  # most tokens one input may have
    vocab: int  # token ids run from 0 to vocab - 1


# Asked once per worker process; a restarted worker is a new Worker and asks again.
_limits: weakref.WeakKeyDictionary[Worker, InputLimits] = weakref.WeakKeyDictionary()


async def _answer(client: httpx.AsyncClient, lease: Lease, method: str, path: str, body: dict | None = None) -> dict:
    response = await call(client, lease, method, path, body)
    if response.status_code != 200:
        raise WorkerCrashed(f"the worker for '{lease.model.id}' failed {path} (HTTP {response.status_code}): "
                            f"{response.text[:200]}; retry the request", code="worker_error")
    return response.json()


async def input_limits(client: httpx.AsyncClient, lease: Lease) -> InputLimits:
    """One input must fit a slot's context (capped by the engine at the model's training
    context) and one batch, which the engine sizes to the `ctx` the worker was started with."""
    worker = lease.worker
    if worker not in _limits:
        meta = (await _answer(client, lease, "GET", "/v1/models"))["data"][0]["meta"]
        _limits[worker] = InputLimits(tokens=min(int(meta["n_ctx"]), worker.spec.ctx), vocab=int(meta["n_vocab"]))
    return _limits[worker]


async def tokenize(client: httpx.AsyncClient, lease: Lease, text: str, special: bool = True) -> list[int]:
    return (await _answer(client, lease, "POST", "/tokenize", {"content": text, "add_special": special}))["tokens"]


async def prompt_tokens(client: httpx.AsyncClient, lease: Lease, body: dict) -> int:
    """The tokens of a chat body's prompt as the model's own template and tokenizer make them (Anthropic's
    count_tokens, Responses' input_tokens); the lease is released when they are counted."""
    try:
        rendered = await call(client, lease, "POST", "/apply-template", body)
        if rendered.status_code >= 400:
            raise engine_refusal(rendered.status_code, rendered.content)
        return len(await tokenize(client, lease, rendered.json()["prompt"]))
    finally:
        lease.release()


async def fit_inputs(
    client: httpx.AsyncClient, lease: Lease, inputs: list[EngineInput], truncate: bool
) -> list[EngineInput]:
    """Inputs ready for the engine: too-long ones refused by index, or cut when `truncate` is set, and
    together within MAX_TOTAL_TOKENS. Texts are only tokenized when their byte count says they might not fit."""
    limits = await input_limits(client, lease)
    count_all = sum(min(token_bound(item), limits.tokens) for item in inputs) > MAX_TOTAL_TOKENS
    counts = [0] * len(inputs)

    async def one(index: int, item: EngineInput) -> EngineInput:
        if isinstance(item, list):
            check_token_ids(index, item, limits.vocab)
            fit(index, len(item), limits.tokens, truncate)
            counts[index] = min(len(item), limits.tokens)
            return item[: limits.tokens]
        if not count_all and not may_exceed(limits.tokens, item):
            return item
        full = await tokenize(client, lease, item)
        fit(index, len(full), limits.tokens, truncate)
        counts[index] = min(len(full), limits.tokens)
        if len(full) <= limits.tokens:
            return item
        return truncated(full, await tokenize(client, lease, item, special=False), limits.tokens)

    fitted = await gather_limited(one(i, item) for i, item in enumerate(inputs))
    if count_all:
        check_total_tokens(counts)
    return fitted


async def check_documents(client: httpx.AsyncClient, lease: Lease, query: str, documents: list[str]) -> None:
    """Refuse a document that cannot fit beside the query, by its index. The count (query and
    document each with their special tokens) is an upper bound of what the engine builds."""
    limits = await input_limits(client, lease)
    if not any(may_exceed(limits.tokens, query, document) for document in documents):
        return
    query_tokens = len(await tokenize(client, lease, query))

    async def one(index: int, document: str) -> None:
        if not may_exceed(limits.tokens, query, document):
            return
        count = query_tokens + len(await tokenize(client, lease, document))
        if count > limits.tokens:
            raise InvalidRequest(
                f"documents[{index}] and the query need up to {count} tokens but the model takes at most "
                f"{limits.tokens}; shorten the document or the query, or start nexa serve with a larger --ctx",
                param="documents", code="input_too_long",
            )

    await gather_limited(one(i, d) for i, d in enumerate(documents))
