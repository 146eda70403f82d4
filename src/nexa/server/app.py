"""The FastAPI application factory: no module state; everything comes from its arguments."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.params import Depends

from nexa import __version__
from nexa.media.resolve import MediaPolicy
from nexa.runtime import ModelManager
from nexa.server import errors, metrics, openapi_errors, security
from nexa.server.body import JSONBodyByDefault
from nexa.server.pull_pool import PullPool
from nexa.server.response_store import ResponseStore
from nexa.server.worker_client import worker_client
from nexa.server import ui
from nexa.server.routes import admin, anthropic, audio, generate, health, models, responses, retrieval, ollama, ollama_models
from nexa.server.routes import llama_router
from nexa.wire.openai import ChatCompletionChunk


def create_app(
    manager: ModelManager, worker_transport: httpx.AsyncBaseTransport | None = None, dependencies: Sequence[Depends] = ()
) -> FastAPI:
    """The router's app. `worker_transport` is how requests reach workers: loopback HTTP by default, or
    Ray Serve handles when the models run on a cluster (nexa.cluster). `dependencies` run on every request,
    after its body is parsed: what only that transport needs to know of a request (its session hint)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with worker_client(worker_transport) as client:
            app.state.worker_client = client
            try:
                await manager.start()
                yield
            finally:
                app.state.pulls.close()
                await manager.close()

    app = FastAPI(
        title="nexa",
        version=__version__,
        description="Local models behind an OpenAI-compatible API.",
        lifespan=lifespan,
        dependencies=list(dependencies),
        # nexa's metrics are its own (/metrics); FastAPI's OpenTelemetry looked up three providers, through
        # os.environ, on every request (6 us hot).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.manager = manager
    app.state.media_policy = MediaPolicy.from_settings(manager.settings)
    app.state.responses = ResponseStore(manager.settings.responses_store)
    app.state.pulls = PullPool()
    errors.install(app)
    app.add_middleware(JSONBodyByDefault)
    security.install(app, manager.settings, public=ui.public_paths() if manager.settings.ui else frozenset())
    metrics.install(app, manager)
    for module in (health, models, generate, audio, retrieval, admin, anthropic, responses, ollama, ollama_models):
        app.include_router(module.router)
    llama_router.install(app, manager)
    if manager.settings.ui:
        ui.install(app)
    _document_stream_chunk(app)
    openapi_errors.install(app)
    return app


def _document_stream_chunk(app: FastAPI) -> None:
    """Streamed chunks are no response_model, so their schema joins /openapi.json here."""
    build = app.openapi

    def openapi() -> dict:
        if not app.openapi_schema:
            schema = build()
            chunk = ChatCompletionChunk.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(chunk.pop("$defs", {}))
            components[ChatCompletionChunk.__name__] = chunk
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
