"""Turn validated API requests into engine request bodies."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from nexa.compat.tools import check_tool_turns, tool_fields
from nexa.errors import InvalidRequest
from nexa.wire.openai import ChatCompletionRequest, CompletionRequest, SamplingRequest
from nexa.store import Manifest

# Our field name → llama.cpp's, where they differ.
_RENAMED = {"repetition_penalty": "repeat_penalty"}
# Handled here rather than passed through.
_OWN_FIELDS = {
    "model", "user", "max_tokens", "max_completion_tokens", "enable_think", "reasoning_format", "messages", "keep_alive",
    "tools", "tool_choice", "parallel_tool_calls", "functions", "function_call",
}
_REASONING = {"parsed": "deepseek", "raw": "none", "auto": "auto", "deepseek": "deepseek", "none": "none"}


def _sampling_body(request: SamplingRequest, manifest: Manifest, max_tokens: int | None, ctx: int) -> dict[str, Any]:
    """The model's own sampling defaults under the request's fields. `ctx` is a slot's context: no reply
    can be longer, so a larger max_tokens is clamped to it."""
    body = {**manifest.sampling_defaults, **request.model_dump(exclude_none=True, exclude=_OWN_FIELDS, by_alias=True)}
    if max_tokens is not None and max_tokens != -1:
        body["max_tokens"] = min(max_tokens, ctx)
    for ours, theirs in _RENAMED.items():
        if ours in body:
            body[theirs] = body.pop(ours)
    if request.stream and "stream_options" not in body:
        body["stream_options"] = {"include_usage": False}
    return body


def translated_chat(fields: dict[str, Any]) -> ChatCompletionRequest:
    """The chat request another dialect translates into. Limits counted over the translation (images
    per request, say) are checked only here, so a failure is the client's 400, not our 500."""
    try:
        return ChatCompletionRequest(**fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InvalidRequest(str(error.get("msg", "invalid request")).removeprefix("Value error, "),
                             param=".".join(str(p) for p in error.get("loc", ()))) from None


def chat_body(request: ChatCompletionRequest, manifest: Manifest, ctx: int) -> dict[str, Any]:
    """Media parts must already be inline (`nexa.media.resolve.resolve_media`)."""
    check_tool_turns(request.messages)
    format_ = request.response_format
    if format_ is not None and format_.type == "json_schema" and format_.json_schema is None:
        raise InvalidRequest(
            "response_format of type 'json_schema' needs a 'json_schema' object: {\"name\": ..., \"schema\": {...}}",
            param="response_format.json_schema",
        )
    body = _sampling_body(request, manifest, request.max_completion_tokens or request.max_tokens, ctx)
    body.update(tool_fields(request))
    messages = [m.model_dump(exclude_none=True) for m in request.messages]
    if manifest.system_prompt and not any(m["role"] in ("system", "developer") for m in messages):
        messages.insert(0, {"role": "system", "content": manifest.system_prompt})
    body["messages"] = messages
    if request.enable_think is not None:
        body["chat_template_kwargs"] = {"enable_thinking": request.enable_think}
    if request.reasoning_format is not None:
        body["reasoning_format"] = _REASONING[request.reasoning_format]
    return body


def completion_body(request: CompletionRequest, manifest: Manifest, ctx: int) -> dict[str, Any]:
    if request.echo:
        raise InvalidRequest("echo is not supported; leave it unset or false", param="echo")
    if request.suffix:
        raise InvalidRequest("suffix (fill-in-the-middle) is not supported; leave it unset", param="suffix")
    body = _sampling_body(request, manifest, request.max_tokens, ctx)
    body.pop("echo", None)
    body.pop("suffix", None)
    if request.logprobs == 0:
        body["logprobs"] = 1  # the engine returns none for 0; OpenAI's 0 still gives each token's own logprob
    return body
