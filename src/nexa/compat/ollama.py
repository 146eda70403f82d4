"""Ollama's API ↔ the one internal chat request: names, options, messages, durations, NDJSON chunks.

Ollama names models `name:tag`; nexa's store holds `org/repo:QUANT`, so `org/repo:Q4_K_M`,
`hf.co/org/repo:Q4_K_M` and `hf.co/org/repo` (or `:latest`: the default quant) all work. Ollama
sends tool arguments as JSON objects and measures time in nanoseconds; OpenAI sends arguments as
JSON strings and llama.cpp reports milliseconds. No FastAPI here: the routes do the I/O, except the
cached GGUF header reads behind `facts`, which they call in a thread.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from nexa.compat.bodies import translated_chat
from nexa.compat.tools import arguments_object
from nexa.compat.translator import Translator
from nexa.errors import InvalidRequest, ModelNotFound, clip
from nexa.store import Manifest, ModelType
from nexa.store.facts import Facts, model_id
from nexa.wire.ollama import MAX_DURATION, ChatRequest, Details, GenerateRequest, Message, Options
from nexa.wire.openai import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    FunctionCall,
    ImagePart,
    ImageURL,
    JSONSchemaFormat,
    ResponseFormat,
    TextPart,
    ToolCall,
)

T = TypeVar("T")
NS_PER_MS = 1_000_000

# ---------------------------------------------------------------- names

_PULLED = re.compile(r"\(pulled: [^)]*\)")
_HUB_PREFIX = re.compile(r"^(?:https?://)?(?:hf\.co|huggingface\.co)/", re.IGNORECASE)


def store_name(name: str) -> str:
    """The store name an Ollama-style name means: the hf.co/ prefix and a :latest tag dropped."""
    text = _HUB_PREFIX.sub("", name.strip())
    repo, colon, tag = text.partition(":")
    return repo if not colon or tag.lower() == "latest" else f"{repo}:{tag}"


def not_found(name: str, exc: ModelNotFound) -> ModelNotFound:
    """Ollama's 'not found, try pulling it first', with the commands that pull it (and, when only the
    quant is missing, the quants that are pulled)."""
    target = clip(store_name(name))
    pulled = _PULLED.search(exc.message)
    return ModelNotFound(
        f"model '{clip(name)}' not found{' ' + pulled.group(0) if pulled else ''}, try pulling it first: "
        f"nexa pull {target} (or ollama pull hf.co/{target})",
        param="model", code="model_not_found",
    )


def unqualified(name: str) -> ModelNotFound:
    """A bare Ollama library name ('llama3'): nexa's models come from Hugging Face, named org/repo."""
    return ModelNotFound(
        f"model '{clip(name)}' not found: nexa names models org/repo[:QUANT] as on Hugging Face "
        "(e.g. ggml-org/Qwen3-1.7B-GGUF:Q4_K_M, or hf.co/ggml-org/Qwen3-1.7B-GGUF); pull one with nexa pull org/repo",
        param="model", code="model_not_found",
    )


def resolve(resolver: Callable[[str], T], name: str) -> T:
    """`resolver` (the manager's) applied to the store name `name` means, with Ollama's not-found message."""
    target = store_name(name)
    if "/" not in target.partition(":")[0]:
        raise unqualified(name)
    try:
        return resolver(target)
    except ModelNotFound as exc:
        raise not_found(name, exc) from None


# ---------------------------------------------------------------- keep_alive

_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_UNITS = sorted(_UNIT_S, key=len, reverse=True)  # 'ms' before 'm'
_NUMBER = frozenset("0123456789.")


