"""Ollama's model management on nexa's port: /api/version, /api/tags, /api/show, /api/ps, /api/pull
and /api/delete, over nexa's store and model manager. Every quant of a pulled model is one model."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from nexa.compat.ollama import (
    details,
    digest,
    iso,
    model_info,
    modelfile,
    ollama_capabilities,
    parameters_text,
    resolve,
    store_name,
    unqualified,
)
from nexa.errors import HubError, NexaError
from nexa.hub.auto import pull_named
from nexa.server.deps import Manager
from nexa.server.errors import error_response, nexa_error_response
from nexa.server.pull_pool import PullPool
from nexa.server.stream import ndjson
from nexa.store import Manifest, ModelRef, Store
from nexa.store.facts import capabilities, facts, model_id
from nexa.wire.ollama import (
    ErrorResponse,
    ListedModel,
    ModelList,
    ModelRequest,
    Progress,
    PullRequest,
    RunningList,
    RunningModel,
    ShowResponse,
    Version,
)

if TYPE_CHECKING:
    from nexa.hub.resolve import RepoFiles

router = APIRouter(tags=["ollama"])
log = logging.getLogger("nexa.server")

_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (400, 404)}
# Ollama's "forever" (keep_alive < 0): its expiry is as far off as a Go duration reaches.
_FOREVER = datetime(2318, 1, 1, tzinfo=timezone.utc)
# HubError codes → HTTP status: a missing or refused repo is the client's to fix.
_HUB_STATUS = {"hub_not_found": 404, "hub_access_denied": 403}


@router.get("/api/version", response_model=Version)
async def version() -> Version:
    """The Ollama API version nexa speaks (clients check it before using newer fields)."""
    return Version()


def _listed(store: Store, manifest: Manifest, quant: str) -> ListedModel:
    facts_ = facts(manifest, store.model_dir(manifest.name), quant)
    name = model_id(manifest, quant)
    size = manifest.quants[quant].size + (manifest.mmproj.size if manifest.mmproj else 0)
    return ListedModel(name=name, model=name, modified_at=iso(manifest.pulled_at), size=size,
                       digest=digest(manifest, quant), details=details(facts_, quant))


@router.get("/api/tags", response_model=ModelList)
async def tags(manager: Manager) -> ModelList:
    """Every pulled quant. Reads GGUF headers (cached per file): in a thread."""
    store = manager.store

    def listed() -> list[ListedModel]:
        return [_listed(store, m, quant) for m in store.list() for quant in sorted(m.quants)]

    return ModelList(models=await asyncio.to_thread(listed))


@router.post("/api/show", response_model=ShowResponse, responses=_ERRORS)
async def show(request: ModelRequest, manager: Manager) -> ShowResponse:
    """Capabilities, header facts, template and sampling defaults of one model."""
    manifest, quant = resolve(manager.resolve, request.model)
    folder = manager.store.model_dir(manifest.name)

    def shown() -> ShowResponse:
        facts_ = facts(manifest, folder, quant)
        num_ctx = manager.planned_context(manifest, quant)
        return ShowResponse(
            modelfile=modelfile(manifest, quant, facts_, num_ctx), parameters=parameters_text(manifest, num_ctx),
            template=facts_.template,
            details=details(facts_, quant), model_info=model_info(facts_), modified_at=iso(manifest.pulled_at),
            capabilities=ollama_capabilities(capabilities(manifest, folder, quant), facts_, manifest.model_type),
        )

    return await asyncio.to_thread(shown)


@router.get("/api/ps", response_model=RunningList)
async def ps(manager: Manager) -> RunningList:
    """Loaded models; expires_at comes from each one's keep-alive (one serving now expires keep-alive after)."""
    now_mono, now = time.monotonic(), datetime.now(timezone.utc)
    store = manager.store

    def running() -> list[RunningModel]:
        out = []
        for m in sorted(manager.loaded(), key=lambda m: m.last_used):
            deadline = m.expires_at()
            left = m.keep_alive if deadline is None else max(0.0, deadline - now_mono)
            forever = m.keep_alive < 0 or left >= (_FOREVER - now).total_seconds()
            expires = _FOREVER if forever else now + timedelta(seconds=left)
            listed = _listed(store, m.manifest, m.quant)
            held = m.footprint.ram + m.footprint.device_bytes
            out.append(RunningModel(**{**listed.model_dump(), "size": held or listed.size},
                                    size_vram=m.footprint.device_bytes, expires_at=iso(expires),
                                    context_length=m.spec.ctx))
        return out

    return RunningList(models=await asyncio.to_thread(running))


