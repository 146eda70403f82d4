"""OpenAI's request and response bodies as pydantic models (so /docs is the real API), with nexa's fields in its
model cards; and the bases the other dialects share (StrictBase, the sampling fields). nexa's own admin types are
in nexa.wire.admin.

Sampling fields are defined once as Annotated aliases and shared by chat and
text completions. Unknown fields are ignored, as OpenAI clients send new ones.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from nexa.wire.llama import ModelArchitecture, ModelStatus
from nexa.wire.names import ModelName
from nexa.wire.rules import has_parts, media_limit, not_both, parts_at_most, rules, typed, unset, when

# Per-request limits: far above real use, low enough that no request can tie up the server.
MAX_MESSAGES = 4096
MAX_PARTS = 256  # content parts in one message
MAX_MEDIA = 16  # images and audio clips in one request
MAX_PROMPTS = 64
MAX_TOOLS = 128  # OpenAI's own limit

# ---------------------------------------------------------------- shared fields

Temperature = Annotated[float | None, Field(None, ge=0, le=2, description="Sampling temperature; 0 is greedy.")]
TopP = Annotated[float | None, Field(None, ge=0, le=1, description="Nucleus sampling probability mass.")]
TopK = Annotated[int | None, Field(None, ge=0, le=100_000, description="Sample from the k most likely tokens; 0 disables.")]
MinP = Annotated[float | None, Field(None, ge=0, le=1, description="Drop tokens below min_p times the top probability.")]
# JSON numbers past 2**53 are not exact in most clients (JavaScript's numbers) nor in schema tools.
Seed = Annotated[int | None, Field(None, ge=-(2**53 - 1), le=2**53 - 1, description="Seed for reproducible sampling.")]
Stop = Annotated[
    str | Annotated[list[str], Field(max_length=16)] | None,
    Field(None, description="Up to 16 sequences where generation stops."),
]
MaxTokens = Annotated[
    Literal[-1] | Annotated[int, Field(ge=1, le=10_000_000)] | None,
    Field(None, description="Most tokens to generate; -1 (llama.cpp's 'unlimited') or none: until the context is full."),
]
Penalty = Annotated[float | None, Field(None, ge=-2, le=2, description="OpenAI presence/frequency penalty.")]
RepetitionPenalty = Annotated[
    float | None, Field(None, ge=0, le=10, description="llama.cpp repeat penalty; 1.0 disables.")
]
# OpenAI's own cap; each entry costs the engine work on every sampled token.
MAX_LOGIT_BIAS = 300
LogitBias = Annotated[
    dict[str, Annotated[float, Field(ge=-100, le=100)]] | None,
    Field(None, max_length=MAX_LOGIT_BIAS, description="Token id (as a string) to a bias added to its logit; at most 300."),
]
N = Annotated[int | None, Field(None, ge=1, le=1, description="Number of choices; only 1 is supported.")]
Stream = Annotated[bool, Field(False, description="Send server-sent events as tokens are generated.")]
KeepAlive = Annotated[
    float | None,
    Field(
        None,
        description="Nexa: seconds the model stays loaded once idle, from now on; 0 unloads it after this "
        "request, -1 keeps it loaded. Default: the server's --keepalive.",
    ),
]


class StrictBase(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class StreamOptions(StrictBase):
    include_usage: bool = Field(False, description="Send a last chunk with token usage.")


class SamplingRequest(StrictBase):
    """Fields shared by chat and text completions."""

    model: str = ModelName()
    stream: Stream
    stream_options: StreamOptions | None = None
    temperature: Temperature
    top_p: TopP
    top_k: TopK
    min_p: MinP
    seed: Seed
    stop: Stop
    max_tokens: MaxTokens
    presence_penalty: Penalty
    frequency_penalty: Penalty
    repetition_penalty: RepetitionPenalty
    logit_bias: LogitBias
    n: N
    user: str | None = Field(None, description="Accepted for OpenAI compatibility; unused.")
    keep_alive: KeepAlive


# ---------------------------------------------------------------- chat messages


class TextPart(StrictBase):
    type: Literal["text"]
    text: str


class ImageURL(StrictBase):
    url: str = Field(description="data: URI, http(s) URL, or a path on the server.")
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(StrictBase):
    type: Literal["image_url"]
    image_url: ImageURL | str = Field(description="OpenAI's {url} object, or (Nexa form) the URL or path itself.")


class InputAudio(StrictBase):
    data: str = Field(description="Base64 audio bytes.")
    format: Literal["wav", "mp3", "flac"] = "wav"


class AudioPart(StrictBase):
    type: Literal["input_audio"]
    input_audio: InputAudio | str = Field(description="OpenAI's {data, format}, or (Nexa form) a path or data URI.")


ContentPart = Annotated[Union[TextPart, ImagePart, AudioPart], Field(discriminator="type")]


class FunctionCall(StrictBase):
    name: str
    arguments: str = Field(description="JSON-encoded arguments.")


class ToolCall(StrictBase):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


# The engine refuses an assistant turn with neither content nor a call, and any other turn without content.
_SAYS = {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}}
_TURN_SAYS = {"if": {"required": ["role"], "properties": {"role": {"const": "assistant"}}}, "then": {"anyOf": [
    _SAYS,
    {"required": ["tool_calls"], "properties": {"tool_calls": {"type": "array", "minItems": 1}}},
    {"required": ["function_call"], "properties": {"function_call": {"type": "object"}}},
]}, "else": _SAYS}


class ChatMessage(StrictBase):
    model_config = ConfigDict(json_schema_extra=rules(_TURN_SAYS))

    role: Literal["system", "developer", "user", "assistant", "tool", "function"] = Field(
        description="'function' (deprecated): a function's result, sent as a tool turn."
    )
    content: str | Annotated[list[ContentPart], Field(max_length=MAX_PARTS)] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = Field(None, description="Deprecated: an assistant's call, as a tool call.")
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class FunctionDefinition(StrictBase):
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(StrictBase):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(StrictBase):
    name: str


class NamedToolChoice(StrictBase):
    type: Literal["function"] = "function"
    function: NamedFunction


class JSONSchemaFormat(StrictBase):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(StrictBase):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


_MEDIA_PART = typed("image_url", "input_audio")
_FORCED_CHOICE: dict[str, Any] = {"anyOf": [{"const": "required"}, {"type": "object"}]}


class ChatCompletionRequest(SamplingRequest):
    """OpenAI's chat completion request, plus the Nexa fields `enable_think` and `reasoning_format`."""

    model_config = ConfigDict(json_schema_extra=rules(
        not_both("tools", "functions"), not_both("tool_choice", "function_call"),
        when("tool_choice", _FORCED_CHOICE, {"tools": {"type": "array", "minItems": 1}}, required=["tools"]),
        when("function_call", {"type": "object"}, {"functions": {"type": "array", "minItems": 1}},
             required=["functions"]),
        media_limit("messages", MAX_MEDIA, has_parts(_MEDIA_PART), parts_at_most(_MEDIA_PART)),
    ))

    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES, description="The conversation so far.")
    max_completion_tokens: MaxTokens
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDefinition] | None = Field(
        None, max_length=MAX_TOOLS, description="Deprecated form of `tools`; the reply then carries `function_call`."
    )
    function_call: Literal["none", "auto"] | NamedFunction | None = Field(
        None, description="Deprecated form of `tool_choice`."
    )
    response_format: ResponseFormat | None = None
    enable_think: bool | None = Field(None, description="Nexa: let reasoning models think (default true).")
    reasoning_format: Literal["parsed", "raw", "auto", "deepseek", "none"] | None = Field(
        None, description="Nexa: 'parsed' puts <think> text in reasoning_content, 'raw' leaves it in content; "
        "llama.cpp's names (as its web UI sends them): 'auto' and 'deepseek' parse, 'none' leaves it."
    )

    @field_validator("messages")
    @classmethod
    def _limit_media(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        media = sum(
            1 for m in messages if isinstance(m.content, list) for part in m.content if not isinstance(part, TextPart)
        )
        if media > MAX_MEDIA:
            raise ValueError(f"{media} images or audio clips in one request; send at most {MAX_MEDIA}")
        return messages


class CompletionRequest(SamplingRequest):
    """OpenAI's (legacy) text completion request."""

    prompt: str | Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)] = Field(
        description="The text to continue."
    )
    logprobs: int | None = Field(None, ge=0, le=20, description="Return this many top log probabilities.")
    echo: Annotated[bool | None, unset(False)] = Field(None, description="Not supported; must be false.")
    suffix: Annotated[str | None, unset("")] = Field(None, description="Not supported (fill-in-the-middle).")


