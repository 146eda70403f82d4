"""The chat path every dialect shares: resolve the model, check its type, inline media under the
policy, build the engine body and lease the model. A dialect translates its request into a
ChatCompletionRequest, calls `start_chat`, and translates the engine's answer back."""

from __future__ import annotations

import asyncio
from typing import Any

from nexa.compat.media import MediaPolicy, resolve_media
from nexa.compat.requests import chat_body
from nexa.compat.tools import require_tool_support
from nexa.runtime import Lease, ModelManager
from nexa.server.model_types import require_model_type
from nexa.wire.openai import ChatCompletionRequest


def apply_keep_cache(body: dict[str, Any], keep_cache: str | None) -> None:
    """The Nexa-KeepCache header: anything but 'true' turns the engine's prompt cache off."""
    if keep_cache is not None and keep_cache.strip().lower() != "true":
        body["cache_prompt"] = False


async def start_chat(
    request: ChatCompletionRequest,
    manager: ModelManager,
    media: MediaPolicy,
    route: str = "/v1/chat/completions",
    keep_cache: str | None = None,
) -> tuple[Lease, dict[str, Any]]:
    """The lease and engine body for `request`; the caller relays the body and releases the lease.
    Media is fetched and checked before the model is leased, so bad input never loads a model."""
    manifest, quant = manager.resolve(request.model)
    require_model_type(manifest, route)
    if request.tools:  # reading the chat template may touch the file: off the loop
        await asyncio.to_thread(require_tool_support, request, manifest, manager.store.model_dir(manifest.name), quant)
    messages = await resolve_media(request.messages, manifest, manager.store.model_dir(manifest.name), media)
    body = chat_body(request.model_copy(update={"messages": messages}), manifest, await manager.context_for(manifest, quant))
    apply_keep_cache(body, keep_cache)
    lease = await manager.acquire(manifest, quant, request.keep_alive)
    return lease, body
