"""What route handlers get from the app: the manager and the HTTP client to workers."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, Request

from nexa.runtime import ModelManager


def get_manager(request: Request) -> ModelManager:
    return request.app.state.manager


def get_client(request: Request) -> httpx.AsyncClient:
    return request.app.state.worker_client


Manager = Annotated[ModelManager, Depends(get_manager)]
WorkerClient = Annotated[httpx.AsyncClient, Depends(get_client)]
