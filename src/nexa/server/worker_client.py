"""The router's HTTP client to its local workers: httpx, over a transport of llhttp's parser (httptools).

A streamed answer is one small chunk per token. httpx's default transport reads it through anyio (a
cancel scope and an exception map around every read), h11's pure-Python parser and a stack of
generators: about 110 us of CPU per token here, out of the engine's cores. This transport speaks the
same HTTP/1.1 to the same loopback workers on asyncio's streams, parsing with httptools (the C parser
uvicorn uses for the router's own clients): about 15 us. Everything above it (the relay, every dialect,
the errors it raises) stays httpx's. Workers on a Ray cluster have a transport of their own
(nexa.cluster.transport); each replica reaches its own engine through this client too.

It covers what the router asks of llama.cpp's server, and no more: plain HTTP on loopback, bodies of
known length, keep-alive with an idle expiry shorter than the engine's own 5 s.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import httptools
import httpx

TIMEOUT = httpx.Timeout(None, connect=5.0)  # generations run for minutes: no read deadline
KEEPALIVE_EXPIRY = 4.0  # idle connections go before llama.cpp's own 5 s keep-alive closes them
MAX_IDLE = 64  # idle connections kept per worker
_READ = 64 * 1024
T = TypeVar("T")


def worker_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The client for the router's requests to workers: `transport` where the workers are elsewhere
    (Ray Serve handles), else loopback HTTP through `LoopbackTransport`."""
    return _DirectClient(transport or LoopbackTransport())


@functools.lru_cache(maxsize=512)
def worker_url(base_url: str, path: str) -> httpx.URL:
    """A worker's URL, parsed once: httpx parses a URL's text in Python on every request (~40 us)."""
    return httpx.URL(base_url + path)


class _DirectClient(httpx.AsyncClient):
    """httpx's client, handing each request straight to its transport. Workers use no cookies, auth or
    redirects, and the client's handling of them (urllib's cookie jar reading every answer, among the rest)
    took ~70 us a request, on the CPU the engine needs."""

    def __init__(self, transport: httpx.AsyncBaseTransport):
        super().__init__(timeout=TIMEOUT, transport=transport)
        self._direct = transport

    async def send(self, request: httpx.Request, *, stream: bool = False, **_: Any) -> httpx.Response:
        response = await self._direct.handle_async_request(request)
        response.request = request
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response


class Parts(httpx.AsyncByteStream):
    """A request body held in parts (a form around a file's bytes), sent together with no copy made."""

    def __init__(self, parts: list[bytes]):
        self._parts = parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self._parts:
            yield part


def parts_request(url: httpx.URL, headers: dict[str, str], parts: list[bytes]) -> httpx.Request:
    """A POST of `parts` to a worker, with the client's timeouts."""
    return httpx.Request("POST", url, headers={**headers, "Content-Length": str(sum(map(len, parts)))},
                         stream=Parts(parts), extensions={"timeout": TIMEOUT.as_dict()})


async def _within(awaitable: Awaitable[T], timeout: float | None, error: type[httpx.TransportError],
                  request: httpx.Request) -> T:
    if timeout is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError as exc:
        raise error(f"no answer within {timeout} s", request=request) from exc


