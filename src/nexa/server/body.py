"""Request bodies: JSON whatever their Content-Type when no web page sent them (curl one-liners send -d
as a form), never a lone UTF-16 surrogate in any string of any dialect, and a way for the relay to notice
a client that left."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nexa.errors import ClientGone
from nexa.server.cancels import ours, pending

# A JSON escape that may be half of a surrogate pair; only bodies holding one are looked into.
_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_client_receive: ContextVar[Receive | None] = ContextVar("nexa_client_receive", default=None)
T = TypeVar("T")


class LoneSurrogate(HTTPException):
    """A string holds half a surrogate pair: it is no Unicode text, and encoding it for the engine fails."""

    def __init__(self, path: str):
        super().__init__(400, f"'{path}' holds a lone UTF-16 surrogate (a \\ud800-\\udfff escape without its pair), "
                              "which is not valid Unicode; send the character's full pair or valid UTF-8 text")
        self.param = path


def surrogate_path(data: Any) -> str | None:
    """The path ('messages.0.content') of the first string, key or value, holding a lone surrogate."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return path or "body"
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                where = f"{path}.{key}" if path else key
                if _SURROGATE.search(key):
                    return where
                stack.append((where, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), item) for i, item in reversed(list(enumerate(value))))
    return None


class JSONBodyByDefault:
    """Pure ASGI middleware (no buffering): rewrites a missing or form Content-Type to application/json
    (not for a browser's request, which has an Origin), refuses JSON bodies with a lone surrogate (400
    naming the field), and makes the connection's `receive` available to `unless_client_leaves`."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST":
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            content_type = dict(scope["headers"]).get(b"content-type", b"")
            if not content_type.startswith(b"multipart/"):
                receive = _checking_surrogates(receive)
                # A browser sends text/plain cross-origin without asking first: pages must send JSON as JSON.
                from_page = any(key == b"origin" for key, _ in scope["headers"])
                if b"json" not in content_type and not from_page:
                    scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        token = _client_receive.set(receive)
        try:
            await self.app(scope, receive, send)
        finally:
            _client_receive.reset(token)


def _checking_surrogates(receive: Receive) -> Receive:
    """`receive`, raising LoneSurrogate at the body's end when one of its strings holds one. Only a body with
    a surrogate escape is parsed here (an emoji escaped by json.dumps is a pair, and passes)."""
    chunks: list[bytes] = []
    suspect, tail = False, b""

    async def checked() -> Message:
        nonlocal suspect, tail
        message = await receive()
        if message["type"] != "http.request":
            return message
        body = message.get("body", b"")
        chunks.append(body)
        suspect = suspect or bool(_ESCAPE.search(tail + body[:8])) or bool(_ESCAPE.search(body))
        tail = body[-5:]
        if not message.get("more_body", False):
            whole = b"".join(chunks) if suspect else b""
            chunks.clear()
            if whole:
                try:
                    path = surrogate_path(json.loads(whole))
                except (ValueError, RecursionError):
                    path = None  # not JSON: the route's own parsing says so
                if path is not None:
                    raise LoneSurrogate(path)
        return message

    return checked


async def unless_client_leaves(awaitable: Awaitable[T]) -> T:
    """Await `awaitable`, cancelling it when the request's client disconnects first (then ClientGone): a
    non-streamed generation stops with its client, as a stream does. Call it once the body has been read.
    It runs in the caller's task, which a watcher cancels (as asyncio.timeout does): a task of its own and
    asyncio.wait cost two turns of the event loop, 0.2 ms of a transcription's time."""
    receive = _client_receive.get()
    if receive is None:
        return await awaitable
    task = asyncio.current_task()
    assert task is not None
    before = pending(task)
    watcher = asyncio.ensure_future(_cancel_when_gone(receive, task))
    try:
        return await awaitable  # an httpx request cancelled mid-answer closes its connection: the engine stops
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled() and ours(task, before):  # the client left
            raise ClientGone("the client closed the connection before the answer was ready; "
                             "the generation was stopped") from None
        raise
    finally:
        watcher.cancel()


async def _cancel_when_gone(receive: Receive, task: asyncio.Task[Any]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    task.cancel()
