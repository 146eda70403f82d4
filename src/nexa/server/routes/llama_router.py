"""llama-server's router-mode management API, which its web UI (served at `/`) speaks: /props, /models,
/models/load, /models/unload, /models/sse, POST and DELETE /models, over the same store and model
manager as /v1/models, /v1/load, /v1/unload and /api/pull.

The UI's other server features (server-side tools, the CORS proxy, resumable streams) answer as a
llama-server started without them does, so that the UI hides them rather than breaking.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from nexa import __version__
from nexa.errors import Forbidden, InvalidRequest, NexaError
from nexa.runtime import ModelManager
from nexa.server import relay
from nexa.server.deps import Manager, WorkerClient
from nexa.server.errors import error_response
from nexa.server.model_feed import UNLOADED, ModelFeed, architecture, record, states
from nexa.server.pull_jobs import PullJobs
from nexa.server.stream import event_stream
from nexa.store import Manifest, ModelRef
from nexa.store.facts import capabilities, model_id
from nexa.wire.names import HUB_NAME_PATTERN, MAX_NAME, name_schema
from nexa.wire.llama import (
    DownloadRequest,
    ModelRequest,
    RouterModel,
    RouterModelList,
    RouterProps,
    StreamLookup,
    Success,
)
from nexa.wire.openai import ErrorResponse

router = APIRouter(tags=["llama-server router"])
log = logging.getLogger("nexa.server")

UI_BUILD = "b11434"  # the llama.cpp build scripts/build_ui.py builds the UI from
# What POST /models pulls: a Hub repo id, org/repo[:QUANT], as written (no URL, no path, no "..").
_HUB_NAME = re.compile(HUB_NAME_PATTERN)
# A model name; one over MAX_NAME is refused (400) here, not looked up.
_ModelQuery = Query(max_length=MAX_NAME, json_schema_extra=name_schema(), description="org/repo or org/repo:QUANT.")
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (400, 404)}


def install(app: FastAPI, manager: ModelManager) -> None:
    """The routes, the /models/sse feed and the UI's pulls."""
    feed = ModelFeed(manager)
    app.state.model_feed = feed
    app.state.pull_jobs = PullJobs(manager.store, feed, app.state.pulls)
    app.state.background_loads = set()
    app.include_router(router)


def _feed(request: Request) -> ModelFeed:
    return request.app.state.model_feed


def _is_loaded(manager: ModelManager, model_id: str) -> bool:
    return model_id in {m.id for m in manager.loaded()}


# ---------------------------------------------------------------- /props


@router.get("/props", response_model=None, responses=_ERRORS)
async def props(
    manager: Manager, client: WorkerClient,
    model: Annotated[str | None, _ModelQuery] = None,
    autoload: Annotated[str, Query(max_length=8)] = "true",
) -> dict[str, Any]:
    """Without `model`: the router (`role: "router"`). With it: that model's own /props from its worker
    (context size, modalities, chat template, default generation settings), loading it unless autoload=false."""
    if model is None:
        return RouterProps(
            max_instances=manager.settings.max_loaded_models, build_info=f"nexa {__version__}, llama-ui {UI_BUILD}",
        ).model_dump()
    manifest, quant = manager.resolve(model)
    alias = model_id(manifest, quant)
    if autoload.lower() in ("false", "0") and not _is_loaded(manager, alias):
        raise InvalidRequest(f"model '{alias}' is not loaded; load it with POST /models/load",
                             param="model", code="model_not_loaded")
    async with await manager.acquire(manifest, quant) as lease:
        response = await relay.call(client, lease, "GET", "/props")
    if response.status_code >= 400:
        raise relay.engine_refusal(response.status_code, response.content)
    return {**response.json(), "model_alias": alias}


# ---------------------------------------------------------------- /models


@router.get("/models", response_model=RouterModelList)
async def list_models(manager: Manager) -> RouterModelList:
    """Every pulled quant with its state (unloaded, loading, loaded; failure while in back-off) and what it takes as input."""
    now = states(manager)
    store = manager.store

    def entries() -> list[RouterModel]:  # capabilities read GGUF headers (cached per file)
        out = []
        for manifest in store.list():
            folder = store.model_dir(manifest.name)
            for quant in sorted(manifest.quants):
                id_ = model_id(manifest, quant)
                caps = capabilities(manifest, folder, quant)
                out.append(RouterModel(
                    id=id_, owned_by=manifest.org, created=int(manifest.pulled_at.timestamp()),
                    path=str(manifest.quants[quant].files[0].location(folder)),
                    status=now.get(id_, UNLOADED).status(), architecture=architecture(caps), capabilities=caps,
                ))
        return out

    return RouterModelList(data=await asyncio.to_thread(entries))


@router.post("/models/load", response_model=Success, responses=_ERRORS)
async def load(body: ModelRequest, request: Request, manager: Manager) -> Success:
    """Start loading a model and answer at once; /models/sse reports loading, then loaded (or the failure)."""
    manifest, quant = manager.resolve(body.model)
    loads: set[asyncio.Task[Any]] = request.app.state.background_loads
    task = asyncio.create_task(_load(manager, manifest, quant))
    loads.add(task)
    task.add_done_callback(loads.discard)
    return Success()


