"""OpenAI Responses API bodies (`POST /v1/responses`, `GET /v1/responses/{id}`).

Function tools run on the client, and so do `custom` (freeform) tools and the functions of a
`namespace` tool; OpenAI's hosted tools (web search, file search, ...) need OpenAI's servers, so
they are accepted and left out of the prompt. Input items are the same shapes as output items, so a client can send a response's
output back as the next input. Unknown fields are ignored, as OpenAI clients send new ones;
errors keep OpenAI's shape, so this dialect needs no entry in DIALECTS.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, WithJsonSchema, model_validator

from nexa.wire.names import ModelName
from nexa.wire.rules import has_parts, media_limit, parts_at_most, refers_to, tag_required, typed, unset
from nexa.wire.openai import MAX_MEDIA, MAX_MESSAGES, MAX_PARTS, MAX_TOOLS, KeepAlive, MaxTokens, StrictBase, Temperature, TopP

# ---------------------------------------------------------------- content parts


class InputText(StrictBase):
    type: Literal["input_text"]
    text: str


def _image_url_required(schema: dict[str, Any]) -> None:
    """A file_id alone is refused (nexa.compat.responses says why): the document asks for image_url."""
    schema["properties"]["image_url"] = {"type": "string", "minLength": 1,
                                         "description": schema["properties"]["image_url"]["description"]}
    schema["required"].append("image_url")


class InputImage(StrictBase):
    model_config = ConfigDict(json_schema_extra=_image_url_required)

    type: Literal["input_image"]
    image_url: str | None = Field(None, description="data: URI, http(s) URL, or a path on the server.")
    file_id: str | None = Field(None, description="Not supported: nexa has no Files API; send image_url.")
    detail: Literal["auto", "low", "high", "original"] | None = None


class OutputText(StrictBase):
    model_config = ConfigDict(json_schema_extra=tag_required)

    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    logprobs: list[dict[str, Any]] = Field(default_factory=list)


class Refusal(StrictBase):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[Union[InputText, InputImage, OutputText, Refusal], Field(discriminator="type")]

# ---------------------------------------------------------------- items (input and output)


class InputMessage(StrictBase):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | Annotated[list[ContentPart], Field(max_length=MAX_PARTS)]
    id: str | None = None
    status: str | None = None


class FunctionCallItem(StrictBase):
    """A call the model made; sent back in input as part of the history."""

    model_config = ConfigDict(json_schema_extra=tag_required)  # no type: the item is a message

    type: Literal["function_call"] = "function_call"
    id: str | None = None
    call_id: str = Field(description="Pairs the call with its function_call_output.")
    name: str
    namespace: str | None = Field(None, description="The namespace tool whose function this is, if any.")
    arguments: str = Field(description="JSON-encoded arguments.")
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class CustomToolCallItem(StrictBase):
    """A call of a custom (freeform) tool: its input is one string, not JSON arguments."""

    model_config = ConfigDict(json_schema_extra=tag_required)  # no type: the item is a message

    type: Literal["custom_tool_call"] = "custom_tool_call"
    id: str | None = None
    call_id: str
    name: str
    input: str
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(StrictBase):
    type: Literal["function_call_output"]
    call_id: str
    output: str | Annotated[list[Union[InputText, OutputText]], Field(max_length=MAX_PARTS)]
    id: str | None = None
    status: str | None = None


class CustomToolCallOutputItem(StrictBase):
    type: Literal["custom_tool_call_output"]
    call_id: str
    output: str | Annotated[list[Union[InputText, OutputText]], Field(max_length=MAX_PARTS)]
    id: str | None = None
    status: str | None = None


class SummaryText(StrictBase):
    type: Literal["summary_text"] = "summary_text"
    text: str


class ReasoningText(StrictBase):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class ReasoningItem(StrictBase):
    """The model's thinking: `content` holds it as the engine produced it."""

    model_config = ConfigDict(json_schema_extra=tag_required)  # no type: the item is a message

    type: Literal["reasoning"] = "reasoning"
    id: str | None = None
    summary: list[SummaryText] = Field(default_factory=list)
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = Field(None, description="Ignored: nexa's reasoning is never encrypted.")
    status: Literal["in_progress", "completed", "incomplete"] | None = None


def _item_type(value: Any) -> str:
    """A message may leave out `type` (OpenAI's "easy input message")."""
    kind = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", "message")
    return kind if isinstance(kind, str) else ""


