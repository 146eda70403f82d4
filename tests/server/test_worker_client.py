"""The router's client to its workers (httpx on asyncio streams), against a raw loopback HTTP server
that behaves as llama-server does: keep-alive that the server ends, chunked streams, dropped connections."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from nexa.server.worker_client import LoopbackTransport, worker_client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def _read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


def test_a_keep_alive_connection_the_worker_closed_is_not_reused():
    connections = []

    async def one_answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()  # as llama-server does once its keep-alive runs out

    async def main() -> list[str]:
        server, url = await _serve(one_answer_then_close)
        async with server, worker_client() as client:
            first = (await client.get(url)).text
            await asyncio.sleep(0.4)
            second = (await client.get(url)).text
        return [first, second]

    assert asyncio.run(main()) == ["ok", "ok"]
    assert len(connections) == 2


def test_a_stream_arrives_chunk_by_chunk_as_the_worker_writes_it():
    async def two_events(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for event in (b"data: 1\n\n", b"data: 2\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.sleep(0.3)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def main() -> list[tuple[bytes, float]]:
        server, url = await _serve(two_events)
        async with server, worker_client() as client, client.stream("POST", url, json={}) as response:
            started = asyncio.get_running_loop().time()
            return [(data, asyncio.get_running_loop().time() - started) async for data in response.aiter_raw()]

    got = asyncio.run(main())
    assert [data for data, _ in got] == [b"data: 1\n\n", b"data: 2\n\n"]
    assert got[0][1] < 0.2 < got[1][1]  # the first was passed on before the second was written


def test_a_worker_that_drops_the_connection_midway_is_an_httpx_error():
    async def drop_midway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n")
        await writer.drain()
        writer.transport.abort()

    async def main() -> None:
        server, url = await _serve(drop_midway)
        async with server, worker_client() as client, client.stream("POST", url, json={}) as response:
            async for _ in response.aiter_raw():
                pass

    with pytest.raises(httpx.HTTPError):
        asyncio.run(main())


def test_no_worker_listening_is_a_connect_error():
    async def main() -> None:
        server, url = await _serve(_read_request)  # type: ignore[arg-type]
        server.close()
        await server.wait_closed()
        async with worker_client() as client:
            await client.get(url)

    with pytest.raises(httpx.ConnectError):
        asyncio.run(main())


def test_answers_read_to_the_end_leave_their_connection_for_the_next_request():
    connections = []

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while True:
            try:
                await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
            await writer.drain()

    async def main() -> list[str]:
        server, url = await _serve(keep_alive)
        async with server, worker_client() as client:
            return [(await client.get(url)).text for _ in range(3)]

    assert asyncio.run(main()) == ["ok"] * 3
    assert len(connections) == 1


def test_idle_connections_of_a_stopped_worker_are_closed_at_the_next_answer():
    stopped = asyncio.Event()

    async def answer_then_stop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await stopped.wait()
        writer.close()  # the worker stops: its side of the idle connection closes

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async def main() -> int:
        gone, gone_url = await _serve(answer_then_stop)
        alive, alive_url = await _serve(answer)
        transport = LoopbackTransport()
        async with gone, alive, httpx.AsyncClient(transport=transport) as client:
            await client.get(gone_url)
            stopped.set()
            await asyncio.sleep(0.2)
            await client.get(alive_url)
            return sum(len(idle) for idle in transport._idle.values())

    assert asyncio.run(main()) == 1  # the live worker's connection; the stopped one's is closed
