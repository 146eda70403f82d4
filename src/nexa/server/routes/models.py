"""GET /v1/models and /v1/models/{org}/{repo}[:quant]: what is pulled, and whether it is loaded."""

from __future__ import annotations

from fastapi import APIRouter

from nexa.server.deps import Manager
from nexa.wire.openai import ErrorResponse, ModelCard, ModelList
from nexa.store import Manifest

router = APIRouter(tags=["models"])


def _cards(manifest: Manifest, loaded: set[str]) -> list[ModelCard]:
    projector = manifest.mmproj.size if manifest.mmproj else 0
    return [
        ModelCard(
            id=f"{manifest.name}:{quant}",
            created=int(manifest.pulled_at.timestamp()),
            owned_by=manifest.org,
            type=manifest.model_type.value,
            quant=quant,
            size=entry.size + projector,
            loaded=f"{manifest.name}:{quant}" in loaded,
        )
        for quant, entry in sorted(manifest.quants.items())
    ]


@router.get("/v1/models", response_model=ModelList)
async def list_models(manager: Manager) -> ModelList:
    loaded = {m.id for m in manager.loaded()}
    return ModelList(data=[card for m in manager.store.list() for card in _cards(m, loaded)])


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, responses={404: {"model": ErrorResponse}})
async def get_model(model_id: str, manager: Manager) -> ModelCard:
    manifest, quant = manager.resolve(model_id.strip("/"))
    loaded = {m.id for m in manager.loaded()}
    return next(card for card in _cards(manifest, loaded) if card.quant == quant)