InputItem = Annotated[
    Union[
        Annotated[InputMessage, Tag("message")],
        Annotated[FunctionCallItem, Tag("function_call")],
        Annotated[FunctionCallOutputItem, Tag("function_call_output")],
        Annotated[CustomToolCallItem, Tag("custom_tool_call")],
        Annotated[CustomToolCallOutputItem, Tag("custom_tool_call_output")],
        Annotated[ReasoningItem, Tag("reasoning")],
    ],
    Discriminator(
        _item_type,
        custom_error_type="invalid_item_type",
        custom_error_message="unsupported input item type; use message, function_call, function_call_output, "
                             "custom_tool_call, custom_tool_call_output or reasoning",
    ),
]


class OutputMessage(StrictBase):
    type: Literal["message"] = "message"
    id: str
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    content: list[OutputText] = Field(default_factory=list)


OutputItem = Annotated[Union[OutputMessage, FunctionCallItem, CustomToolCallItem, ReasoningItem],
                      Field(discriminator="type")]

# ---------------------------------------------------------------- request


class FunctionTool(StrictBase):
    """Responses' flat function tool (chat nests the same fields under `function`)."""

    type: Literal["function"] = "function"
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


MAX_NAMESPACE = 128


class NamespacedFunction(FunctionTool):
    """A function of a namespace: offered to the model as `<namespace>__<name>`, a name that stays within the
    256 characters any function's name may have."""

    name: str = Field(min_length=1, max_length=256 - MAX_NAMESPACE - 2)


class NamespaceTool(StrictBase):
    """A group of function tools under one name (Codex's sub-agent and MCP tools): each function is
    offered to the model, and its calls come back with their `namespace`."""

    type: Literal["namespace"]
    name: str = Field(min_length=1, max_length=MAX_NAMESPACE)
    description: str | None = None
    tools: Annotated[list[NamespacedFunction], Field(max_length=MAX_TOOLS)]


class CustomTool(StrictBase):
    """A freeform tool: the model writes one string (`format` may describe it as a grammar)."""

    type: Literal["custom"]
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    format: dict[str, Any] | None = None


# OpenAI's tools that run on OpenAI's servers: a local server cannot run them, so they stay out of the prompt.
HOSTED_TOOLS = ("web_search", "web_search_preview", "file_search", "code_interpreter", "image_generation",
                "computer_use_preview", "computer_use", "mcp", "local_shell", "tool_search")


class HostedTool(BaseModel):
    """One of OpenAI's hosted tools, kept as sent (for the echo) and never offered to the model."""

    model_config = ConfigDict(extra="allow")
    type: Literal[HOSTED_TOOLS]  # type: ignore[valid-type]


class UnknownTool(BaseModel):
    """A tool type nexa does not know: refused, naming the type."""

    type: Any = None

    @model_validator(mode="after")
    def _refuse(self) -> "UnknownTool":
        raise ValueError(f"tool type {self.type!r} is not supported; use function, custom or namespace tools "
                         f"(hosted tools {', '.join(HOSTED_TOOLS)} are accepted and left out)")


