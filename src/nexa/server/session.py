"""A request's session hint: what a client says about which conversation a request continues, in each
dialect's own words. Requests with one hint belong together, so they go where the conversation's
prompt is cached (a replica on a Ray cluster). Read once per request, from the body FastAPI has parsed."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from fastapi import Request

SESSION_HEADER = "x-session-id"
MAX_HINT = 256  # characters kept of a hint: it is a key, not data

_hint: ContextVar[str | None] = ContextVar("nexa_session_hint", default=None)


def session_hint(headers: Mapping[str, str], body: Any) -> str | None:
    """The first of: the X-Session-Id header, Responses' `prompt_cache_key`, Anthropic's `metadata.user_id`,
    Chat Completions' (and Responses') `user`. `previous_response_id` is none: it changes every turn, and
    the stored conversation it replays is matched by its prefix anyway."""
    found: Any = headers.get(SESSION_HEADER)
    if not found and isinstance(body, dict):
        metadata = body.get("metadata")
        found = (body.get("prompt_cache_key")
                 or (metadata.get("user_id") if isinstance(metadata, dict) else None)
                 or body.get("user"))
    return found[:MAX_HINT] if isinstance(found, str) and found else None


def current_session_hint() -> str | None:
    """The hint of the request being handled (set by `note_session_hint`), for the worker call it makes."""
    return _hint.get()


async def note_session_hint(request: Request) -> None:
    """An app-wide dependency of the Ray ingress (nexa.cluster.ingress). It reads the JSON body FastAPI has
    already parsed for the route (Starlette caches it on the request), never the body of a route that does
    not parse one."""
    _hint.set(session_hint(request.headers, getattr(request, "_json", None)))