async def _load(manager: ModelManager, manifest: Manifest, quant: str) -> None:
    try:
        await manager.load(manifest, quant)
    except NexaError as exc:  # the feed shows the failure; nobody awaits this task
        log.warning("load of %s:%s from the web UI failed: %s", manifest.name, quant, exc.message)


@router.post("/models/unload", response_model=Success, responses=_ERRORS)
async def unload(body: ModelRequest, manager: Manager) -> Success:
    """Unload a model (at once if idle, else when its requests end); one not loaded is already unloaded."""
    for model in manager.find_loaded(body.model):
        await manager.unload(model.id)
    return Success()


@router.get("/models/sse", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def model_events(request: Request) -> StreamingResponse:
    """Server-sent events: each model's state now, then `model_status` as models load, unload and fail,
    and `download_progress`, `download_finished`, `download_failed`, `models_reload` for pulls."""
    return event_stream(_feed(request).listen())


@router.post("/models", response_model=Success, responses={**_ERRORS, 409: {"model": ErrorResponse}})
async def pull(body: DownloadRequest, request: Request) -> Success | JSONResponse:
    """Start pulling `org/repo[:QUANT]` from Hugging Face (HF_ENDPOINT) as `nexa pull --yes` does; answers
    at once, progress follows on /models/sse. One pull per repo at a time."""
    if not _HUB_NAME.fullmatch(body.model):
        raise InvalidRequest(f"'{body.model}' is not a Hugging Face model name; use org/repo or org/repo:QUANT",
                             param="model")
    ref = ModelRef.parse(body.model)
    jobs: PullJobs = request.app.state.pull_jobs
    if jobs.running(ref):
        return error_response(409, f"{ref.repo} is already being pulled; its progress is on /models/sse",
                              "invalid_request_error", param="model", code="pull_in_progress", path="/models")
    jobs.start(body.model, ref)
    return Success()


@router.delete("/models", response_model=Success, responses=_ERRORS)
async def delete(
    request: Request, manager: Manager, model: Annotated[str, _ModelQuery],
) -> Success:
    """Remove a model from the store (with a quant: that quant only), unloading what of it is loaded; a pull of
    it under way stops (the web UI's cancel), leaving its partial files for the next pull to resume."""
    ref = ModelRef.parse(model)
    if request.app.state.pulls.stop(ref.repo) and manager.store.get(ref.repo) is None:
        return Success()
    manifest, _ = manager.resolve(model)
    gone = [model_id(manifest, q) for q in manifest.quants if ref.quant in (None, q)]
    for loaded in manager.loaded():
        if loaded.id in gone:
            await manager.unload(loaded.id)
    await asyncio.to_thread(manager.store.remove, ModelRef(manifest.name, ref.quant))
    for gone_id in gone:
        _feed(request).publish(record(gone_id, "model_remove"))
    return Success()


# ---------------------------------------------------------------- what else the UI asks


@router.get("/slots", response_model=None)
async def slots(
    manager: Manager, client: WorkerClient, model: Annotated[str | None, _ModelQuery] = None,
) -> list[dict[str, Any]]:
    """A loaded model's slots from its worker (the UI checks they are idle); none for a model not loaded."""
    if model is None:
        return []
    manifest, quant = manager.resolve(model)
    if not _is_loaded(manager, model_id(manifest, quant)):
        return []
    async with await manager.acquire(manifest, quant) as lease:
        response = await relay.call(client, lease, "GET", "/slots")
    return response.json() if response.status_code < 400 else []


@router.get("/tools", response_model=None)
async def tools() -> list[dict[str, Any]]:
    """nexa runs no tools on the server: the list is empty (the UI's own tools and MCP servers still work)."""
    return []


@router.post("/tools", response_model=None)
async def run_tool() -> dict[str, str]:
    """No tool runs: the answer says so in a tool result's `error` field. Not a 403 as llama-server without
    --tools answers: the UI asks at every start (for the server's home folder), and a 403 would be a
    console error each time; it reads this answer as 'no home folder', as it does the 403."""
    return {"error": "nexa runs no tools on the server; use the browser's tools or MCP servers"}


@router.get("/cors-proxy", response_model=None)  # one decorator a method: each gets its own operation id
@router.post("/cors-proxy", response_model=None)
@router.delete("/cors-proxy", response_model=None)
async def cors_proxy() -> None:
    """Off, as /props says (cors_proxy_enabled: false): the server fetches no URL for the browser."""
    raise Forbidden("nexa has no CORS proxy; reach MCP servers that allow the UI's origin directly",
                    code="cors_proxy_disabled")


@router.post("/v1/streams/lookup", response_model=None)
async def stream_lookup(body: StreamLookup) -> list[dict[str, Any]]:
    """nexa keeps no replay buffer of streams: there is never a session to re-attach to."""
    return []


@router.delete("/v1/stream", response_model=Success)
async def drop_stream() -> Success:
    """Nothing to drop (see /v1/streams/lookup); a stopped stream's client disconnect already freed its slot."""
    return Success()