def _tool_type(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind in ("function", "namespace", "custom"):
        return kind
    return "hosted" if kind in HOSTED_TOOLS else "type"  # the tag is in an error's loc: tools.N.type


ResponseTool = Annotated[
    Union[
        Annotated[FunctionTool, Tag("function")],
        Annotated[NamespaceTool, Tag("namespace")],
        Annotated[CustomTool, Tag("custom")],
        Annotated[HostedTool, Tag("hosted")],
        Annotated[UnknownTool, Tag("type")],
    ],
    Discriminator(_tool_type),
]


class FunctionToolChoice(StrictBase):
    type: Literal["function", "custom"]
    name: str


class HostedToolChoice(BaseModel):
    """`{"type": "web_search"}` and the like: forcing a tool nexa cannot run, refused when translated."""

    model_config = ConfigDict(extra="allow")
    type: Literal[HOSTED_TOOLS]  # type: ignore[valid-type]


class TextFormatText(StrictBase):
    model_config = ConfigDict(json_schema_extra=tag_required)

    type: Literal["text"] = "text"


class TextFormatJSONObject(StrictBase):
    type: Literal["json_object"]


class TextFormatJSONSchema(StrictBase):
    type: Literal["json_schema"]
    name: str = "response"
    schema_: dict[str, Any] = Field(alias="schema", description="The JSON schema the output must follow.")
    description: str | None = None
    strict: bool | None = None


TextFormat = Annotated[Union[TextFormatText, TextFormatJSONObject, TextFormatJSONSchema], Field(discriminator="type")]


class TextConfig(StrictBase):
    format: TextFormat = Field(default_factory=TextFormatText)
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(StrictBase):
    effort: str | None = Field(None, description="'none' turns thinking off; other values keep the model's default.")
    summary: Literal["auto", "concise", "detailed"] | None = None


ToolChoice = Literal["none", "auto", "required"] | FunctionToolChoice | HostedToolChoice
# What tool_choice takes: a hosted tool's choice is read (to name it in the 400) but never served.
_SERVED_CHOICE = WithJsonSchema({"anyOf": [
    {"enum": ["none", "auto", "required", None]},
    {"type": "object", "properties": {"type": {"enum": ["function", "custom"]}, "name": {"type": "string"}},
     "required": ["type", "name"]},
]})


def _request_rules(schema: dict[str, Any]) -> None:
    """What the types do not say. `tools` as `_tool_type` reads them: every tool names its type (a function tool
    without one is refused), and one of a type nexa does not know is refused. An `input` list holds something
    besides reasoning: thoughts alone leave the model nothing to answer. Its images count against MAX_MEDIA."""
    items = _array(schema["properties"]["tools"])["items"]
    items["oneOf"] = [{"allOf": [ref], "required": ["type"]} if refers_to(ref, FunctionTool) else ref
                      for ref in items["oneOf"] if not refers_to(ref, UnknownTool)]
    _array(schema["properties"]["input"])["contains"] = {
        "not": {"required": ["type"], "properties": {"type": {"const": "reasoning"}}}
    }
    image = typed("input_image")
    schema.setdefault("allOf", []).append(media_limit("input", MAX_MEDIA, has_parts(image), parts_at_most(image)))


def _array(field: dict[str, Any]) -> dict[str, Any]:
    return next(option for option in field["anyOf"] if option.get("type") == "array")


class ResponsesRequest(StrictBase):
    """OpenAI's Responses request, function tools only, plus the Nexa field `keep_alive`."""

    model_config = ConfigDict(json_schema_extra=_request_rules)

    model: str = ModelName()
    input: str | Annotated[list[InputItem], Field(min_length=1, max_length=MAX_MESSAGES)] = Field(
        description="A user message, or a list of items: messages, function calls and their outputs, reasoning."
    )
    instructions: str | None = Field(None, description="A system message; not carried over by previous_response_id.")
    previous_response_id: str | None = Field(None, description="Continue from a stored response: its input and output come first.")
    store: bool = Field(True, description="Keep the response for GET and previous_response_id (in memory, bounded).")
    stream: bool = False
    tools: list[ResponseTool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Annotated[ToolChoice | None, _SERVED_CHOICE] = Field(
        None, description="none, auto, required or a function tool's {type, name}; OpenAI's hosted tools cannot be forced."
    )
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    max_output_tokens: MaxTokens
    temperature: Temperature
    top_p: TopP
    metadata: dict[str, str] | None = Field(None, max_length=16, description="Echoed in the response.")
    user: str | None = Field(None, description="Accepted for OpenAI compatibility; unused.")
    background: Annotated[bool | None, unset(False)] = Field(None, description="Not supported: must be false.")
    keep_alive: KeepAlive
    include: list[str] | None = Field(None, description="Accepted; nexa's reasoning is never encrypted, so there is "
                                                        "nothing extra to include.")
    prompt_cache_key: str | None = Field(None, description="Accepted: a hint that requests share a prompt prefix.")
    client_metadata: dict[str, Any] | None = Field(None, description="Accepted and ignored: the client's own bookkeeping.")


# ---------------------------------------------------------------- response


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(BaseModel):
    code: str
    message: str


class Response(BaseModel):
    """A response, as POST returns it, the stream's last event carries it, and GET gives it again."""

    id: str = Field(description="resp_...; usable as previous_response_id while stored.")
    object: Literal["response"] = "response"
    created_at: int
    completed_at: int | None = None
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    usage: ResponseUsage | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool = True
    background: bool = False
    parallel_tool_calls: bool = True
    tool_choice: ToolChoice = "auto"
    tools: list[ResponseTool] = Field(default_factory=list)
    text: TextConfig = Field(default_factory=TextConfig)
    reasoning: Reasoning | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    truncation: Literal["disabled"] = "disabled"
    metadata: dict[str, str] = Field(default_factory=dict)
    user: str | None = None


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


class InputTokens(BaseModel):
    """`POST /v1/responses/input_tokens`, which takes a response request's body."""

    object: Literal["response.input_tokens"] = "response.input_tokens"
    input_tokens: int
