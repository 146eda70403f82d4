"""Which model types each route serves, checked before a model is loaded for it."""

from __future__ import annotations

from nexa.errors import WrongModelType
from nexa.store import Manifest, ModelType

_GENERATIVE = (ModelType.llm, ModelType.vlm)
ROUTE_TYPES: dict[str, tuple[ModelType, ...]] = {
    "/v1/chat/completions": _GENERATIVE,
    "/v1/completions": _GENERATIVE,
    "/v1/embeddings": (ModelType.embedder,),
    "/v1/reranking": (ModelType.reranker,),
    "/v1/rerank": (ModelType.reranker,),
    "/v1/messages": _GENERATIVE,
    "/v1/messages/count_tokens": _GENERATIVE,
    "/v1/responses": _GENERATIVE,
    "/v1/responses/input_tokens": _GENERATIVE,
    "/api/chat": _GENERATIVE,
    "/api/generate": _GENERATIVE,
    "/api/embed": (ModelType.embedder,),
    "/api/embeddings": (ModelType.embedder,),
}
# Where to send a model of each type instead.
_HOME = {
    ModelType.llm: "/v1/chat/completions",
    ModelType.vlm: "/v1/chat/completions",
    ModelType.embedder: "/v1/embeddings",
    ModelType.reranker: "/v1/rerank or /v1/reranking",
}
_A = {ModelType.llm: "an llm", ModelType.vlm: "a vlm", ModelType.embedder: "an embedder", ModelType.reranker: "a reranker"}


def require_model_type(manifest: Manifest, route: str) -> None:
    """Refuse (HTTP 404: no such model for this route) a model whose type `route` cannot serve, naming the type
    it needs."""
    allowed = ROUTE_TYPES[route]
    if manifest.model_type in allowed:
        return
    needed = " or ".join([_A[allowed[0]], *(t.value for t in allowed[1:])])
    raise WrongModelType(
        f"{route} needs {needed} model, but '{manifest.name}' is {_A[manifest.model_type]}; "
        f"use {_HOME[manifest.model_type]} for it (or re-import it with --model-type if its type is wrong)",
        param="model", code="wrong_model_type",
    )