class _Connection:
    """One connection to a worker, answering one request at a time; the parser's callbacks fill it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.idle_since = 0.0
        self._begin()

    def _begin(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.head_done = self.complete = self.keep_alive = False
        self.body: list[bytes] = []

    # httptools' callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.head_done = 100 > self.status or self.status >= 200  # an interim 1xx answer is not the head
        if not self.head_done:
            self.headers = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True
            self.keep_alive = self._parser.should_keep_alive()  # llhttp answers this only within a callback

    @property
    def reusable(self) -> bool:
        """Read to the end and kept alive. llama.cpp's server closes a connection once it has streamed an
        answer (server-sent events), whatever its Keep-Alive header says: such a one is never reused."""
        streamed = any(name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                       for name, value in self.headers)
        return self.complete and self.keep_alive and not streamed and not self.writer.is_closing()

    @property
    def stale(self) -> bool:
        """Closed by the worker while idle, or idle too long: not to be used again."""
        return (self.reader.at_eof() or self.writer.is_closing()
                or time.monotonic() - self.idle_since > KEEPALIVE_EXPIRY)

    async def send(self, request: httpx.Request) -> None:
        """Write the request; read its answer's head (status and headers)."""
        self._begin()
        message = [f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\n".encode()]
        message += [name + b": " + value + b"\r\n" for name, value in request.headers.raw]
        message.append(b"\r\n")
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        async for part in request.stream:  # type: ignore[union-attr]
            message.append(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
        if chunked:
            message.append(b"0\r\n\r\n")
        try:  # in one write (uvloop's is one writev): a multipart form is a dozen parts, each a segment of its own
            self.writer.writelines(message)
            await self.writer.drain()
        except OSError as exc:
            raise httpx.WriteError(str(exc), request=request) from exc
        timeout = request.extensions.get("timeout", {}).get("read")
        while not self.head_done:
            if not await _within(self.feed(request), timeout, httpx.ReadTimeout, request):
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    async def feed(self, request: httpx.Request) -> bool:
        """Parse what the worker sent next; False when it closed the connection."""
        try:
            data = await self.reader.read(_READ)
        except OSError as exc:
            raise httpx.ReadError(str(exc), request=request) from exc
        if not data:
            return False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise httpx.RemoteProtocolError(f"the worker's answer is not HTTP/1.1: {exc}", request=request) from exc
        return True

    def close(self) -> None:
        self.writer.close()


class _Body(httpx.AsyncByteStream):
    """An answer's body as the worker sends it; closed unread, it closes the connection (which stops a
    generation), and read to the end it goes back to the pool."""

    def __init__(self, connection: _Connection, request: httpx.Request, pool: LoopbackTransport):
        self._connection, self._request, self._pool = connection, request, pool

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while True:
            if connection.body:
                for chunk in connection.body:
                    yield chunk
                connection.body.clear()
            elif connection.complete:
                return
            elif not await connection.feed(self._request):
                raise httpx.RemoteProtocolError("peer closed connection without sending complete message body",
                                                request=self._request)

    async def aclose(self) -> None:
        if self._connection.reusable and not self._connection.body:
            self._pool.put_back(self._connection, self._request.url)
        else:
            self._connection.close()


class LoopbackTransport(httpx.AsyncBaseTransport):
    """httpx's transport for plain HTTP/1.1 to loopback workers, with a keep-alive pool per worker."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        connection = await self._connect(request)
        try:
            await connection.send(request)
        except BaseException:
            connection.close()
            raise
        return httpx.Response(connection.status, headers=connection.headers, stream=_Body(connection, request, self),
                              request=request, extensions={"http_version": b"HTTP/1.1"})

    async def _connect(self, request: httpx.Request) -> _Connection:
        origin = (request.url.host, request.url.port or 80)
        idle = self._idle.pop(origin, [])  # a worker's port is gone once it stops: no entry outlives its use
        while idle:
            connection = idle.pop()
            if not connection.stale:
                if idle:
                    self._idle[origin] = idle
                return connection
            connection.close()
        timeout = request.extensions.get("timeout", {}).get("connect")
        try:
            reader, writer = await _within(asyncio.open_connection(*origin), timeout, httpx.ConnectTimeout, request)
        except OSError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        return _Connection(reader, writer)

    def put_back(self, connection: _Connection, url: httpx.URL) -> None:
        self._sweep()
        idle = self._idle.setdefault((url.host, url.port or 80), [])
        if len(idle) < MAX_IDLE:
            connection.idle_since = time.monotonic()
            idle.append(connection)
        else:
            connection.close()

    def _sweep(self) -> None:
        """Close the idle connections of workers that stopped, or idle past the expiry: no socket is held
        for a model unloaded long ago."""
        for origin, idle in list(self._idle.items()):
            for connection in [c for c in idle if c.stale]:
                connection.close()
                idle.remove(connection)
            if not idle:
                del self._idle[origin]

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
