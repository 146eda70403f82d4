"""The generation paths every dialect shares: resolve the model and check its type, inline media under
the policy, build the engine body and lease the model. A dialect translates its request into a
ChatCompletionRequest (or a CompletionRequest), calls `start_chat` (`start_completion`) with the model
`resolve_for` found, and translates the engine's answer back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nexa.compat.bodies import chat_body, completion_body
from nexa.compat.tools import require_tool_support
from nexa.media.resolve import MediaPolicy, resolve_media
from nexa.runtime import Lease, ModelManager
from nexa.server.model_types import require_model_type
from nexa.store import Manifest
from nexa.store.facts import supports_tools
from nexa.wire.openai import ChatCompletionRequest, CompletionRequest

# A stored model and the quant a request names: what `ModelManager.resolve` returns.
Target = tuple[Manifest, str]


def resolve_for(
    route: str, manager: ModelManager, name: str, resolver: Callable[[str], Target] | None = None
) -> Target:
    """The model `name` names (by `resolver`, the manager's unless a dialect words its own not-found),
    refused (400) when `route` does not serve its type. Resolved once: the paths below take its answer."""
    manifest, quant = (resolver or manager.resolve)(name)
    require_model_type(manifest, route)
    return manifest, quant


def apply_keep_cache(body: dict[str, Any], keep_cache: str | None) -> None:
    """The Nexa-KeepCache header: anything but 'true' turns the engine's prompt cache off."""
    if keep_cache is not None and keep_cache.strip().lower() != "true":
        body["cache_prompt"] = False


async def start_chat(
    request: ChatCompletionRequest,
    manager: ModelManager,
    media: MediaPolicy,
    target: Target,
    keep_cache: str | None = None,
) -> tuple[Lease, dict[str, Any]]:
    """The lease and engine body for `request` on `target`; the caller relays the body and releases the
    lease. Media is fetched and checked before the model is leased, so bad input never loads a model."""
    manifest, quant = target
    if request.tools:  # reading the chat template may touch the file: off the loop
        supported = await asyncio.to_thread(supports_tools, manifest, manager.store.model_dir(manifest.name), quant)
        require_tool_support(request, manifest, supported)
    messages = await resolve_media(request.messages, manifest, manager.store.model_dir(manifest.name), media)
    context = await manager.context_for(manifest, quant)
    body = chat_body(request.model_copy(update={"messages": messages}), manifest, context)
    apply_keep_cache(body, keep_cache)
    return await manager.acquire(manifest, quant, request.keep_alive), body


async def start_completion(
    request: CompletionRequest, manager: ModelManager, target: Target, keep_cache: str | None = None
) -> tuple[Lease, dict[str, Any]]:
    """The lease and engine body for a text completion on `target`, as `start_chat` for chat."""
    manifest, quant = target
    body = completion_body(request, manifest, await manager.context_for(manifest, quant))
    apply_keep_cache(body, keep_cache)
    return await manager.acquire(manifest, quant, request.keep_alive), body
