"""GET /v1/models and /v1/models/{org}/{repo}[:quant]: what is pulled, whether it is loaded, what it can do."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path

from nexa.errors import NexaError
from nexa.runtime import ModelManager
from nexa.server.deps import Manager
from nexa.server.model_feed import UNLOADED, State, architecture, states
from nexa.store import Manifest
from nexa.store.facts import capabilities, model_id
from nexa.wire.names import name_schema
from nexa.wire.openai import ModelCard, ModelList

router = APIRouter(tags=["models"])


def _context(manager: ModelManager, manifest: Manifest, quant: str) -> int | None:
    try:
        return manager.planned_context(manifest, quant)
    except NexaError:  # e.g. its draft model is not pulled: the card says so by null, its load by an error
        return None


def _cards(manager: ModelManager, manifest: Manifest, now: dict[str, State]) -> list[ModelCard]:
    """One card per quant. Capabilities and contexts read GGUF headers (cached per file): run it in a thread."""
    projector = manifest.mmproj.size if manifest.mmproj else 0
    folder = manager.store.model_dir(manifest.name)
    cards = []
    for quant, entry in sorted(manifest.quants.items()):
        state = now.get(model_id(manifest, quant), UNLOADED)
        caps = capabilities(manifest, folder, quant)
        cards.append(ModelCard(
            id=model_id(manifest, quant),
            created=int(manifest.pulled_at.timestamp()),
            owned_by=manifest.org,
            type=manifest.model_type.value,
            quant=quant,
            size=entry.size + projector,
            loaded=state.value == "loaded",
            capabilities=caps,
            status=state.status(),
            architecture=architecture(caps),
            context_length=_context(manager, manifest, quant),
        ))
    return cards


@router.get("/v1/models", response_model=ModelList)
async def list_models(manager: Manager) -> ModelList:
    now = states(manager)

    def cards() -> list[ModelCard]:
        return [card for m in manager.store.list() for card in _cards(manager, m, now)]

    return ModelList(data=await asyncio.to_thread(cards))


@router.get("/v1/models/{model_id:path}", response_model=ModelCard)
async def get_model(model_id: Annotated[str, Path(json_schema_extra=name_schema())], manager: Manager) -> ModelCard:
    manifest, quant = manager.resolve(model_id.strip("/"))
    cards = await asyncio.to_thread(_cards, manager, manifest, states(manager))
    return next(card for card in cards if card.quant == quant)