# Emptiness is documented, and refused by nexa.compat.retrieval with the index of the empty input.
_NON_EMPTY_TEXT = {"type": "string", "minLength": 1}
_TOKENS = {"type": "array", "minItems": 1, "items": {"type": "integer"}}
EmbeddingInput = Annotated[str | list[str] | list[int] | list[list[int]], WithJsonSchema({"anyOf": [
    _NON_EMPTY_TEXT,
    {"type": "array", "minItems": 1, "items": _NON_EMPTY_TEXT},
    _TOKENS,
    {"type": "array", "minItems": 1, "items": _TOKENS},
]})]


class EmbeddingRequest(StrictBase):
    """OpenAI's embeddings request, plus the Nexa field `task_type` and `truncate`."""

    model: str = ModelName("Store name of an embedder model: org/repo or org/repo:QUANT.")
    input: EmbeddingInput = Field(
        description="A text, a list of texts, a token array, or a list of token arrays; none may be empty."
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="'base64' sends each vector as little-endian float32 bytes in base64."
    )
    dimensions: Annotated[int | None, unset()] = Field(
        None, description="Not supported: vectors keep the model's own size."
    )
    truncate: bool = Field(False, description="Cut inputs longer than the context instead of refusing them.")
    task_type: str | None = Field(
        None, description="Nexa: default, search_query or search_document; accepted, the vectors do not change."
    )
    user: str | None = Field(None, description="Accepted for OpenAI compatibility; unused.")
    keep_alive: KeepAlive