@router.delete("/api/delete", response_class=Response, responses={200: {"description": "Deleted; no body."}, **_ERRORS})
async def delete(request: ModelRequest, manager: Manager, http: Request) -> Response:
    """Delete a model (a name with a quant: that quant only), unloading what of it is loaded; a pull of it
    under way stops, leaving its partial files for the next pull to resume."""
    ref = ModelRef.parse(store_name(request.model))
    if http.app.state.pulls.stop(ref.repo) and manager.store.get(ref.repo) is None:
        return Response(status_code=200)
    manifest, _ = resolve(manager.resolve, request.model)
    for loaded in manager.loaded():
        if loaded.manifest.name == manifest.name and ref.quant in (None, loaded.quant):
            await manager.unload(loaded.id)
    await asyncio.to_thread(manager.store.remove, ModelRef(manifest.name, ref.quant))
    return Response(status_code=200)


# ---------------------------------------------------------------- pull

Emit = Callable[[dict[str, Any]], None]


class _Relay:
    """AutoPullEvents as Ollama's progress lines, posted to the event loop; byte counts at most every 0.2 s a file."""

    INTERVAL = 0.2

    def __init__(self, emit: Emit):
        self._emit = emit
        self._digests: dict[str, str | None] = {}

    def status(self, text: str) -> None:
        self._emit({"status": text})

    def listed(self, files: RepoFiles) -> None:
        remote = [f for group in files.quants.values() for f in group] + files.mmprojs
        self._digests = {f.name: f.sha256 for f in remote}

    def waiting(self, repo: str) -> None:
        self._emit({"status": f"waiting for another pull of {repo}"})

    def file(self, name: str, size: int) -> Callable[[int], None]:
        line = {"status": f"pulling {name}", "digest": f"sha256:{self._digests.get(name) or ''}", "total": size}
        last = [0.0]

        def progress(done: int) -> None:
            now = time.monotonic()
            if done >= size or now - last[0] >= self.INTERVAL:
                last[0] = now
                self._emit({**line, "completed": done})

        self._emit({**line, "completed": 0})
        return progress


def _pull(store: Store, ref: ModelRef, events: _Relay) -> None:
    """`nexa pull NAME --yes` (nexa.hub.auto) with Ollama's progress lines; runs on a pull thread."""
    if pull_named(store, ref, events):
        events.status("verifying sha256 digest")
        events.status("writing manifest")


def _pull_error(exc: NexaError) -> JSONResponse:
    if isinstance(exc, HubError):
        status = _HUB_STATUS.get(exc.code or "", 502)
        return error_response(status, exc.message, "hub_error", path="/api/pull")
    return nexa_error_response(exc, "/api/pull")


@router.post("/api/pull", responses={200: {"model": Progress, "content": {"application/x-ndjson": {}}}, **_ERRORS},
             response_model=None)
async def pull(request: PullRequest, manager: Manager, http: Request) -> Response:
    """Pull from Hugging Face (HF_ENDPOINT) into the store, as `nexa pull` does: progress as NDJSON
    lines ending with {"status": "success"}, or (stream false) one answer when it is done."""
    target = store_name(request.model)
    if "/" not in target.partition(":")[0]:
        raise unqualified(request.model)
    ref = ModelRef.parse(target)  # a malformed name is a 400 before anything starts
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def emit(line: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(lines.put_nowait, line)

    pulls: PullPool = http.app.state.pulls
    job = asyncio.create_task(pulls.run(ref.repo, functools.partial(_pull, manager.store, ref), _Relay(emit)))
    job.add_done_callback(lambda _: lines.put_nowait(None))
    if not request.stream:
        try:
            await asyncio.shield(job)  # a client that leaves does not stop the pull: it resumes next time anyway
        except NexaError as exc:
            return _pull_error(exc)
        return JSONResponse({"status": "success"})
    return StreamingResponse(_progress(request.model, job, lines), media_type="application/x-ndjson")


async def _progress(
    name: str, job: asyncio.Task[None], lines: asyncio.Queue[dict[str, Any] | None]
) -> AsyncIterator[bytes]:
    while (line := await lines.get()) is not None:
        yield ndjson(line)
    try:
        job.result()
    except NexaError as exc:
        yield bytes(_pull_error(exc).body) + b"\n"
        return
    except Exception:  # the stream has begun: the client can only be told in a last line
        log.exception("pull of %s failed", name)
        yield ndjson({"error": "the pull failed; the server log has details. Run the same pull again to resume it"})
        return
    yield ndjson({"status": "success"})
