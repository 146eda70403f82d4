"""Loaded models: GET /v1/ps lists them, POST /v1/load and /v1/unload change them (`nexa ps` reads the list)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter

from nexa.errors import ModelNotFound
from nexa.runtime.loaded import LoadedModel
from nexa.runtime.memory import rss
from nexa.server.deps import Manager, WorkerClient
from nexa.store import facts
from nexa.wire.admin import (
    LoadRequest,
    RunningModel,
    RunningModelList,
    UnloadRequest,
    UnloadResult,
)

router = APIRouter(tags=["admin"])


async def _running(model: LoadedModel, client: WorkerClient, now: float) -> RunningModel:
    expires = model.expires_at()
    return RunningModel(
        id=model.id,
        type=model.manifest.model_type.value,
        pid=model.worker.pid,
        memory=rss(model.worker.pid),
        memory_estimate=model.footprint.ram,
        device_memory=dict(model.footprint.devices),
        ctx=model.spec.ctx,
        parallel=model.parallel,
        slots_busy=await model.worker.busy_slots(client),
        in_flight=model.in_flight,
        queued=model.queued,
        idle_seconds=round(model.idle_seconds(now), 3),
        keep_alive=model.keep_alive,
        expires_in=None if expires is None else round(max(0.0, expires - now), 3),
        loaded_at=int(model.loaded_at),
        replicas=await model.worker.replicas(),
    )


@router.get("/v1/ps", response_model=RunningModelList)
async def list_running(manager: Manager, client: WorkerClient) -> RunningModelList:
    """Loaded models, least recently used first: memory, slots, idle time and keep-alive."""
    now = time.monotonic()
    models = sorted(manager.loaded(), key=lambda m: m.last_used)
    running = await asyncio.gather(*(_running(m, client, now) for m in models))
    used = manager.memory_used()
    return RunningModelList(data=list(running), memory_budget=manager.memory_budget, memory_estimate=used.ram,
                            device_memory_budget=manager.device_budgets(), device_memory=dict(used.devices))


@router.post("/v1/load", response_model=RunningModel)
async def load(request: LoadRequest, manager: Manager, client: WorkerClient) -> RunningModel:
    """Load a model now (or set its keep-alive if it is loaded), so its first request does not wait."""
    manifest, quant = manager.resolve(request.model)
    model = await manager.load(manifest, quant, request.keep_alive)
    return await _running(model, client, time.monotonic())


@router.post("/v1/unload", response_model=UnloadResult)
async def unload(request: UnloadRequest, manager: Manager) -> UnloadResult:
    """Unload a model now; one serving requests unloads as soon as they end. A model removed from the
    store while loaded is found by its loaded name."""
    try:
        manifest, quant = manager.resolve(request.model)
    except ModelNotFound:
        found = manager.find_loaded(request.model)
        if not found:
            raise
        model_id = found[0].id
    else:
        model_id = facts.model_id(manifest, quant)
    if model_id not in {m.id for m in manager.loaded()}:
        return UnloadResult(id=model_id, status="not_loaded")
    return UnloadResult(id=model_id, status="unloaded" if await manager.unload(model_id) else "unloading")
