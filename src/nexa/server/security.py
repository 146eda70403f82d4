"""Safe-by-default HTTP guards, as pure ASGI middleware so that streams pass through unbuffered.

From the outside in: a Host-header check (DNS rebinding) when bound to loopback, CORS,
the cross-site request check, the API-key check, and the request body limit. Each answers in the error shape of the path's dialect.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import Callable

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from nexa.config import LOOPBACK_NAMES, Settings
from nexa.server.cancels import ours, pending
from nexa.server.errors import error_response

# Any port on the loopback names; what a browser sends as Origin for pages served locally.
LOCAL_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"
OPEN_PATHS = frozenset({"/health"})


def install(app: FastAPI, settings: Settings, public: frozenset[str] = frozenset()) -> None:
    """Add the guards around `app`; call after every other middleware, as the last added runs first.
    `public` paths (the web UI's files) need no API key, as /health does not."""
    app.add_middleware(BodyLimit, max_body=settings.max_body, timeout=settings.body_timeout)
    if settings.api_keys:
        app.add_middleware(APIKeyCheck, keys=[key.get_secret_value() for key in settings.api_keys],
                           public=OPEN_PATHS | public)
    app.add_middleware(CrossSiteCheck, origins=settings.origins, public=OPEN_PATHS | public)
    app.add_middleware(CORSMiddleware, **cors_options(settings.origins))
    if settings.loopback():
        app.add_middleware(LoopbackHostCheck, bound=settings.bind()[0])


def cors_options(origins: list[str]) -> dict:
    """Bearer keys, not cookies, authenticate: credentials stay off, so '*' is a plain wildcard."""
    options: dict = {"allow_methods": ["*"], "allow_headers": ["*"], "allow_credentials": False, "max_age": 600}
    if not origins:
        return {**options, "allow_origin_regex": LOCAL_ORIGINS}
    return {**options, "allow_origins": ["*"] if "*" in origins else [o.rstrip("/") for o in origins]}


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


async def _forbidden(message: str, code: str, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a 403 in the shape of the path's dialect."""
    await error_response(403, message, "permission_error", code=code, path=scope["path"])(scope, receive, send)


def origin_allowed(origins: list[str]) -> Callable[[str], bool]:
    """Whether a browser page of an origin may call the server: the test CORS applies, as one predicate."""
    if not origins:
        local = re.compile(LOCAL_ORIGINS)
        return lambda origin: local.fullmatch(origin) is not None
    if "*" in origins:
        return lambda origin: True
    allowed = frozenset(o.rstrip("/") for o in origins)
    return lambda origin: origin in allowed


class CrossSiteCheck:
    """CORS only hides answers: a page on any site can still make the browser send a simple request
    (a `text/plain` POST, an `<img>` GET) and the route would run. So a request from a page whose origin
    is not allowed (its `Origin`, or `Sec-Fetch-Site: cross-site` when it sends none) is refused before
    any work, on every route but the `public` files a page may link to. Same-origin requests (the web UI,
    whatever address it was opened at) always pass; requests from programs carry neither header."""

    def __init__(self, app: ASGIApp, origins: list[str], public: frozenset[str] = OPEN_PATHS):
        self.app = app
        self._allowed = origin_allowed(origins)
        self._public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS" and not self._linkable(scope):
            origin = _header(scope, b"origin")
            if origin is not None:
                refused = not self._same_origin(scope, origin) and not self._allowed(origin.decode("latin-1"))
                shown = f"origin '{origin.decode('latin-1')[:100]}'"
            else:
                refused = (_header(scope, b"sec-fetch-site") or b"").strip().lower() == b"cross-site"
                shown = "a cross-site page"
            if refused:
                message = (f"a request from {shown} is refused: only the web UI and the origins given to nexa serve "
                           "--origins (default: localhost pages) may call this server from a browser")
                await _forbidden(message, "origin_not_allowed", scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _linkable(self, scope: Scope) -> bool:
        return scope["method"] in ("GET", "HEAD") and scope["path"] in self._public

    @staticmethod
    def _same_origin(scope: Scope, origin: bytes) -> bool:
        host = _header(scope, b"host")
        return host is not None and origin.lower() == f"{scope.get('scheme', 'http')}://".encode() + host.lower()


class LoopbackHostCheck:
    """A web page can point its own domain at 127.0.0.1 (DNS rebinding) and then read our answers
    as same-origin; it cannot make the browser send `Host: localhost`, so only those names pass, and the
    address the server is bound to (`--host 127.0.0.2`: clients address it by that)."""

    _HOST = re.compile(rb"^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(:\d*)?$")

    def __init__(self, app: ASGIApp, bound: str = "127.0.0.1"):
        self.app = app
        self._names = frozenset({*LOOPBACK_NAMES, bound.lower().strip("[]")})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = _header(scope, b"host")
            if host is not None and not self._allowed(host):
                shown = host.decode("latin-1")[:100]
                message = (f"Host '{shown}' is refused: a server bound to loopback answers only requests addressed to "
                           f"{', '.join(sorted(self._names))} (this blocks DNS-rebinding attacks); use one of those "
                           "names, or bind nexa serve --host to the address clients use")
                await _forbidden(message, "host_not_allowed", scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _allowed(self, host: bytes) -> bool:
        match = self._HOST.match(host.strip())
        return bool(match) and match.group(1).decode("latin-1").lower().strip("[]") in self._names


class APIKeyCheck:
    """Every route but the `public` ones (/health) needs `Authorization: Bearer KEY` or (as Anthropic
    clients send it) `x-api-key: KEY`; CORS preflights never carry either."""

    def __init__(self, app: ASGIApp, keys: list[str], public: frozenset[str] = OPEN_PATHS):
        self.app = app
        self._keys = [key.encode() for key in keys]
        self._public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self._public and scope["method"] != "OPTIONS":
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


class BodyTooSlow(HTTPException):
    """Raised from `receive` when the body is not all in by the deadline; the app's handlers make it a 408."""

    def __init__(self, timeout: float):
        super().__init__(408, f"the request body did not arrive within {timeout:g} s; send it at once, "
                              "or raise nexa serve --body-timeout")


class _Deadline:
    """When a request's body must be in, as one timer from its first read: asyncio.timeout around each read
    made and cancelled a timer per chunk, 5 us each (hot), and a 20 s clip's upload comes in ten. The timer
    cancels the task only while it waits in a read (TimeoutError there); a read begun after it is a timeout too."""

    def __init__(self, seconds: float):
        self._loop = asyncio.get_running_loop()
        self._when = self._loop.time() + seconds
        self._timer: asyncio.TimerHandle | None = None
        self._reading: asyncio.Task | None = None
        self._expired = False

    async def within(self, read: Receive) -> Message:
        if self._timer is None:
            self._timer = self._loop.call_at(self._when, self._expire)
        if self._expired or self._loop.time() >= self._when:
            raise TimeoutError
        task = self._reading = asyncio.current_task()
        assert task is not None
        before = pending(task)
        try:
            return await read()
        except asyncio.CancelledError:
            if self._expired and ours(task, before):
                raise TimeoutError from None
            raise
        finally:
            self._reading = None

    def _expire(self) -> None:
        self._expired = True
        if self._reading is not None:
            self._reading.cancel()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class BodyLimit:
    """Refuses bodies over `max_body` bytes: at once when Content-Length says so, else by counting
    the bytes as they arrive (a chunked or lying client cannot get past it). A body not complete
    `timeout` seconds after the request's headers is refused too: a trickling client holds no slot for long."""

    def __init__(self, app: ASGIApp, max_body: int, timeout: float = 30.0):
        self.app = app
        self.max_body = max_body
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_body:
            await self._refuse(BodyTooLarge(self.max_body), scope, receive, send)
            return
        received = 0
        started = complete = False
        deadline = _Deadline(self.timeout)

        async def counting_receive() -> Message:
            nonlocal received, complete
            if complete:  # only a disconnect is left to hear of: no deadline
                return await receive()
            try:
                message = await deadline.within(receive)
            except TimeoutError:
                raise BodyTooSlow(self.timeout) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            if complete:
                deadline.cancel()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise BodyTooLarge(self.max_body)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except (BodyTooLarge, BodyTooSlow) as exc:
            if started:
                raise
            await self._refuse(exc, scope, receive, send)
        finally:
            deadline.cancel()

    @staticmethod
    async def _refuse(exc: HTTPException, scope: Scope, receive: Receive, send: Send) -> None:
        type_ = "request_too_large" if exc.status_code == 413 else "request_timeout"
        response = error_response(exc.status_code, exc.detail, type_, code=type_, path=scope["path"])
        response.headers["Connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)


class _HeaderDeadline(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP/1.1 protocol (httptools' C parser where installed, else h11), closing a connection
    whose request headers are not all in within `timeout` seconds of its first byte (or of the connection):
    a client trickling headers holds nothing. Both parsers bound the size of a request's head themselves."""

    timeout = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._awaiting_headers():
            self._arm()
        elif self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _awaiting_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.timeout, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        if self._awaiting_headers() and not self.transport.is_closing():
            self.transport.close()


def header_deadline_protocol(timeout: float) -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn (`http=`) so request headers must arrive within `timeout` seconds."""
    return type("HeaderDeadline", (_HeaderDeadline,), {"timeout": timeout})
