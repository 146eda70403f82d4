"""Treat POST bodies as JSON whatever their Content-Type, as curl one-liners send -d as a form."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class JSONBodyByDefault:
    """Pure ASGI middleware (no buffering): rewrites a missing or form Content-Type to application/json."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            content_type = dict(scope["headers"]).get(b"content-type", b"")
            if not content_type.startswith(b"multipart/") and b"json" not in content_type:
                scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        await self.app(scope, receive, send)
