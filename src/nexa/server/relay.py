"""Relay a request to a model's worker and its answer back, JSON or server-sent events.

The worker is llama.cpp's own server; its bodies are already OpenAI-shaped, so the router passes
streamed bytes through and only renames `model` to what the client asked for. Non-streamed
generations are streamed from the engine too, and collected (nexa.server.collect).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Iterable
from contextlib import aclosing, asynccontextmanager
from typing import Any, TypeVar

import httpx
from fastapi.responses import Response

from nexa.compat.translator import Translator
from nexa.errors import EngineRefused, NexaError, WorkerCrashed, out_of_files
from nexa.runtime import Lease
from nexa.server.body import unless_client_leaves
from nexa.server.collect import Collector
from nexa.server.metrics import note_model, note_usage
from nexa.server.stream import ENGINE, respond, sse_data
from nexa.server.forms import Upload, multipart
from nexa.server.worker_client import parts_request, worker_url

# Relay events the engine should never send are logged, not raised mid-stream.
log = logging.getLogger("nexa.relay")


_HINTS = {
    "exceed_context_size_error": "; shorten the prompt or lower max_tokens, or give the model more context: "
    "nexa serve --ctx N or --model-option NAME:ctx=N (with a larger --memory-budget if it needs one), or "
    "--kv-cache-type q8_0 to fit about twice the context in the same memory",
}


class ModelRenamer:
    """Replaces the engine's `"model":"<alias>"` with the client's name. Content strings are
    JSON-escaped, so the unescaped pattern can only be the `model` key itself."""

    def __init__(self, alias: str, requested: str):
        self._old = b'"model":' + json.dumps(alias).encode()
        self._new = b'"model":' + json.dumps(requested).encode()

    def __call__(self, data: bytes) -> bytes:
        return data.replace(self._old, self._new, 1)


def engine_refusal(status: int, content: bytes) -> EngineRefused:
    """The engine's error as ours: same status, a hint where we have one."""
    try:
        detail = json.loads(content)["error"]
        message, type_ = str(detail.get("message", "engine error")), str(detail.get("type", "server_error"))
    except (ValueError, KeyError, TypeError, AttributeError):
        message, type_ = content.decode(errors="replace")[:500] or "engine error", "server_error"
    if status < 500:
        type_ = type_ if type_.endswith("_error") else "invalid_request_error"
    return EngineRefused(status, message + _HINTS.get(type_, ""), type_)


_USAGE_KEY = '"usage":'
_USAGE_BYTES = _USAGE_KEY.encode()
_decoder = json.JSONDecoder()


def _usage(data: str) -> dict | None:
    """The `usage` object of an engine answer, found without parsing the rest. Strings inside the
    JSON are escaped, so the unescaped key can only be the field itself; the last one is the top-level one."""
    at = data.rfind(_USAGE_KEY)
    if at < 0:
        return None
    try:
        usage, _ = _decoder.raw_decode(data, at + len(_USAGE_KEY))
    except ValueError:
        return None
    return usage if isinstance(usage, dict) else None


def _crashed(lease: Lease, exc: Exception) -> NexaError:
    """Why the worker's answer broke off: the router out of open files (not the worker's fault), a drain, or a crash."""
    if (full := out_of_files(exc)) is not None:
        log.warning("%s", full.message)
        return full
    if lease.model.shutting_down:  # stopped by the drain after its grace, not by a fault
        return WorkerCrashed(
            f"the server is shutting down and stopped '{lease.model.id}' before this answer was complete; "
            "retry once it is back",
            code="server_shutting_down",
        )
    return WorkerCrashed(
        f"the worker for '{lease.model.id}' stopped while answering ({exc.__class__.__name__}); retry the request",
        code="worker_crashed",
    )


