"""Safe-by-default HTTP guards, as pure ASGI middleware so that streams pass through unbuffered.

From the outside in: a Host-header check (DNS rebinding) when bound to loopback, CORS,
the API-key check, and the request body limit. Each answers in the error shape of the path's dialect.
"""

from __future__ import annotations

import hmac
import re

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nexa.config import LOOPBACK_NAMES, Settings
from nexa.server.errors import error_response

# Any port on the loopback names; what a browser sends as Origin for pages served locally.
LOCAL_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"
OPEN_PATHS = frozenset({"/health"})


def install(app: FastAPI, settings: Settings) -> None:
    """Add the guards around `app`; call after every other middleware, as the last added runs first."""
    app.add_middleware(BodyLimit, max_body=settings.max_body)
    if settings.api_keys:
        app.add_middleware(APIKeyCheck, keys=[key.get_secret_value() for key in settings.api_keys])
    app.add_middleware(CORSMiddleware, **cors_options(settings.origins))
    if settings.loopback():
        app.add_middleware(LoopbackHostCheck)


def cors_options(origins: list[str]) -> dict:
    """Bearer keys, not cookies, authenticate: credentials stay off, so '*' is a plain wildcard."""
    options: dict = {"allow_methods": ["*"], "allow_headers": ["*"], "allow_credentials": False, "max_age": 600}
    if not origins:
        return {**options, "allow_origin_regex": LOCAL_ORIGINS}
    return {**options, "allow_origins": ["*"] if "*" in origins else [o.rstrip("/") for o in origins]}


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


class LoopbackHostCheck:
    """A web page can point its own domain at 127.0.0.1 (DNS rebinding) and then read our answers
    as same-origin; it cannot make the browser send `Host: localhost`, so only those names pass."""

    _HOST = re.compile(rb"^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(:\d*)?$")

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = _header(scope, b"host")
            if host is not None and not self._allowed(host):
                shown = host.decode("latin-1")[:100]
                response = error_response(
                    403,
                    f"Host '{shown}' is refused: a server bound to loopback answers only requests addressed to "
                    "localhost, 127.0.0.1 or [::1] (this blocks DNS-rebinding attacks); use one of those names, "
                    "or bind nexa serve --host to the address clients use",
                    "permission_error", code="host_not_allowed", path=scope["path"],
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _allowed(self, host: bytes) -> bool:
        match = self._HOST.match(host.strip())
        return bool(match) and match.group(1).decode("latin-1").lower().strip("[]") in LOOPBACK_NAMES


class APIKeyCheck:
    """Every route but /health needs `Authorization: Bearer KEY` or (as Anthropic clients send it)
    `x-api-key: KEY`; CORS preflights never carry either."""

    def __init__(self, app: ASGIApp, keys: list[str]):
        self.app = app
        self._keys = [key.encode() for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS and scope["method"] != "OPTIONS":
            problem = self._problem(_header(scope, b"authorization"), _header(scope, b"x-api-key"))
            if problem:
                response = error_response(401, problem, "authentication_error", code="invalid_api_key", path=scope["path"])
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _problem(self, authorization: bytes | None, api_key: bytes | None = None) -> str | None:
        """None when the key is right, else what is wrong; never echoes the key sent. An x-api-key
        header, when present, is the key checked."""
        if api_key is not None:
            key = api_key.strip()
            if not key:
                return "empty x-api-key header: send 'x-api-key: KEY' with a key given to nexa serve --api-key"
        elif not authorization:
            return ("no API key: send 'Authorization: Bearer KEY' (or 'x-api-key: KEY') with a key given to "
                    "nexa serve --api-key")
        else:
            scheme, _, key = authorization.partition(b" ")
            key = key.strip()
            if scheme.lower() != b"bearer" or not key:
                return "malformed Authorization header: send 'Authorization: Bearer KEY' (or 'x-api-key: KEY')"
        # Compare with every key, each in constant time, so timing tells neither the key nor which one matched.
        if not any([hmac.compare_digest(key, known) for known in self._keys]):
            return "invalid API key: use a key given to nexa serve --api-key (or NEXA_API_KEY)"
        return None


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the bytes read pass the limit; the app's handlers make it a 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than {limit} bytes; send less, or raise nexa serve --max-body")


class BodyLimit:
    """Refuses bodies over `max_body` bytes: at once when Content-Length says so, else by counting
    the bytes as they arrive (a chunked or lying client cannot get past it)."""

    def __init__(self, app: ASGIApp, max_body: int):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = BodyTooLarge(self.max_body)
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_body:
            await self._refuse(too_large, scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise too_large
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(too_large, scope, receive, send)

    @staticmethod
    async def _refuse(exc: BodyTooLarge, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, exc.detail, "request_too_large", code="request_too_large", path=scope["path"])
        response.headers["Connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)
