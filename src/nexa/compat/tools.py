"""Function tools: OpenAI's rules that llama.cpp does not enforce itself.

The engine parses tool calls and renders tool turns through the model's template, but
it ignores a named `tool_choice` (it reads only the strings "auto", "none" and
"required"), accepts `tool_choice` without `tools`, answers 500 when an earlier
assistant turn carries arguments that are not JSON, and drops `tools` without a word when
the model's template cannot render them. Those cases are settled here, and OpenAI's
deprecated `functions` form is mapped onto tools.
"""

from __future__ import annotations

import json
from typing import Any

from nexa.compat.translator import Translator
from nexa.errors import EngineRefused, InvalidRequest
from nexa.store import Manifest
from nexa.wire.openai import ChatCompletionRequest, ChatMessage, NamedToolChoice, Tool, ToolCall


def require_tool_support(request: ChatCompletionRequest, manifest: Manifest, supported: bool) -> None:
    """Tools the model cannot use (`supported`: nexa.store.facts.supports_tools) are refused, not dropped: the
    client would wait for a call that never comes. `tool_choice: "none"` asks for no call, so the tools may go unused."""
    if request.tools and request.tool_choice != "none" and not supported:
        raise InvalidRequest(
            f"model '{manifest.name}' cannot call tools: its chat template has no tool support, so the "
            "engine would ignore 'tools'; use a model whose card lists 'tools' in its capabilities "
            "(GET /v1/models), or leave 'tools' out",
            param="tools",
            code="tools_not_supported",
        )


# ---------------------------------------------------------------- deprecated functions


def uses_functions(request: ChatCompletionRequest) -> bool:
    """The request speaks OpenAI's deprecated function-calling form, so its reply should too."""
    return request.functions is not None


def upgrade_functions(request: ChatCompletionRequest) -> ChatCompletionRequest:
    """`functions`/`function_call` as `tools`/`tool_choice`, and function turns of the history as tool
    turns. Legacy turns carry no call ids, so each function result answers the latest function call."""
    legacy_turns = any(m.role == "function" or m.function_call for m in request.messages)
    if request.functions is None and request.function_call is None and not legacy_turns:
        return request
    if request.functions is not None and request.tools is not None:
        raise InvalidRequest("send 'tools' or the deprecated 'functions', not both", param="functions")
    if request.function_call is not None and request.tool_choice is not None:
        raise InvalidRequest("send 'tool_choice' or the deprecated 'function_call', not both", param="function_call")
    if request.function_call not in (None, "none", "auto") and not request.functions:
        raise InvalidRequest("function_call names a function; add its definition to 'functions'", param="function_call")
    update: dict[str, Any] = {"functions": None, "function_call": None}
    if request.functions is not None:
        update["tools"] = [Tool(function=f) for f in request.functions]
    choice = request.function_call
    if choice is not None:
        update["tool_choice"] = choice if isinstance(choice, str) else NamedToolChoice(function=choice)
    if legacy_turns:
        update["messages"] = _tool_turns(request.messages)
    return request.model_copy(update=update)


def _tool_turns(messages: list[ChatMessage]) -> list[ChatMessage]:
    turns, last_id = [], None
    for i, message in enumerate(messages):
        if message.role == "assistant" and message.function_call is not None:
            last_id = f"call_{i}"
            call = ToolCall(id=last_id, function=message.function_call)
            calls = [*(message.tool_calls or []), call]
            message = message.model_copy(update={"function_call": None, "tool_calls": calls})
        elif message.role == "function":
            message = message.model_copy(update={"role": "tool", "tool_call_id": last_id or f"call_{message.name}"})
        turns.append(message)
    return turns


def as_function_call(data: dict[str, Any]) -> dict[str, Any]:
    """An engine answer or chunk in the deprecated shape: the first tool call as `function_call`
    (in `message` or `delta`), finish_reason "function_call". Changes `data` in place."""
    for choice in data.get("choices") or []:
        part = choice.get("message") or choice.get("delta") or {}
        calls = part.pop("tool_calls", None)
        first = next((c for c in calls or [] if c.get("index", 0) == 0), None)
        if first is not None:
            part["function_call"] = {k: v for k, v in first["function"].items() if v is not None}
        if choice.get("finish_reason") == "tool_calls":
            choice["finish_reason"] = "function_call"
    return data


class FunctionCallStream(Translator):
    """The engine's chat chunks in the deprecated functions shape (`as_function_call`), the model renamed;
    the usage chunk only when the client asked for it (`include_usage`)."""

    def __init__(self, model: str, include_usage: bool):
        self._model, self._include_usage = model, include_usage

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        if not chunk.get("choices") and not self._include_usage:
            return []
        chunk["model"] = self._model
        return [as_function_call(chunk)]


def tool_fields(request: ChatCompletionRequest) -> dict[str, Any]:
    """`tools`, `tool_choice` and `parallel_tool_calls` for the engine. A named choice becomes
    "required" over that one tool, which is what OpenAI's named choice means."""
    choice, tools = request.tool_choice, request.tools
    if choice not in (None, "none", "auto") and not tools:
        raise InvalidRequest(
            "tool_choice requires tools; add the function definitions to 'tools' or drop tool_choice",
            param="tool_choice",
        )
    fields: dict[str, Any] = {}
    if tools:
        fields["tools"] = [t.model_dump(exclude_none=True) for t in tools]
    if isinstance(choice, NamedToolChoice):
        named = [t for t in fields["tools"] if t["function"]["name"] == choice.function.name]
        if not named:
            known = ", ".join(t.function.name for t in tools or [])
            raise InvalidRequest(
                f"tool_choice names function '{choice.function.name}', which is not in tools ({known})",
                param="tool_choice.function.name",
            )
        fields["tools"], fields["tool_choice"] = named, "required"
    elif choice is not None:
        fields["tool_choice"] = choice
    if request.parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = request.parallel_tool_calls
    return fields


def check_tool_turns(messages: list[ChatMessage]) -> None:
    """Earlier assistant tool calls must carry JSON arguments (the template renders them as objects)."""
    for i, message in enumerate(messages):
        for j, call in enumerate(message.tool_calls or []):
            try:
                json.loads(call.function.arguments)
            except ValueError:
                where = f"messages[{i}].tool_calls[{j}].function.arguments"
                raise InvalidRequest(
                    f"{where} is not valid JSON; send the arguments as a JSON-encoded object", param=where
                ) from None


def arguments_object(arguments: str, name: str) -> dict[str, Any]:
    """A tool call's JSON arguments as the object the Anthropic and Ollama dialects send; anything
    else the model wrote is the engine's failure (502), not the client's."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise EngineRefused(502, f"the model called tool '{name}' with arguments that are not a JSON object; "
                                 "retry the request", "api_error")
    return value