def go_duration(text: str) -> float | None:
    """Seconds in a Go duration without its sign ('1h30m', '1.5s'), or None when it is not one. One pass
    over the text, no regex: a regex that backtracks took minutes on a long string of digits."""
    total, at = 0.0, 0
    while at < len(text):
        end = at
        while end < len(text) and text[end] in _NUMBER:
            end += 1
        number = text[at:end]
        unit = next((u for u in _UNITS if text.startswith(u, end)), None)
        if unit is None or number.count(".") > 1 or not number.strip("."):
            return None
        total += float(number) * _UNIT_S[unit]
        at = end + len(unit)
    return total if text else None


def keep_alive_seconds(value: float | str | None) -> float | None:
    """Ollama's keep_alive as nexa's seconds: a number is seconds, a string a Go duration ('5m', '1h30m')
    or a number; negative keeps the model loaded (-1), 0 unloads it after the request."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip()
        sign, body = (-1.0, text[1:]) if text.startswith("-") else (1.0, text)
        try:
            seconds = float(text) if len(text) <= MAX_DURATION else None
        except ValueError:
            seconds = None if (parsed := go_duration(body)) is None else sign * parsed
        if seconds is None:
            raise InvalidRequest(
                f"keep_alive '{clip(text)}' is not a duration; send seconds (300), a duration such as '5m' or "
                "'1h30m', 0 to unload after the request, or -1 to keep the model loaded", param="keep_alive",
            ) from None
    if not math.isfinite(seconds):
        raise InvalidRequest("keep_alive must be a finite number of seconds", param="keep_alive")
    return -1.0 if seconds < 0 else seconds


# ---------------------------------------------------------------- requests: Ollama → OpenAI

# Ollama option → ChatCompletionRequest field, where they differ.
_OPTION_FIELDS = {"num_predict": "max_tokens", "repeat_penalty": "repetition_penalty"}
_IGNORED_OPTIONS = {"num_ctx"}  # the context is the server's --ctx: one worker serves every request


def option_fields(options: Options | None) -> dict[str, Any]:
    """Sampling fields from Ollama's `options`; num_predict -1/-2 (no limit) leaves max_tokens unset."""
    if options is None:
        return {}
    fields: dict[str, Any] = {}
    for key, value in options.model_dump(exclude_none=True, exclude=_IGNORED_OPTIONS).items():
        if key == "num_predict" and value < 0:
            continue
        fields[_OPTION_FIELDS.get(key, key)] = value
    return fields


def response_format(format_: str | dict[str, Any] | None) -> ResponseFormat | None:
    """`format`: 'json' is any JSON object, a dict is a JSON schema, '' or none is free text."""
    if format_ is None or format_ == "":
        return None
    if format_ == "json":
        return ResponseFormat(type="json_object")
    if isinstance(format_, dict):
        return ResponseFormat(type="json_schema", json_schema=JSONSchemaFormat(schema=format_))
    raise InvalidRequest(f"format '{clip(format_)}' is not supported; send \"json\" or a JSON schema object",
                         param="format")


def _think(think: bool | str | None) -> bool | None:
    """true/false as sent; gpt-oss's effort levels ('low', 'medium', 'high') mean thinking on."""
    if isinstance(think, str):
        if think.lower() not in ("low", "medium", "high"):
            raise InvalidRequest(f"think '{clip(think)}' is not supported; send true, false, 'low', 'medium' or 'high'",
                                 param="think")
        return True
    return think


def _image_parts(images: list[str] | None) -> list[ImagePart]:
    """Ollama's base64 images as data: URIs; the media policy decodes and checks them like any other."""
    return [ImagePart(type="image_url", image_url=ImageURL(url=f"data:image/png;base64,{data}"))
            for data in images or []]


def _content(text: str | None, images: list[str] | None) -> str | list[TextPart | ImagePart]:
    if not images:
        return text or ""
    return [*_image_parts(images), *([TextPart(type="text", text=text)] if text else [])]


