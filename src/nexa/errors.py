"""Every error nexa raises on purpose.

    NexaError                 the root; its message is shown to the user as is
    ├── InvalidRequest        the request is wrong (HTTP 400)
    ├── Forbidden             the request asks for something the server's policy refuses (HTTP 403)
    ├── ModelNotFound         the model is not in the store (HTTP 404)
    ├── NotStored             another object the request names is not kept: a stored response (HTTP 404)
    ├── WrongModelType        the model is stored but of a type the route does not serve (HTTP 404)
    ├── ModelLoadFailed       the engine could not load the model (HTTP 503)
    ├── Overloaded            no capacity to load or serve now (HTTP 503)
    ├── WorkerCrashed         the worker died while serving a request (HTTP 503)
    ├── EngineRefused         the engine answered an error (its own status)
    ├── ClientGone            the client disconnected before its answer was ready (HTTP 499, never seen)
    ├── StoreError            the local store is missing or inconsistent
    │   └── BadModelFile      a file is not a readable GGUF: truncated, damaged or another format
    ├── HubError              Hugging Face refused or failed a pull (CLI only)
    ├── ConfigError           a flag or NEXA_* variable has a bad value (CLI only)
    └── BuildFailed           `nexa runtime build` could not build or install llama-server (CLI only)

The HTTP mapping lives in one table, `nexa.server.errors`; the CLI renders the
same messages. Every message says what to do next.
"""

from __future__ import annotations

import errno
import resource


class NexaError(Exception):
    """Root of nexa's errors."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequest(NexaError):
    """The client sent something nexa cannot serve."""


class Forbidden(NexaError):
    """The request is well formed but reaches past what the server allows (files, private addresses)."""


class ModelNotFound(NexaError):
    """The requested model is not pulled."""


class NotStored(NexaError):
    """An object the request names (a previous response) is not kept: whether it is depends on the server's
    state, not on the request, so it is a 404 like an unknown model."""


class WrongModelType(NexaError):
    """The named model is stored, but the route does not serve its type (an embedder asked to chat): as OpenAI
    answers a chat request for a model that is no chat model, there is no such model for this route (404)."""


class ModelLoadFailed(NexaError):
    """The worker for a model did not start."""


class Overloaded(NexaError):
    """Serving the request would exceed a configured limit, or the model is backing off after failures."""

    def __init__(self, message: str, *, retry_after: int | None = None, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after  # seconds, sent as the Retry-After header


def shutting_down() -> Overloaded:
    """The refusal of a request that arrives once shutdown has begun."""
    return Overloaded("the server is shutting down; retry once it is back", retry_after=5, code="server_shutting_down")


def out_of_files(exc: BaseException | None) -> Overloaded | None:
    """The refusal naming the real cause when `exc`, or an error that led to it, is EMFILE (the process hit
    its open-file limit: each request in flight holds two sockets); None for any other error."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno == errno.EMFILE:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            return Overloaded(
                f"the server ran out of open files (its limit is {soft}); raise the limit with 'ulimit -n 65536' "
                "before 'nexa serve', or lower --max-waiting; retry shortly", retry_after=5, code="too_many_open_files",
            )
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class WorkerCrashed(NexaError):
    """The worker process died or stopped answering mid-request."""


class EngineRefused(NexaError):
    """The engine refused a request; dialects other than OpenAI's re-shape its error."""

    def __init__(self, status: int, message: str, type_: str):
        super().__init__(message, code=type_)
        self.status = status
        self.type = type_


class ClientGone(NexaError):
    """The client closed its connection while the answer was being made; the work was cancelled."""


class StoreError(NexaError):
    """The model store cannot do what was asked."""


class BadModelFile(StoreError, ValueError):
    """A model file whose GGUF header cannot be read; a ValueError too, as the gguf package raises."""


class HubError(NexaError):
    """Hugging Face could not give us a model: missing or gated repo, no GGUF, a failed or corrupt download."""


class ConfigError(NexaError):
    """A setting cannot be used; raised before anything starts."""


def clip(text: str, limit: int = 120) -> str:
    """`text` cut to `limit` characters, saying how much was cut: client strings quoted in messages and
    log lines stay small, so formatting them (Rich, JSON) costs the same whatever the client sent."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


class BuildFailed(NexaError):
    """A step of building a native runtime failed; the message names the step and the fix."""
