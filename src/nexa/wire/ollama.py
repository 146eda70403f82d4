"""Ollama's API (/api/...) as pydantic models: the request bodies its clients send, the answers they read.

Ollama clients send `model` (older ones `name`); both are accepted. Unknown fields are ignored,
as Ollama's own server does. Answers are built as plain dicts by nexa.compat.ollama; the models
below document them in /docs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, WithJsonSchema

from nexa.wire.names import OLLAMA_NAME_PATTERN, name_schema
from nexa.wire.openai import (
    MAX_MEDIA,
    MAX_MESSAGES,
    MAX_TOOLS,
    MinP,
    Penalty,
    RepetitionPenalty,
    Seed,
    Stop,
    Temperature,
    Tool,
    TopK,
    TopP,
)
from nexa.wire.rules import by_role, media_limit, rules, unset, when

# Ollama's own version numbers: clients (and tools such as Open WebUI) check for at least 0.6.4.
OLLAMA_VERSION = "0.12.0"

ModelName = Field(
    validation_alias=AliasChoices("model", "name"),
    min_length=1,
    json_schema_extra=name_schema(OLLAMA_NAME_PATTERN),
    description="org/repo[:QUANT], hf.co/org/repo[:QUANT]; no tag or :latest means the default quant.",
)
# Longest keep_alive string read: Go's longest duration, '2562047h47m16.854775807s', has 24 characters.
MAX_DURATION = 64
# The strings nexa.compat.ollama.keep_alive_seconds reads: empty, a number of seconds, or a Go duration.
_NUMBER = r"([0-9]+\.?[0-9]*|\.[0-9]+)"
_DURATION = rf"^(|[+-]?{_NUMBER}([eE][+-]?[0-9]{{1,2}})?|-?({_NUMBER}(ns|us|ms|s|m|h))+)$"
KeepAliveValue = Annotated[float | Annotated[str, Field(max_length=MAX_DURATION)] | None, WithJsonSchema({"anyOf": [
    {"type": "number"}, {"type": "string", "maxLength": MAX_DURATION, "pattern": _DURATION}, {"type": "null"},
]})]
KeepAlive = Field(
    None,
    description="Seconds (a number), a duration such as '5m' or '1h30m', 0 to unload after the request, "
    "or a negative value to keep the model loaded.",
)
FormatValue = Annotated[str | dict[str, Any] | None, WithJsonSchema({"anyOf": [
    {"enum": ["", "json", None]}, {"type": "object"},
]})]
Format = Field(None, description="'json' for any JSON object, or a JSON schema the answer must follow.")
ThinkValue = Annotated[bool | str | None, WithJsonSchema({"anyOf": [
    {"type": "boolean"}, {"enum": ["low", "medium", "high", None]},
]})]
Think = Field(None, description="Let a reasoning model think (true) or not (false); 'low'/'medium'/'high' mean true.")
# num_predict: -1 or -2 (any negative) is no limit; 0 is refused, as max_tokens 0 is.
NumPredict = Annotated[int | None, WithJsonSchema({"anyOf": [
    {"type": "integer", "maximum": -1}, {"type": "integer", "minimum": 1, "maximum": 10_000_000}, {"type": "null"},
]})]
_EMPTY: dict[str, Any] = {"type": ["array", "null"], "maxItems": 0}
_TEXT: dict[str, Any] = {"type": "string", "minLength": 1}  # an empty input is refused, naming its index
_TEXTS = WithJsonSchema({"anyOf": [_TEXT, {"type": "array", "minItems": 1, "items": _TEXT}]})
_NO_TEXT: dict[str, Any] = {"enum": ["", None]}


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, populate_by_name=True)


class Options(_Request):
    """The sampling options nexa uses; the others (num_gpu, mirostat...) are accepted and ignored."""

    temperature: Temperature
    top_p: TopP
    top_k: TopK
    min_p: MinP
    seed: Seed
    stop: Stop
    num_predict: NumPredict = Field(None, description="Most tokens to generate; -1 or -2 means no limit.")
    num_ctx: int | None = Field(None, description="Accepted and ignored: the context is set by nexa serve --ctx.")
    repeat_penalty: RepetitionPenalty
    presence_penalty: Penalty
    frequency_penalty: Penalty


class ToolCallFunction(_Request):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict, description="The arguments as a JSON object.")


class ToolCall(_Request):
    function: ToolCallFunction


class Message(_Request):
    model_config = ConfigDict(json_schema_extra=by_role({
        ("user",): lambda _: {}, ("system", "assistant", "tool"): lambda _: {"images": _EMPTY},
    }))

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    images: list[str] | None = Field(None, max_length=MAX_MEDIA, description="Base64-encoded images.")
    thinking: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = Field(None, description="On a tool message: the tool whose result it is.")


class _Generation(_Request):
    model: str = ModelName
    stream: bool = Field(True, description="Newline-delimited JSON chunks (application/x-ndjson); false: one answer.")
    format: FormatValue = Format
    options: Options | None = None
    keep_alive: KeepAliveValue = KeepAlive
    think: ThinkValue = Think


def _images_at_most(n: int) -> dict[str, Any]:
    return {"properties": {"images": {"maxItems": n}}}


class ChatRequest(_Generation):
    model_config = ConfigDict(json_schema_extra=rules(media_limit(
        "messages", MAX_MEDIA, {"required": ["images"], "properties": {"images": {"type": "array", "minItems": 1}}},
        _images_at_most,
    )))

    messages: list[Message] = Field(
        default_factory=list, max_length=MAX_MESSAGES,
        description="The conversation; none only loads (or, with keep_alive 0, unloads) the model.",
    )
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)


class GenerateRequest(_Generation):
    model_config = ConfigDict(json_schema_extra=rules(
        when("raw", {"const": True}, {"images": _EMPTY, "format": _NO_TEXT, "system": _NO_TEXT}),
    ))

    prompt: str = Field("", description="The prompt; empty only loads (or, with keep_alive 0, unloads) the model.")
    system: str | None = None
    images: list[str] | None = Field(None, max_length=MAX_MEDIA, description="Base64-encoded images.")
    raw: bool = Field(False, description="Send the prompt as is, without the chat template.")
    suffix: Annotated[str | None, unset("")] = Field(None, description="Not supported (fill-in-the-middle).")
    template: Annotated[str | None, unset("")] = Field(
        None, description="Not supported: the model's own chat template is used."
    )
    context: Annotated[list[int] | None, unset([])] = Field(
        None, description="Not supported (deprecated in Ollama): send the conversation to /api/chat."
    )


class EmbedRequest(_Request):
    model: str = ModelName
    input: Annotated[str | list[str], _TEXTS] = Field(description="A text or a list of texts; none may be empty.")
    truncate: bool = Field(True, description="Cut inputs longer than the context (false: refuse them).")
    dimensions: Annotated[int | None, unset()] = Field(
        None, description="Not supported: vectors keep the model's own size."
    )
    options: dict[str, Any] | None = Field(None, description="Accepted and ignored: embeddings are not sampled.")
    keep_alive: KeepAliveValue = KeepAlive


class EmbeddingsRequest(_Request):
    """The older /api/embeddings: one prompt, one vector."""

    model: str = ModelName
    prompt: str = Field(min_length=1)
    options: dict[str, Any] | None = Field(None, description="Accepted and ignored: embeddings are not sampled.")
    keep_alive: KeepAliveValue = KeepAlive


class ModelRequest(_Request):
    """/api/show, /api/delete."""

    model: str = ModelName
    verbose: bool = False


class PullRequest(_Request):
    model: str = ModelName
    stream: bool = True
    insecure: bool = Field(False, description="Accepted and ignored.")


# ---------------------------------------------------------------- answers


class Version(BaseModel):
    version: str = OLLAMA_VERSION


class Details(BaseModel):
    parent_model: str = ""
    format: str = "gguf"
    family: str
    families: list[str]
    parameter_size: str
    quantization_level: str


class ListedModel(BaseModel):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: Details


class ModelList(BaseModel):
    models: list[ListedModel]


class RunningModel(ListedModel):
    expires_at: str
    size_vram: int = 0
    context_length: int


class RunningList(BaseModel):
    models: list[RunningModel]


class ShowResponse(BaseModel):
    license: str = ""
    modelfile: str
    parameters: str
    template: str
    details: Details
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str


class EmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class EmbeddingResponse(BaseModel):
    embedding: list[float]


class Progress(BaseModel):
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class ErrorResponse(BaseModel):
    error: str


def error_body(status: int, openai_body: dict) -> dict:
    """An OpenAI-shaped error body in Ollama's shape: {"error": message}; the status says the kind."""
    return {"error": openai_body["error"]["message"]}
