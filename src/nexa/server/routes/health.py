"""GET /health: liveness for load balancers and scripts; needs no key."""

from __future__ import annotations

from fastapi import APIRouter

from nexa.wire.admin import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    return Health()