def _messages(messages: list[Message]) -> list[ChatMessage]:
    """Ollama's turns as OpenAI's: calls get ids, and each tool result the id of the call it answers
    (the first pending call of its tool_name, else the first pending call)."""
    out: list[ChatMessage] = []
    pending: list[tuple[str, str]] = []  # (call id, function name) not yet answered
    for i, message in enumerate(messages):
        if message.images and message.role != "user":
            raise InvalidRequest(f"messages[{i}] is a {message.role} message with images; images belong to user "
                                 "messages", param=f"messages[{i}].images")
        if message.role == "assistant":
            calls = [
                ToolCall(id=f"call_{i}_{j}",
                         function=FunctionCall(name=c.function.name, arguments=json.dumps(c.function.arguments)))
                for j, c in enumerate(message.tool_calls or [])
            ]
            pending = [(c.id, c.function.name) for c in calls]
            # The engine takes no assistant turn without content or calls: an empty answer is "" (Ollama keeps it).
            out.append(ChatMessage(role="assistant", content=message.content or ("" if not calls else None),
                                   tool_calls=calls or None, reasoning_content=message.thinking or None))
        elif message.role == "tool":
            match = next((p for p in pending if p[1] == message.tool_name), pending[0] if pending else None)
            if match is not None:
                pending.remove(match)
            out.append(ChatMessage(role="tool", content=message.content or "", name=message.tool_name,
                                   tool_call_id=match[0] if match else f"call_{i}"))
        else:
            out.append(ChatMessage(role=message.role, content=_content(message.content, message.images)))
    return out


def _translate(fields: dict[str, Any], options: Options | None) -> ChatCompletionRequest:
    """The chat request, with a bad option reported under its Ollama name (options.temperature)."""
    fields.update(option_fields(options))
    try:
        return translated_chat(fields)
    except InvalidRequest as exc:
        ours = {v: k for k, v in _OPTION_FIELDS.items()}
        field = (exc.param or "").split(".")[0]
        if options is not None and field in {*option_fields(options)}:
            exc.param = f"options.{ours.get(field, field)}"
            exc.message = f"{exc.param}: {exc.message}"
        raise


def _common(request: ChatRequest | GenerateRequest) -> dict[str, Any]:
    return {
        "model": store_name(request.model), "stream": request.stream,
        "keep_alive": keep_alive_seconds(request.keep_alive), "response_format": response_format(request.format),
        "enable_think": _think(request.think),
    }


def chat_request(request: ChatRequest) -> ChatCompletionRequest:
    """The chat request an /api/chat body means (it must have messages)."""
    fields = {**_common(request), "messages": _messages(request.messages), "tools": request.tools}
    return _translate(fields, request.options)


def _check_generate(request: GenerateRequest) -> None:
    for field, value, why in (
        ("suffix", request.suffix, "fill-in-the-middle is not supported"),
        ("template", request.template, "the model's own chat template is used (or send raw: true and your own prompt)"),
        ("context", request.context, "send the conversation to /api/chat instead"),
    ):
        if value:
            raise InvalidRequest(f"'{field}' is not supported: {why}; leave it unset", param=field)


def generate_chat_request(request: GenerateRequest) -> ChatCompletionRequest:
    """A templated /api/generate: the prompt as a user turn (after `system`), on the chat path."""
    _check_generate(request)
    messages = ([ChatMessage(role="system", content=request.system)] if request.system else []) + [
        ChatMessage(role="user", content=_content(request.prompt, request.images))
    ]
    return _translate({**_common(request), "messages": messages}, request.options)


def generate_completion_request(request: GenerateRequest) -> CompletionRequest:
    """A raw /api/generate: the prompt as is, on the text-completion path."""
    _check_generate(request)
    for field, value in (("images", request.images), ("format", request.format), ("system", request.system)):
        if value:
            raise InvalidRequest(f"'{field}' cannot be used with raw: true (the prompt is sent as is); "
                                 "leave it out or drop raw", param=field)
    fields = {**_common(request), "messages": [ChatMessage(role="user", content=request.prompt)]}
    chat = _translate(fields, request.options)
    sampling = chat.model_dump(exclude_none=True, include=set(CompletionRequest.model_fields) - {"stream_options"})
    return CompletionRequest(**sampling, prompt=request.prompt)


