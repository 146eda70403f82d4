"""unless_client_leaves: work awaited in the request's own task, cancelled when its client disconnects."""

from __future__ import annotations

import asyncio

import pytest

from nexa.errors import ClientGone
from nexa.server import body
from nexa.server.body import unless_client_leaves
from nexa.server.cancels import pending


class Client:
    """An ASGI receive whose client stays until `leave()`: its body is in, then it waits for the disconnect."""

    def __init__(self) -> None:
        self._gone = asyncio.Event()

    def leave(self) -> None:
        self._gone.set()

    async def receive(self) -> dict:
        await self._gone.wait()
        return {"type": "http.disconnect"}


def in_request(client: Client, work):
    """Run `work()` as a request's handler would: with the client's receive in the context."""
    async def handler():
        token = body._client_receive.set(client.receive)
        try:
            return await work()
        finally:
            body._client_receive.reset(token)
    return asyncio.ensure_future(handler())


def test_the_answer_comes_back_and_no_watcher_is_left():
    asyncio.run(_answer_comes_back())


async def _answer_comes_back():
    client = Client()

    async def work():
        await asyncio.sleep(0)
        return "answer"

    assert await in_request(client, lambda: unless_client_leaves(work())) == "answer"
    await asyncio.sleep(0)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


def test_a_client_that_leaves_cancels_the_work_and_the_task_goes_on():
    asyncio.run(_client_leaves())


async def _client_leaves():
    client = Client()
    stopped = asyncio.Event()
    after: list[str] = []

    async def work():
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()  # its cleanup (closing the engine's connection) runs before ClientGone is raised

    async def handler():
        try:
            await unless_client_leaves(work())
        except ClientGone as exc:
            after.append(str(exc))
        await asyncio.sleep(0)  # no cancellation is left pending on the task: it awaits on as usual
        after.append(f"cancelling={pending(asyncio.current_task())}")

    task = in_request(client, handler)
    await asyncio.sleep(0.01)
    client.leave()
    await asyncio.wait_for(task, 5)
    assert stopped.is_set()
    assert after == ["the client closed the connection before the answer was ready; the generation was stopped",
                     "cancelling=0"]


def test_a_cancellation_from_elsewhere_is_not_taken_for_a_client_that_left():
    asyncio.run(_cancelled_elsewhere())


async def _cancelled_elsewhere():
    client = Client()
    task = in_request(client, lambda: unless_client_leaves(asyncio.sleep(60)))
    await asyncio.sleep(0.01)
    task.cancel()  # a shutdown, say, while the client is still there
    with pytest.raises(asyncio.CancelledError):
        await task


def test_without_a_request_the_work_is_awaited_plainly():
    async def work():
        return 7

    assert asyncio.run(unless_client_leaves(work())) == 7