class RerankDocument(StrictBase):
    text: str


RerankQuery = Annotated[str, Field(min_length=1, description="What the documents are ranked against.")]
TopN = Annotated[int | None, Field(None, ge=1, description="Keep only the n best documents.")]


class RerankingRequest(StrictBase):
    """Nexa's reranking request: scores come back in the documents' order."""

    model: str = ModelName("Store name of a reranker model: org/repo or org/repo:QUANT.")
    query: RerankQuery
    documents: list[str] = Field(min_length=1, description="Texts to score against the query.")
    top_n: TopN
    normalize: bool | None = Field(None, description="Normalise the scores (softmax unless normalize_method says).")
    normalize_method: Literal["softmax", "linear", "none"] | None = Field(
        None, description="softmax: scores sum to 1; linear: min-max to [0, 1]; none: the model's raw scores."
    )
    batch_size: int | None = Field(None, description="Nexa: accepted; nexa picks its own batches.")
    keep_alive: KeepAlive


class RerankRequest(StrictBase):
    """Cohere/Jina/llama.cpp rerank request: results come back best first."""

    model: str = ModelName("Store name of a reranker model: org/repo or org/repo:QUANT.")
    query: RerankQuery
    documents: list[str | RerankDocument] = Field(min_length=1, description="Texts, or {text} objects, to rank.")
    top_n: TopN
    return_documents: bool = Field(False, description="Echo each document's text in its result.")
    keep_alive: KeepAlive


# ---------------------------------------------------------------- responses


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None


FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason | None
    logprobs: dict[str, Any] | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class FunctionCallDelta(BaseModel):
    name: str | None = Field(None, description="In the first delta of a call only.")
    arguments: str | None = Field(None, description="A piece of the JSON arguments; the pieces join to valid JSON.")


class ToolCallDelta(BaseModel):
    index: int = Field(description="Which call of the reply this piece belongs to.")
    id: str | None = Field(None, description="In the first delta of a call only.")
    type: Literal["function"] | None = None
    function: FunctionCallDelta


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    """One `data:` event of a streamed chat completion; the stream ends with `data: [DONE]`."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason | None
    logprobs: dict[str, Any] | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str = Field(description="org/repo:QUANT, usable as `model` in requests.")
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    type: str = Field(description="llm, vlm, embedder or reranker.")
    quant: str
    size: int = Field(description="Bytes of weights (model + projector).")
    loaded: bool
    capabilities: list[str] = Field(
        description="What it serves: completion, chat, tools (its template renders function tools), vision, "
        "audio; or embeddings, reranking."
    )
    status: ModelStatus = Field(description="llama-server's router form of its state, which the web UI reads.")
    architecture: ModelArchitecture = Field(description="Its input modalities, as the web UI reads them.")
    context_length: int | None = Field(
        None, description="Context tokens it gets (one request may use all of them): its worker's when loaded, "
        "else what a load would give it now; null when that cannot be worked out (a draft model not pulled).",
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class RetrievalUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int = Field(description="Position of the input this vector belongs to.")
    embedding: list[float] | str = Field(description="L2-normalised vector; base64 float32 when asked.")


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[Embedding] = Field(description="One entry per input, in input order.")
    usage: RetrievalUsage


class Reranking(BaseModel):
    """Nexa's reranking answer."""

    model: str
    result: list[float | None] = Field(
        description="One score per document, in input order; null for documents outside top_n."
    )
    usage: RetrievalUsage


class RerankResult(BaseModel):
    index: int = Field(description="Position of the document in the request.")
    relevance_score: float
    document: RerankDocument | None = Field(None, description="The document, when return_documents is true.")


class Rerank(BaseModel):
    """Cohere/Jina/llama.cpp rerank answer."""

    object: Literal["list"] = "list"
    model: str
    results: list[RerankResult] = Field(description="Best first, cut to top_n.")
    usage: RetrievalUsage
