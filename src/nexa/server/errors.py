"""The one mapping from errors to HTTP responses. Errors are built in OpenAI's shape,
{"error": {"message", "type", "param", "code"}}; a route of another dialect (Anthropic,
Ollama) gets its own shape from `DIALECTS`, chosen by the request's path."""

from __future__ import annotations

import functools
import logging
import re

from collections.abc import Callable
from typing import NamedTuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from nexa.errors import (
    ClientGone,
    Forbidden,
    EngineRefused,
    InvalidRequest,
    ModelLoadFailed,
    ModelNotFound,
    NexaError,
    NotStored,
    Overloaded,
    WrongModelType,
    StoreError,
    WorkerCrashed,
    clip,
    out_of_files,
)
from nexa.wire import anthropic as anthropic_wire
from nexa.wire import ollama as ollama_wire

log = logging.getLogger("nexa.server")

# Longest message sent, and longest one logged: messages may quote what the client sent.
MAX_MESSAGE = 2000
MAX_LOGGED = 300
# Seconds a 503 asks clients to wait when the error does not say (a load, a restart, a drain).
RETRY_AFTER = 2

# class → (HTTP status, OpenAI error type); the first matching class in MRO order wins.
STATUS: dict[type[NexaError], tuple[int, str]] = {
    InvalidRequest: (400, "invalid_request_error"),
    Forbidden: (403, "permission_error"),
    ModelNotFound: (404, "not_found_error"),
    NotStored: (404, "invalid_request_error"),  # OpenAI's type for an unknown previous_response_id
    WrongModelType: (404, "invalid_request_error"),  # OpenAI's for a chat request to a model that cannot chat
    ModelLoadFailed: (503, "model_load_error"),
    Overloaded: (503, "overloaded_error"),
    WorkerCrashed: (503, "worker_error"),
    StoreError: (500, "store_error"),
    ClientGone: (499, "client_closed_request"),  # nginx's status: nobody reads it, the logs and metrics do
}

_HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
               405: "invalid_request_error", 408: "request_timeout", 413: "request_too_large", 429: "rate_limit_error"}


DialectShape = Callable[[int, dict], dict]


class Dialect(NamedTuple):
    """The error shape of the routes under `prefix`: `shape` turns OpenAI's error body into the dialect's
    own, whose schema is `model` (what /openapi.json declares)."""

    prefix: str
    shape: DialectShape
    model: type[BaseModel]


# Dialects with an error shape of their own; first match wins, every other path gets OpenAI's.
DIALECTS: list[Dialect] = [
    Dialect("/v1/messages", anthropic_wire.error_body, anthropic_wire.ErrorResponse),
    Dialect("/api/", ollama_wire.error_body, ollama_wire.ErrorResponse),
]


def dialect(path: str) -> Dialect | None:
    """The dialect that answers errors on `path`; None for OpenAI's shape."""
    return next((d for d in DIALECTS if path.startswith(d.prefix)), None)


def error_body(message: str, type_: str, param: str | None = None, code: str | int | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": None if code is None else str(code)}}


def shaped_error(status: int, message: str, type_: str, param: str | None = None, code: str | None = None,
                 path: str = "") -> dict:
    """The error body in the shape of the dialect that serves `path` (OpenAI's when none other does)."""
    body = error_body(clip(message, MAX_MESSAGE), type_, param, code)
    own = dialect(path)
    return body if own is None else own.shape(status, body)


def error_response(
    status: int, message: str, type_: str, param: str | None = None, code: str | None = None, *, path: str = ""
) -> JSONResponse:
    """The error as a response in the shape of the dialect that serves `path`."""
    response = JSONResponse(shaped_error(status, message, type_, param, code, path), status_code=status)
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


def _status(exc: NexaError) -> tuple[int, str]:
    if isinstance(exc, EngineRefused):
        return exc.status, exc.type
    return next((STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS), (500, "server_error"))


def nexa_error_body(exc: NexaError, path: str = "") -> dict:
    """`exc` as the error body of the dialect that serves `path`: what a stream that fails midway sends."""
    status, type_ = _status(exc)
    return shaped_error(status, exc.message, type_, exc.param, exc.code, path)


def nexa_error_response(exc: NexaError, path: str = "") -> JSONResponse:
    status, type_ = _status(exc)
    response = error_response(status, exc.message, type_, exc.param, exc.code, path=path)
    if isinstance(exc, Overloaded) and exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _field_path(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "body"]
    # Drop pydantic's union-branch labels such as 'str' or 'list[...]'.
    # ...and the class names that label a union's model branches ('InputAudio').
    return ".".join(
        p for p in parts if not ("[" in p or p[:1].isupper() or p in {"str", "int", "float", "bool", "function-after"})
    )


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    # The deepest error is the most specific: for `content: str | list[part]` an unknown part type
    # fails both branches, and the list branch's error names the part, the str branch's does not.
    first = max(errors, key=lambda e: len(e.get("loc", ())), default={"loc": (), "msg": "invalid request", "type": ""})
    if first.get("type") == "json_invalid":
        return f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')}); send a JSON object", None
    field = _field_path(tuple(first.get("loc", ())))
    if first.get("type") == "missing":
        if not field:
            return "the request has no body; send a JSON object with Content-Type: application/json", None
        return f"'{field}' is required", field
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    where = f"'{field}'" if field else "the request body"
    return f"{where}: {first.get('msg', 'invalid value')}{more}", field or None


def allowed_methods(request: Request, named: str | None) -> str:
    """Every method the API document lists for the request's path, with those Starlette `named`: Starlette
    names only the first route that matches the path, though GET and POST on one path are often two routes."""
    methods = {m.strip() for m in (named or "").split(",") if m.strip()}
    paths = request.app.openapi().get("paths", {})
    path = request.url.path
    # A path spelled out (/v1/responses/input_tokens) is its own resource, not an instance of /{response_id}.
    matching = [paths[path]] if path in paths else [item for template, item in paths.items()
                                                    if _path_pattern(template).match(path)]
    for item in matching:
        methods |= {method.upper() for method in item}
    return ", ".join(sorted(methods))


@functools.lru_cache(maxsize=256)
def _path_pattern(template: str) -> re.Pattern[str]:
    return compile_path(template)[0]


def install(app: FastAPI) -> None:
    """Make every error the app can produce OpenAI-shaped, 404s and validation errors included."""

    @app.exception_handler(NexaError)
    async def _nexa(request: Request, exc: NexaError) -> JSONResponse:
        log.info("%s %s -> %s", request.method, clip(request.url.path, MAX_LOGGED), clip(exc.message, MAX_LOGGED))
        return nexa_error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc)
        return error_response(400, message, "invalid_request_error", param, "invalid_request", path=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        param = getattr(exc, "param", None)  # set by the body checks that name a field
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {clip(request.url.path)}; see /docs for the API"
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {clip(request.url.path)}; see /docs for the API"
        type_ = _HTTP_TYPES.get(exc.status_code, "invalid_request_error")
        response = error_response(exc.status_code, message, type_, param, "invalid_request" if param else None,
                                  path=request.url.path)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = allowed_methods(request, response.headers.get("Allow"))
        return response

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        if (full := out_of_files(exc)) is not None:  # no traceback: rendering one needs files too
            log.warning("%s %s -> %s", request.method, clip(request.url.path, MAX_LOGGED), full.message)
            return nexa_error_response(full, request.url.path)
        log.exception("unhandled error on %s %s", request.method, clip(request.url.path, MAX_LOGGED))
        return error_response(500, "internal server error; the server log has details", "server_error", path=request.url.path)