# ---------------------------------------------------------------- answers: OpenAI → Ollama

_DONE_REASONS = {"length": "length"}  # stop, tool_calls and the rest are Ollama's "stop"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Clock:
    """The request's times in ns (time.perf_counter_ns): start, and when the model was leased."""

    start: int
    leased: int


def final_fields(usage: dict[str, Any], timings: dict[str, Any], clock: Clock, end: int) -> dict[str, Any]:
    """Ollama's counts and durations (ns) from the engine's usage and timings (ms)."""
    prompt_ms, eval_ms = timings.get("prompt_ms") or 0.0, timings.get("predicted_ms") or 0.0
    return {
        "total_duration": end - clock.start,
        "load_duration": clock.leased - clock.start,
        # Ollama counts the prompt tokens it evaluated: those read from the prompt cache are not.
        "prompt_eval_count": int(usage.get("prompt_tokens", timings.get("prompt_n", 0)) or 0)
        - int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
        "prompt_eval_duration": int(prompt_ms * NS_PER_MS),
        "eval_count": int(usage.get("completion_tokens", timings.get("predicted_n", 0)) or 0),
        "eval_duration": int(eval_ms * NS_PER_MS),
    }


def ollama_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI's tool calls (arguments a JSON string) as Ollama's (arguments an object)."""
    functions = [call["function"] for call in calls]
    return [
        {"function": {"index": i, "name": f["name"], "arguments": arguments_object(f.get("arguments", ""), f["name"])}}
        for i, f in enumerate(functions)
    ]


def _assistant(content: str, thinking: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = ollama_tool_calls(calls)
    return message


class Reply:
    """Builds /api/chat or /api/generate bodies: chat puts text in `message`, generate in `response`."""

    def __init__(self, model: str, chat: bool):
        self.model = model
        self.chat = chat

    def body(
        self, content: str, thinking: str = "", calls: list[dict[str, Any]] | None = None, **extra: Any
    ) -> dict[str, Any]:
        head: dict[str, Any] = {"model": self.model, "created_at": now_iso()}
        if self.chat:
            head["message"] = _assistant(content, thinking, calls or [])
        else:
            head["response"] = content
            if thinking:
                head["thinking"] = thinking
        return {**head, **extra}

    def answer(self, answer: dict[str, Any], clock: Clock, end: int) -> dict[str, Any]:
        """The engine's whole (non-streamed) chat or text completion answer."""
        choice = answer["choices"][0]
        message = choice.get("message") or {}
        content = message.get("content") if "message" in choice else choice.get("text")
        reason = _DONE_REASONS.get(choice.get("finish_reason"), "stop")
        counts = final_fields(answer.get("usage") or {}, answer.get("timings") or {}, clock, end)
        return self.body(content or "", message.get("reasoning_content") or "", message.get("tool_calls"), done=True,
                         done_reason=reason, **counts)

    def state(self, reason: str) -> dict[str, Any]:
        """The answer to a request that only loads or unloads the model."""
        return self.body("", done=True, done_reason=reason)