async def call(
    client: httpx.AsyncClient, lease: Lease, method: str, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    """One request to the lease's worker, which stays leased; a broken connection is WorkerCrashed, and a
    client that disconnects meanwhile cancels it (ClientGone). Its token usage, if any, goes to the request's metrics."""
    note_model(lease.model.id)
    try:
        request = client.build_request(method, worker_url(lease.worker.base_url, path), json=body, headers=lease.worker.headers)
        response = await unless_client_leaves(_send(client, request))
    except httpx.HTTPError as exc:
        raise _crashed(lease, exc) from exc
    if response.status_code < 400:
        note_usage(_usage(response.text))
    return response

# Requests one client request may have open to a worker at once: enough to keep its slots busy.
FAN_OUT = 8
T = TypeVar("T")


async def gather_limited(awaitables: Iterable[Awaitable[T]], limit: int = FAN_OUT) -> list[T]:
    """Await them all, at most `limit` at a time, so a huge request cannot open hundreds of
    connections to one worker; results come back in order."""
    gate = asyncio.Semaphore(limit)

    async def one(awaitable: Awaitable[T]) -> T:
        async with gate:
            return await awaitable

    return list(await asyncio.gather(*(one(a) for a in awaitables)))


async def post_all(client: httpx.AsyncClient, lease: Lease, path: str, bodies: list[dict[str, Any]]) -> list[bytes]:
    """Each body's answer, a few at a time (`gather_limited`), in order; the first engine refusal is raised."""
    replies = await gather_limited(call(client, lease, "POST", path, body) for body in bodies)
    for reply in replies:
        if reply.status_code >= 400:
            raise engine_refusal(reply.status_code, reply.content)
    return [reply.content for reply in replies]


async def post_json(client: httpx.AsyncClient, lease: Lease, path: str, body: dict[str, Any], requested: str) -> Response:
    """A non-streamed generation; the lease is released when the answer is in."""
    answer = await fetch_json(client, lease, path, body)
    return Response(json.dumps({**answer, "model": requested}, ensure_ascii=False), media_type="application/json")


async def post_stream(client: httpx.AsyncClient, lease: Lease, path: str, body: dict[str, Any], requested: str) -> Response:
    """Open a streaming request whose answer goes to the client as the engine wrote it. Errors before the
    first byte are plain HTTP errors; after it, a final `data: {"error": ...}` event (nexa.server.stream).
    Closing the client's connection cancels the generation.

    Usage is always asked of the engine, for the token metrics, and dropped again when the client
    did not ask for it."""
    options = body.get("stream_options") or {}
    wants_usage = bool(options.get("include_usage"))
    body = {**body, "stream_options": {**options, "include_usage": True}}
    upstream = await _open_stream(client, lease, _post(client, lease, path, body))
    return respond(_lines(upstream, lease), Relayed(ModelRenamer(lease.model.id, requested), wants_usage), ENGINE, path)


class Relayed(Translator):
    """The engine's own events passed on as its bytes: only `model` renamed, and the usage dropped where the
    client did not ask for it. Only a line that holds usage is decoded and parsed."""

    def __init__(self, rename: ModelRenamer, wants_usage: bool):
        self._rename, self._wants_usage = rename, wants_usage

    def feed(self, line: bytes) -> list[bytes]:
        if _USAGE_BYTES in line:
            note_usage(_usage(line.decode(errors="replace")))
            line = line if self._wants_usage else _without_usage(line)
        return [self._rename(line) + b"\n\n"] if line else []

    def fail(self, body: dict[str, Any]) -> list[bytes]:
        return [sse_data(body)]


def _without_usage(line: bytes) -> bytes:
    """The event without its usage: a usage-only chunk (chat) goes, a final chunk (completions) loses the field."""
    try:
        chunk = json.loads(line.removeprefix(b"data: "))
    except ValueError:
        return line
    if not isinstance(chunk, dict) or not chunk.get("choices"):
        return b""
    chunk.pop("usage", None)
    return sse_data(chunk).removesuffix(b"\n\n")


async def fetch_json(client: httpx.AsyncClient, lease: Lease, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A non-streamed generation, parsed; the lease is released when it is in. It is asked of the engine as a
    stream and collected (see nexa.server.collect), so a client that leaves stops it. An engine error is raised
    as EngineRefused, so each dialect's handler shapes it."""
    if body.get("tools") and body.get("logprobs"):  # the engine streams neither together
        return await _fetch_whole(client, lease, path, body)
    collector = Collector()

    async def collect() -> None:
        async for chunk in await open_chunks(client, lease, path, body):
            collector.feed(chunk)

    await unless_client_leaves(collect())
    return collector.result()


async def _fetch_whole(client: httpx.AsyncClient, lease: Lease, path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        response = await call(client, lease, "POST", path, body)
    finally:
        lease.release()
    if response.status_code >= 400:
        raise engine_refusal(response.status_code, response.content)
    return response.json()


async def open_chunks(
    client: httpx.AsyncClient, lease: Lease, path: str, body: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """Start a stream and return its chunks, parsed, for dialects that translate them. An engine
    error before the first chunk is raised here as EngineRefused; a worker lost mid-stream is
    WorkerCrashed from the iterator. The usage chunk always comes last. Closing the iterator
    (the client left) closes the engine's connection, which stops the generation."""
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    return _parsed_chunks(await _open_stream(client, lease, _post(client, lease, path, body)), lease)


async def open_transcript(
    client: httpx.AsyncClient, lease: Lease, wav: bytes, form: dict[str, str]
) -> AsyncIterator[dict[str, Any]]:
    """As `open_chunks`, for the engine's own transcription route: its `transcript.text.*` events, parsed."""
    return _parsed_chunks(await _open_stream(client, lease, _post_form(lease, wav, form)), lease)


async def _send(client: httpx.AsyncClient, request: httpx.Request, stream: bool = False) -> httpx.Response:
    """Send, once more on a fresh connection if a pooled one was closed by the engine just before use (its
    keep-alive ran out while the router was busy). A worker that really died fails the second try as well."""
    try:
        return await client.send(request, stream=stream)
    except httpx.RemoteProtocolError as exc:
        if "without sending a response" not in str(exc):
            raise
        return await client.send(request, stream=stream)


async def _open_stream(client: httpx.AsyncClient, lease: Lease, request: Awaitable[httpx.Request]) -> httpx.Response:
    """The worker's streaming answer to `request` (being built), its headers in. On failure the lease is
    released and the engine's error raised as EngineRefused, a lost worker as WorkerCrashed."""
    note_model(lease.model.id)
    try:
        upstream = await _send(client, await request, stream=True)
    except BaseException as exc:  # a client that left cancels it here too
        lease.release()
        if isinstance(exc, httpx.HTTPError):
            raise _crashed(lease, exc) from exc
        raise
    if upstream.status_code >= 400:
        content = await upstream.aread()
        await upstream.aclose()
        lease.release()
        raise engine_refusal(upstream.status_code, content)
    return upstream


async def _post(client: httpx.AsyncClient, lease: Lease, path: str, body: dict[str, Any]) -> httpx.Request:
    """The POST of `body` to the worker. A body that carries images or audio (megabytes of base64) is
    JSON-encoded in a thread, as httpx would encode it, not on the event loop."""
    url, headers = worker_url(lease.worker.base_url, path), lease.worker.headers
    if not _carries_media(body):
        return client.build_request("POST", url, json=body, headers=headers)
    content = await asyncio.to_thread(lambda: json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    return client.build_request("POST", url, content=content, headers={**headers, "Content-Type": "application/json"})


async def _post_form(lease: Lease, wav: bytes, form: dict[str, str]) -> httpx.Request:
    """`wav` and the `form` fields as a multipart POST to the engine's transcription route: the audio as
    bytes, not base64 in JSON, which the engine reads for a fifth of a long clip's time."""
    content_type, parts = multipart(form, {"file": Upload("audio.wav", "audio/wav", wav)})
    url = worker_url(lease.worker.base_url, "/v1/audio/transcriptions")
    return parts_request(url, {**lease.worker.headers, "Content-Type": content_type}, parts)


_MEDIA_PARTS = ("image_url", "input_audio")


def _carries_media(body: dict[str, Any]) -> bool:
    """Whether a chat body holds an image or audio part (inline: the media resolver put them there)."""
    return any(isinstance(message.get("content"), list)
               and any(isinstance(part, dict) and part.get("type") in _MEDIA_PARTS for part in message["content"])
               for message in body.get("messages") or () if isinstance(message, dict))


@asynccontextmanager
async def _reading(upstream: httpx.Response, lease: Lease) -> AsyncIterator[None]:
    """Around reading the engine's stream: a broken connection is WorkerCrashed, and however the reading
    ends (finished, failed, or closed because the client left) the engine's connection is closed, which
    stops the generation, and the lease released."""
    try:
        yield
    except httpx.HTTPError as exc:
        raise _crashed(lease, exc) from exc
    finally:
        try:
            await upstream.aclose()
        finally:
            lease.release()


async def _lines(upstream: httpx.Response, lease: Lease) -> AsyncIterator[bytes]:
    """The engine's stream line by line, as bytes, blank lines left out: what the engine's own dialect
    passes on untouched. Read raw and split here: the engine's events are UTF-8 JSON and `data:` lines,
    so no text decoding is needed for the lines that are only passed on."""
    async with _reading(upstream, lease):
        rest = b""
        async for data in upstream.aiter_raw():
            *lines, rest = (rest + data).split(b"\n")
            for line in lines:
                if line := line.removesuffix(b"\r"):
                    yield line
        if rest:
            yield rest


_DATA, _DONE = b"data: ", b"data: [DONE]"


async def _parsed_chunks(upstream: httpx.Response, lease: Lease) -> AsyncIterator[dict[str, Any]]:
    async with aclosing(_lines(upstream, lease)) as lines:  # closed with this one: the engine's connection too
        async for line in lines:
            if not line.startswith(_DATA) or line == _DONE:
                continue
            try:
                chunk = json.loads(line[len(_DATA):])
            except ValueError:
                chunk = None
            if not isinstance(chunk, dict):  # 'data: null' and the like: no event of llama-server's, nothing to relay
                log.warning("skipped an engine stream event that is not a JSON object: %.200r", line)
                continue
            if "error" in chunk:
                error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
                raise EngineRefused(500, str(error.get("message", "engine error")), str(error.get("type", "server_error")))
            if chunk.get("usage"):
                note_usage(chunk["usage"])
            yield chunk
