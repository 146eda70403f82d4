"""Anthropic Messages API bodies (`POST /v1/messages`, `/v1/messages/count_tokens`) and its error shape.

Limits are those of the OpenAI request the messages translate into, so a request that passes
here also passes there. Unknown fields are ignored, as Anthropic clients send new ones.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from nexa.wire.names import ModelName
from nexa.wire.openai import MAX_MEDIA, MAX_MESSAGES, MAX_PARTS, MAX_TOOLS, KeepAlive, StrictBase
from nexa.wire.rules import (
    by_role,
    content_tags,
    has_parts,
    media_limit,
    only_tags,
    parts_at_most,
    rules,
    typed,
    when,
)

# ---------------------------------------------------------------- request content blocks


class TextBlock(StrictBase):
    type: Literal["text"]
    text: str


class Base64Source(StrictBase):
    type: Literal["base64"]
    media_type: str = Field(description="image/png, image/jpeg, image/gif or image/webp.")
    data: str = Field(description="Base64 image bytes.")


class URLSource(StrictBase):
    type: Literal["url"]
    url: str = Field(description="http(s) URL (or, as in Nexa's own forms, a path on the server).")


class ImageBlock(StrictBase):
    type: Literal["image"]
    source: Annotated[Union[Base64Source, URLSource], Field(discriminator="type")]


class ToolUseBlock(StrictBase):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


ToolResultContent = Annotated[Union[TextBlock, ImageBlock], Field(discriminator="type")]


class ToolResultBlock(StrictBase):
    # An image inside a tool result is refused (nexa.compat.anthropic names it): text only.
    model_config = ConfigDict(json_schema_extra=only_tags(["text"]))

    type: Literal["tool_result"]
    tool_use_id: str
    content: str | Annotated[list[ToolResultContent], Field(max_length=MAX_PARTS)] | None = None
    is_error: bool | None = None


class ThinkingBlock(StrictBase):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(StrictBase):
    type: Literal["redacted_thinking"]
    data: str


InputBlock = Annotated[
    Union[TextBlock, ImageBlock, ToolUseBlock, ToolResultBlock, ThinkingBlock, RedactedThinkingBlock],
    Field(discriminator="type"),
]


class InputMessage(StrictBase):
    # Which blocks each role carries; nexa.compat.anthropic refuses the others, naming the block. A user turn
    # with no blocks is no turn at all (as Anthropic's API, which refuses empty content).
    model_config = ConfigDict(json_schema_extra=by_role({
        ("user",): content_tags(["text", "image", "tool_result"], min_items=1),
        ("assistant",): content_tags(["text", "thinking", "redacted_thinking", "tool_use"]),
        ("system",): content_tags(["text"]),
    }))

    role: Literal["user", "assistant", "system"] = Field(
        description="'system' (as Claude Code sends it) is an instruction in the conversation, at its place.")
    content: str | Annotated[list[InputBlock], Field(max_length=MAX_PARTS)]


class ToolDefinition(StrictBase):
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    input_schema: dict[str, Any] = Field(description="JSON schema of the tool's input object.")


class ToolChoiceAuto(StrictBase):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(StrictBase):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(StrictBase):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(StrictBase):
    type: Literal["none"]


ToolChoice = Annotated[Union[ToolChoiceAuto, ToolChoiceAny, ToolChoiceTool, ToolChoiceNone], Field(discriminator="type")]


class ThinkingEnabled(StrictBase):
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=1, description="Accepted; the engine does not cap reasoning by a budget.")


class ThinkingDisabled(StrictBase):
    type: Literal["disabled"]


class ThinkingAdaptive(StrictBase):
    """The model decides whether to think: a reasoning model's own default."""

    type: Literal["adaptive", "between_tools"]
    display: Literal["summarized", "omitted"] | None = None


Thinking = Annotated[Union[ThinkingEnabled, ThinkingDisabled, ThinkingAdaptive], Field(discriminator="type")]


class JSONOutputFormat(StrictBase):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema", description="The JSON schema the reply must follow.")


class OutputConfig(StrictBase):
    format: JSONOutputFormat | None = None
    effort: str | None = Field(None, description="Accepted; unused.")
System = str | list[TextBlock] | None


class CountTokensRequest(StrictBase):
    """What `/v1/messages/count_tokens` reads: the prompt side of a Messages request."""

    model_config = ConfigDict(json_schema_extra=rules(
        media_limit("messages", MAX_MEDIA, has_parts(typed("image")), parts_at_most(typed("image"))),
        when("tool_choice", typed("any", "tool"), {"tools": {"type": "array", "minItems": 1}}, required=["tools"]),
    ))

    model: str = ModelName()
    messages: list[InputMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    system: System = Field(None, description="A string, or a list of text blocks.")
    tools: list[ToolDefinition] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = Field(
        None, description="Absent means disabled, as in Anthropic's API; adaptive: the model's default."
    )


class MessagesRequest(CountTokensRequest):
    """Anthropic's Messages request."""

    max_tokens: int = Field(ge=1, le=10_000_000, description="Most tokens to generate (required, as in Anthropic's API).")
    stop_sequences: list[str] | None = Field(None, max_length=16)
    stream: bool = Field(False, description="Send server-sent events as tokens are generated.")
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0, le=100_000)
    metadata: dict[str, Any] | None = Field(None, description="Accepted; unused.")
    output_config: OutputConfig | None = Field(None, description="`format` constrains the reply to a JSON schema.")
    keep_alive: KeepAlive


# ---------------------------------------------------------------- responses


class TextContent(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ThinkingContent(BaseModel):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str = Field(description="Not a real signature: nexa ignores it when the block comes back.")


class ToolUseContent(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class MessageUsage(BaseModel):
    input_tokens: int = Field(description="Prompt tokens processed, as Anthropic counts them: those not read from cache.")
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = Field(0, description="Prompt tokens the engine's prompt cache held already.")


class MessageResponse(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[Annotated[Union[ThinkingContent, TextContent, ToolUseContent], Field(discriminator="type")]]
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: MessageUsage


class TokenCount(BaseModel):
    input_tokens: int


class ErrorInfo(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    type: Literal["error"] = "error"
    error: ErrorInfo


# Anthropic's error type for each HTTP status.
_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 503: "overloaded_error",
    529: "overloaded_error",
}


def error_body(status: int, openai_body: dict) -> dict:
    """An OpenAI-shaped error body in Anthropic's shape, typed by its status."""
    fallback = "invalid_request_error" if status < 500 else "api_error"
    message = openai_body["error"]["message"]
    return ErrorResponse(error=ErrorInfo(type=_ERROR_TYPES.get(status, fallback), message=message)).model_dump()
