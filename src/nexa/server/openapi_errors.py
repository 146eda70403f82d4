"""What /openapi.json says about errors, declared in one place rather than with `responses=` on every route.

Each operation lists every error status nexa can send on it, in its dialect's error schema: the statuses
the guards around the app answer before any route runs (FastAPI cannot see them), those every input can
meet, and any a route declares for itself (`responses={502: {"description": ...}}`). FastAPI's own 422 goes:
nexa answers bad input with a 400.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from nexa.server.errors import DIALECTS, RETRY_AFTER, dialect
from nexa.server.security import OPEN_PATHS
from nexa.wire.openai import ErrorResponse

_REF = "#/components/schemas/{model}"
_DESCRIPTIONS = {
    400: "Bad input; the message names the field.",
    401: "No API key, or a wrong one (when nexa serve --api-key is set).",
    403: "Refused by policy: a Host header a loopback server does not answer, a media path or address not allowed.",
    404: "No such model (the message says how to pull it) or no such stored object.",
    408: "The request body did not arrive in time.",
    413: "The request body, or what it asks for, is too large; the message gives the limit.",
    502: "Hugging Face refused or failed the download.",
    503: "Cannot serve now: the model failed to load, no room or queue space, or the server is shutting down.",
}
_RETRY_AFTER = {"Retry-After": {"description": f"Seconds to wait before retrying ({RETRY_AFTER} unless the error "
                                               "says otherwise).", "required": True, "schema": {"type": "integer"}}}
_WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "Bearer", "required": True, "schema": {"type": "string"}}}
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def install(app: FastAPI) -> None:
    """Rewrite the error part of `app`'s OpenAPI document the first time it is built."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            declare_errors(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def declare_errors(schema: dict[str, Any]) -> None:
    """Put the error statuses each operation can answer, with their dialect's schema, into `schema`."""
    refs = _add_error_schemas(schema.setdefault("components", {}).setdefault("schemas", {}))
    for path, item in schema.get("paths", {}).items():
        own = dialect(path)
        ref = refs[own.model if own else ErrorResponse]
        for method, operation in item.items():
            if method in _METHODS:
                _declare(operation, path, ref)
    components = schema["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def statuses(operation: dict[str, Any], path: str) -> set[int]:
    """The error statuses an operation can answer. Any request may meet the Host check (403) and the shutdown
    drain (503), any but /health the API key (401); any input can be refused (400) or name what is not there
    (404), and a body can be too large (413) or too slow (408)."""
    found = {int(code) for code in operation.get("responses", {}) if str(code).isdigit() and int(code) >= 400}
    found |= {403, 503}
    if path not in OPEN_PATHS:
        found.add(401)
    if operation.get("parameters") or operation.get("requestBody"):
        found |= {400, 404}
    if operation.get("requestBody"):
        found |= {408, 413}
    found.discard(422)
    return found


def _declare(operation: dict[str, Any], path: str, ref: str) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    for status in sorted(statuses(operation, path)):
        entry: dict[str, Any] = {
            "description": _DESCRIPTIONS.get(status, "Error."),
            "content": {"application/json": {"schema": {"$ref": ref}}},
        }
        if status == 503:
            entry["headers"] = _RETRY_AFTER
        if status == 401:
            entry["headers"] = _WWW_AUTHENTICATE
        responses[str(status)] = entry


def _add_error_schemas(components: dict[str, Any]) -> dict[type, str]:
    """Each dialect's error model in the components, under names pydantic keeps apart; model → its $ref."""
    models = [ErrorResponse, *(d.model for d in DIALECTS)]
    keys, definitions = models_json_schema([(m, "serialization") for m in models], ref_template=_REF)
    components.update(definitions.get("$defs", {}))
    return {model: keys[(model, "serialization")]["$ref"] for model in models}
