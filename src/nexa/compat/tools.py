"""Function tools: OpenAI's rules that llama.cpp does not enforce itself.

The engine parses tool calls and renders tool turns through the model's template, but
it ignores a named `tool_choice` (it reads only the strings "auto", "none" and
"required"), accepts `tool_choice` without `tools`, and answers 500 when an earlier
assistant turn carries arguments that are not JSON. Those cases are settled here.
"""

from __future__ import annotations

import json
from typing import Any

from nexa.errors import InvalidRequest
from nexa.wire.openai import ChatCompletionRequest, ChatMessage, NamedToolChoice


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
