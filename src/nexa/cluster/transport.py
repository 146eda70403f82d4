"""The router's way to a replica: an httpx transport that sends each worker request through Ray Serve.

A deployment's base URL is `http://<app>.nexa-ray`; the transport calls that application's `relay`
as a streaming handle call and hands its chunks back as the response body. So the relay, every API
dialect and the disconnect handling stay as they are for local workers: closing the response cancels
the call on the replica, and a replica lost mid-answer is an httpx error, which the relay already turns
into a clean error (JSON, or a final SSE error event)."""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx

from nexa.cluster.affinity import BLOCK, RouteKey, prefix_blocks
from nexa.server.session import current_session_hint

DOMAIN = "nexa-ray"
PROBE = "x-nexa-probe"  # marks the router's own look at a replica, which is not use
INLINE = 64 * BLOCK  # bodies hashed on the event loop; longer ones in a thread


def base_url(app: str) -> str:
    return f"http://{app}.{DOMAIN}"


class _ReplicaStream(httpx.AsyncByteStream):
    def __init__(self, call: Any):
        self._call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._call:
                yield chunk
        except Exception as exc:  # the replica or its node died mid-answer (RayActorError, ActorDiedError ...)
            raise httpx.ReadError(f"replica lost: {exc.__class__.__name__}") from exc

    async def aclose(self) -> None:
        self._call.cancel()  # a no-op once it has ended; otherwise the replica stops generating


class ReplicaTransport(httpx.AsyncBaseTransport):
    """Worker requests over Ray Serve handles, one handle per model application, made once."""

    def __init__(self) -> None:
        self._handles: dict[str, Any] = {}
        self.answered: Counter[tuple[str, str, str]] = Counter()  # (app, replica, node ip) -> requests
        self.last_request: dict[str, float] = {}  # app -> monotonic time of its latest client request

    def _handle(self, app: str) -> Any:
        if app not in self._handles:
            from ray import serve

            self._handles[app] = serve.get_app_handle(app).options(stream=True, method_name="relay")
        return self._handles[app]

    def forget(self, app: str) -> None:
        """The application was deleted: a later deployment under the same name gets a fresh handle."""
        self._handles.pop(app, None)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        app = (request.url.host or "").removesuffix("." + DOMAIN)
        body = await request.aread()
        probe = PROBE in request.headers
        if not probe:
            self.last_request[app] = time.monotonic()
        route = RouteKey(probe=True) if probe else await route_key(body)
        try:
            call = contextvars.copy_context().run(
                _own_call, self._handle(app), request.method, request.url.raw_path.decode(), body or None,
                route=route, content_type=request.headers.get("content-type", "application/json"),
            )
            head = await call.__anext__()
        except Exception as exc:  # no replica could take it, or it died before answering
            raise httpx.ConnectError(f"no replica of {app} answered: {exc}", request=request) from exc
        self.answered[app, head["replica"], head["node_ip"]] += 1
        headers = {"content-type": head["content_type"], "x-nexa-replica": head["replica"], "x-nexa-node": head["node_ip"]}
        return httpx.Response(head["status"], headers=headers, stream=_ReplicaStream(call), request=request)


def _own_call(handle: Any, *args: Any, **kwargs: Any) -> Any:
    """The handle call under a request id of its own. Serve tags a call with the id of the client request
    being served (a context variable the request's tasks share) and tracks calls by it: a request that
    makes two calls at once (a recording's groups, an embedding batch's parts) would have the second's
    answer never arrive. Run in a copy of the context, so the request's own id is left as it was."""
    from ray.serve.context import _set_request_context

    _set_request_context(_internal_request_id=uuid.uuid4().hex)
    return handle.remote(*args, **kwargs)


async def route_key(body: bytes) -> RouteKey:
    """What nexa.cluster.routing chooses a replica by: the client's session hint and the prompt's prefix."""
    blocks = prefix_blocks(body) if len(body) <= INLINE else await asyncio.to_thread(prefix_blocks, body)
    return RouteKey(current_session_hint(), blocks)
