"""What route handlers get from the app: the manager, the HTTP client to workers, the media policy.

Each is `async def`, though none awaits: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop (about 0.2 ms of CPU) per dependency per request for an attribute lookup."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, Request

from nexa.media.resolve import MediaPolicy
from nexa.runtime import ModelManager
from nexa.server.response_store import ResponseStore


async def get_manager(request: Request) -> ModelManager:
    return request.app.state.manager


async def get_client(request: Request) -> httpx.AsyncClient:
    return request.app.state.worker_client


async def get_media_policy(request: Request) -> MediaPolicy:
    return request.app.state.media_policy


async def get_responses(request: Request) -> ResponseStore:
    return request.app.state.responses


Manager = Annotated[ModelManager, Depends(get_manager)]
WorkerClient = Annotated[httpx.AsyncClient, Depends(get_client)]
MediaRules = Annotated[MediaPolicy, Depends(get_media_policy)]
Responses = Annotated[ResponseStore, Depends(get_responses)]