class ChunkStream(Translator):
    """OpenAI chunks (chat or text completion) in, Ollama's NDJSON chunks out. Tool calls arrive in
    fragments; Ollama sends each call whole, so they are gathered and sent when the choice finishes."""

    def __init__(self, reply: Reply, clock: Clock):
        self.reply = reply
        self.clock = clock
        self._calls: dict[int, dict[str, Any]] = {}
        self._reason = "stop"
        self._usage: dict[str, Any] = {}
        self._timings: dict[str, Any] = {}

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        self._usage = chunk.get("usage") or self._usage
        self._timings = chunk.get("timings") or self._timings
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content") if "delta" in choice else choice.get("text")
            if text or delta.get("reasoning_content"):
                out.append(self.reply.body(text or "", delta.get("reasoning_content") or "", done=False))
            for call in delta.get("tool_calls") or []:
                self._gather(call)
            if choice.get("finish_reason"):
                self._reason = _DONE_REASONS.get(choice["finish_reason"], "stop")
                if self._calls:
                    out.append(self.reply.body("", calls=[self._calls[k] for k in sorted(self._calls)], done=False))
                    self._calls = {}
        return out

    def _gather(self, call: dict[str, Any]) -> None:
        function = call.get("function") or {}
        held = self._calls.setdefault(call.get("index", 0), {"function": {"name": "", "arguments": ""}})
        held["function"]["name"] += function.get("name") or ""
        held["function"]["arguments"] += function.get("arguments") or ""

    def finish(self, end: int | None = None) -> list[dict[str, Any]]:
        """The last chunk, done: true, with the counts and durations; `end` (ns) defaults to now."""
        end = time.perf_counter_ns() if end is None else end
        return [self.reply.body("", done=True, done_reason=self._reason,
                                **final_fields(self._usage, self._timings, self.clock, end))]


# ---------------------------------------------------------------- models: tags, show, ps

_THINKING = re.compile(r"enable_thinking|<think>|reasoning_content")
# nexa's capability names → Ollama's (None: Ollama has no name for it).
_CAPABILITY = {
    "completion": "completion", "tools": "tools", "vision": "vision", "audio": "audio", "embeddings": "embedding",
}


def parameter_size(count: int) -> str:
    """Ollama's short parameter count: '135M', '1.7B'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}".removesuffix(".0") + unit
    return str(count)


def details(facts_: Facts, quant: str) -> Details:
    return Details(family=facts_.architecture, families=[facts_.architecture],
                   parameter_size=parameter_size(facts_.parameters), quantization_level=quant)


def ollama_capabilities(nexa_capabilities: list[str], facts_: Facts, model_type: ModelType) -> list[str]:
    """nexa's capabilities in Ollama's names, plus 'thinking' when the chat template can think."""
    found = [_CAPABILITY[c] for c in nexa_capabilities if c in _CAPABILITY]
    if model_type in (ModelType.llm, ModelType.vlm) and _THINKING.search(facts_.template):
        found.append("thinking")
    return found


def model_info(facts_: Facts) -> dict[str, Any]:
    arch = facts_.architecture
    info: dict[str, Any] = {"general.architecture": arch, "general.basename": facts_.basename,
                            "general.parameter_count": facts_.parameters}
    if facts_.context_length is not None:
        info[f"{arch}.context_length"] = facts_.context_length
    return info


def parameters_text(manifest: Manifest, num_ctx: int | None = None) -> str:
    """The model's sampling defaults, and the context it gets (`num_ctx`, as Ollama names it), as Ollama's
    PARAMETER lines ('temperature 0.7')."""
    values = {**manifest.sampling_defaults, **({"num_ctx": num_ctx} if num_ctx else {})}
    return "\n".join(f"{key} {value:g}" for key, value in sorted(values.items()))


def modelfile(manifest: Manifest, quant: str, facts_: Facts, num_ctx: int | None = None) -> str:
    """A Modelfile-like summary, for clients that show it; nexa does not read Modelfiles."""
    lines = [f"# nexa model {model_id(manifest, quant)} ({manifest.source})", f"FROM {model_id(manifest, quant)}"]
    if facts_.template:
        lines.append(f'TEMPLATE """{facts_.template}"""')
    if manifest.system_prompt:
        lines.append(f'SYSTEM """{manifest.system_prompt}"""')
    lines += [f"PARAMETER {line}" for line in parameters_text(manifest, num_ctx).splitlines()]
    return "\n".join(lines) + "\n"


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def digest(manifest: Manifest, quant: str) -> str:
    return manifest.quants[quant].files[0].sha256
