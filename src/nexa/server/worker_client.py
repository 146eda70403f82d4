"""The router's HTTP client to its workers: httpx over httpcore, on asyncio's own streams.

httpcore reaches sockets through anyio, which wraps every read in a cancel scope and an exception
map, two context managers per read; a streamed answer is one read per token, and those two were
about half the router's CPU time per streamed token (bench/router_cpu.py). Workers listen on
loopback over plain HTTP, reads have no deadline (a generation runs for minutes) and only the
connect has one, so asyncio's streams are all this needs: the same httpcore connection pool and
HTTP/1.1 parser, through httpcore's documented network-backend interface.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

import httpcore
import httpx

# Generations can run for minutes: no read timeout. Idle connections expire before llama.cpp's own
# 5 s keep-alive does.
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=4.0)
TIMEOUT = httpx.Timeout(None, connect=5.0)
T = TypeVar("T")


def worker_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The client for the router's requests to workers: `transport` where the workers are elsewhere
    (Ray Serve handles), else loopback HTTP on asyncio streams."""
    return httpx.AsyncClient(limits=LIMITS, timeout=TIMEOUT, transport=transport or _loopback_transport())


def _loopback_transport() -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(limits=LIMITS)
    # httpx builds its pool without a way to name the network backend; the same pool, with ours.
    transport._pool = httpcore.AsyncConnectionPool(
        max_connections=LIMITS.max_connections, max_keepalive_connections=LIMITS.max_keepalive_connections,
        keepalive_expiry=LIMITS.keepalive_expiry, network_backend=AsyncioBackend(),
    )
    return transport


async def _within(awaitable: Awaitable[T], timeout: float | None, error: type[Exception]) -> T:
    if timeout is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError as exc:
        raise error(f"no progress within {timeout} s") from exc


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection to a worker, as httpcore reads and writes it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader, self._writer = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return await _within(self._reader.read(max_bytes), timeout, httpcore.ReadTimeout)
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            await _within(self._writer.drain(), timeout, httpcore.WriteTimeout)
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        self._writer.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("workers are reached over plain HTTP on loopback")

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # an idle connection with something to read was closed by the worker
            return self._reader.at_eof() or self._writer.is_closing()
        return self._writer.get_extra_info(info)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[tuple[int, int, int | bytes | None]] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        try:
            reader, writer = await _within(asyncio.open_connection(host, port, local_addr=local), timeout,
                                           httpcore.ConnectTimeout)
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock: socket.socket = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)  # type: ignore[call-overload]
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
