"""Anthropic Messages ↔ OpenAI chat: a Messages request becomes the one internal chat request,
and the engine's OpenAI answer (or its stream of chunks) becomes Anthropic's message (or events).

Anthropic puts tool calls and results in content blocks; OpenAI in `tool_calls` and `tool`
messages. Thinking blocks map to `reasoning_content`. Images become `image_url` parts, so they
pass the same media policy as OpenAI's.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from nexa.compat.bodies import translated_chat
from nexa.compat.tools import arguments_object
from nexa.compat.translator import Translator
from nexa.errors import InvalidRequest
from nexa.wire.anthropic import (
    CountTokensRequest,
    ImageBlock,
    InputMessage,
    MessageResponse,
    MessagesRequest,
    MessageUsage,
    StopReason,
    TextBlock,
    TextContent,
    Thinking,
    ThinkingAdaptive,
    ThinkingBlock,
    ThinkingContent,
    ThinkingEnabled,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolResultBlock,
    ToolUseBlock,
    ToolUseContent,
)
from nexa.wire.openai import (
    ChatCompletionRequest,
    ChatMessage,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageURL,
    JSONSchemaFormat,
    NamedFunction,
    NamedToolChoice,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
)

_STOP_REASONS: dict[str | None, StopReason] = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
Event = tuple[str, dict[str, Any]]
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"

# ---------------------------------------------------------------- request: Anthropic → OpenAI


def chat_request(request: CountTokensRequest) -> ChatCompletionRequest:
    """The chat request `request` means; a count_tokens request gives one without sampling fields."""
    fields: dict[str, Any] = {"model": request.model, "messages": _messages(request)}
    if request.tools:
        fields["tools"] = [
            Tool(function=FunctionDefinition(name=t.name, description=t.description, parameters=t.input_schema))
            for t in request.tools
        ]
    fields.update(_tool_choice(request))
    fields["enable_think"] = _enable_think(request.thinking)
    if isinstance(request, MessagesRequest):
        fields.update(
            max_tokens=request.max_tokens, stop=request.stop_sequences, temperature=request.temperature,
            top_p=request.top_p, top_k=request.top_k, keep_alive=request.keep_alive,
        )
        output = request.output_config
        if output is not None and output.format is not None:
            fields["response_format"] = ResponseFormat(
                type="json_schema", json_schema=JSONSchemaFormat(schema=output.format.schema_)
            )
    return translated_chat(fields)


def _enable_think(thinking: Thinking | None) -> bool | None:
    """Absent means disabled, as in Anthropic's API; adaptive leaves it to the model's default."""
    if isinstance(thinking, ThinkingAdaptive):
        return None
    return isinstance(thinking, ThinkingEnabled)


def _tool_choice(request: CountTokensRequest) -> dict[str, Any]:
    choice = request.tool_choice
    if choice is None:
        return {}
    if isinstance(choice, ToolChoiceNone):
        return {"tool_choice": "none"}
    fields: dict[str, Any] = {}
    if choice.disable_parallel_tool_use is not None:
        fields["parallel_tool_calls"] = not choice.disable_parallel_tool_use
    if isinstance(choice, ToolChoiceAuto):
        fields["tool_choice"] = "auto"
    elif isinstance(choice, ToolChoiceAny):
        fields["tool_choice"] = "required"
    else:
        fields["tool_choice"] = NamedToolChoice(function=NamedFunction(name=choice.name))
    return fields


# Claude Code's first system block, e.g. "x-anthropic-billing-header: cc_version=2.1.328.f86; cc_entrypoint=sdk-cli;":
# metadata for Anthropic's billing, not an instruction. Its suffix changes with each conversation, so left in the
# prompt it would make every session's prompt differ from its first line on, and no prefix could be reused.
BILLING_HEADER = "x-anthropic-billing-header:"


def _system(system: str | list[Any] | None) -> str | None:
    """The system prompt the model sees: the blocks' texts, less the client's billing metadata."""
    if isinstance(system, list):
        return "\n\n".join(block.text for block in system if not block.text.lstrip().startswith(BILLING_HEADER))
    if system and system.lstrip().startswith(BILLING_HEADER):
        return system.lstrip().partition("\n")[2].lstrip("\n")
    return system


def _messages(request: CountTokensRequest) -> list[ChatMessage]:
    system = _system(request.system)
    messages = [ChatMessage(role="system", content=system)] if system else []
    for i, message in enumerate(request.messages):
        translate = {"assistant": _assistant_turn, "system": _system_turn}.get(message.role, _user_turn)
        messages.extend(translate(message, f"messages[{i}]"))
    return messages


def _system_turn(message: InputMessage, where: str) -> list[ChatMessage]:
    """A system message inside the conversation (Claude Code's environment notes), kept at its place."""
    if isinstance(message.content, str):
        return [ChatMessage(role="system", content=message.content)]
    texts = []
    for j, block in enumerate(message.content):
        if not isinstance(block, TextBlock):
            raise _misplaced(block, f"{where}.content[{j}]", "system")
        texts.append(block.text)
    return [ChatMessage(role="system", content="\n\n".join(texts))]


def _misplaced(block: Any, where: str, role: str) -> InvalidRequest:
    return InvalidRequest(f"{where} is a '{block.type}' block, which a {role} message cannot carry; "
                          "tool_use and thinking blocks belong to assistant turns, tool_result and image blocks "
                          "to user turns", param=where)


def _image_part(block: ImageBlock) -> ImagePart:
    source = block.source
    url = source.url if source.type == "url" else f"data:{source.media_type};base64,{source.data}"
    return ImagePart(type="image_url", image_url=ImageURL(url=url))


def _user_turn(message: InputMessage, where: str) -> list[ChatMessage]:
    """Tool results first, as `tool` messages (Anthropic puts them first too), then the rest as one user message."""
    if isinstance(message.content, str):
        return [ChatMessage(role="user", content=message.content)]
    results: list[ChatMessage] = []
    parts: list[TextPart | ImagePart] = []
    for j, block in enumerate(message.content):
        if isinstance(block, TextBlock):
            parts.append(TextPart(type="text", text=block.text))
        elif isinstance(block, ImageBlock):
            parts.append(_image_part(block))
        elif isinstance(block, ToolResultBlock):
            results.append(_tool_result(block, f"{where}.content[{j}]"))
        else:
            raise _misplaced(block, f"{where}.content[{j}]", "user")
    return results + ([ChatMessage(role="user", content=parts)] if parts else [])


def _tool_result(block: ToolResultBlock, where: str) -> ChatMessage:
    content = block.content
    if isinstance(content, list):
        images = [k for k, part in enumerate(content) if isinstance(part, ImageBlock)]
        if images:
            raise InvalidRequest(f"{where}.content[{images[0]}] is an image inside a tool_result, which nexa does not "
                                 "support; send the image as an image block of the user turn", param=f"{where}.content")
        content = "\n".join(part.text for part in content if isinstance(part, TextBlock))
    text = content or ""
    return ChatMessage(role="tool", tool_call_id=block.tool_use_id, content=f"Error: {text}" if block.is_error else text)


def _assistant_turn(message: InputMessage, where: str) -> list[ChatMessage]:
    """Text, tool calls and reasoning of one assistant turn; redacted thinking has nothing to pass on."""
    if isinstance(message.content, str):
        return [ChatMessage(role="assistant", content=message.content)]
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    for j, block in enumerate(message.content):
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ThinkingBlock):
            thoughts.append(block.thinking)
        elif isinstance(block, ToolUseBlock):
            calls.append(ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=json.dumps(block.input))))
        elif block.type != "redacted_thinking":
            raise _misplaced(block, f"{where}.content[{j}]", "assistant")
    return [ChatMessage(
        role="assistant", content="".join(texts) if texts or not calls else None,
        tool_calls=calls or None, reasoning_content="\n".join(thoughts) or None,
    )]


# ---------------------------------------------------------------- answer: OpenAI → Anthropic


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


def tool_use_id(call_id: str | None) -> str:
    """Anthropic's `toolu_` form of the engine's call id; ids that come back in history are kept as they are."""
    return "toolu_" + (call_id or uuid.uuid4().hex[:24]).removeprefix("call_")


def shows_thinking(request: CountTokensRequest) -> bool:
    """Whether the client asked for thinking (enabled or adaptive); otherwise none reaches it."""
    return _enable_think(request.thinking) is not False


def stop_sequence(payload: dict[str, Any]) -> str | None:
    """The stop sequence that ended the generation: the engine names it in `__verbose` when asked."""
    verbose = payload.get("__verbose") or {}
    word = verbose.get("stopping_word")
    return word if verbose.get("stop_type") == "word" and word else None


def without_thinking(text: str) -> str:
    """`text` less a leading <think>...</think> block, which a model may write even when thinking is off
    (the engine then leaves it in the content)."""
    stripped = text.lstrip()
    if not stripped.startswith(_THINK_OPEN):
        return text
    _, closed, rest = stripped.partition(_THINK_CLOSE)
    return rest.lstrip() if closed else ""


class ThinkingFilter:
    """The streamed form of `without_thinking`: text is held while it may still open a <think> block,
    dropped inside one (keeping only what may be the start of </think>), and passed through once the
    answer proper has begun."""

    def __init__(self) -> None:
        self._held = ""
        self._state = "start"  # start, thinking, after (the block closed), answer

    def feed(self, text: str) -> str:
        if self._state == "answer":
            return text
        self._held += text
        if self._state == "start":
            stripped = self._held.lstrip()
            if _THINK_OPEN.startswith(stripped):
                return ""  # still undecided: empty, whitespace, or a prefix of <think>
            if not stripped.startswith(_THINK_OPEN):
                self._state, held, self._held = "answer", self._held, ""
                return held
            self._state = "thinking"
        if self._state == "thinking":
            _, closed, rest = self._held.partition(_THINK_CLOSE)
            if not closed:
                self._held = self._held[-(len(_THINK_CLOSE) - 1):]
                return ""
            self._state, self._held = "after", rest
        answer, self._held = self._held.lstrip(), ""
        if answer:
            self._state = "answer"
        return answer

    def rest(self) -> str:
        """What is still held at the end: an answer that was only a prefix of <think>."""
        return self._held if self._state == "start" else ""


def message_response(answer: dict[str, Any], model: str, thinking: bool = True) -> MessageResponse:
    """The engine's chat completion as an Anthropic message named `model`; without `thinking` (the client
    did not ask for it), no thinking, parsed or raw, is in it."""
    choice = answer["choices"][0]
    message = choice["message"]
    message_id = new_message_id()
    content: list[ThinkingContent | TextContent | ToolUseContent] = []
    if message.get("reasoning_content") and thinking:
        content.append(ThinkingContent(thinking=message["reasoning_content"], signature=message_id))
    text = message.get("content") or ""
    if text and not thinking:
        text = without_thinking(text)
    if text:
        content.append(TextContent(text=text))
    for call in message.get("tool_calls") or []:
        name = call["function"]["name"]
        content.append(ToolUseContent(id=tool_use_id(call.get("id")), name=name,
                                      input=arguments_object(call["function"].get("arguments", ""), name)))
    usage = answer.get("usage") or {}
    stopped_by = stop_sequence(answer)
    return MessageResponse(
        id=message_id, model=model, content=content, stop_sequence=stopped_by,
        stop_reason="stop_sequence" if stopped_by else _STOP_REASONS.get(choice.get("finish_reason"), "end_turn"),
        usage=message_usage(usage),
    )


def message_usage(usage: dict[str, Any]) -> MessageUsage:
    """OpenAI usage as Anthropic's: its input_tokens leave out what was read from the prompt cache."""
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return MessageUsage(input_tokens=int(usage.get("prompt_tokens", 0)) - cached,
                        output_tokens=int(usage.get("completion_tokens", 0)), cache_read_input_tokens=cached)


class MessageStream(Translator):
    """OpenAI chat chunks in, Anthropic stream events out, as (event name, data) pairs.

    One content block is open at a time: a thinking block, a text block, or one tool_use block
    per tool call. A block closes when output of another kind (or another call) begins."""

    def __init__(self, model: str, thinking: bool = True):
        self.model = model
        self.id = new_message_id()
        self._index = -1
        self._open: str | None = None  # "thinking", "text" or "tool:<openai call index>"
        self._stop_reason: StopReason | None = None
        self._stop_sequence: str | None = None
        self._usage: dict[str, Any] = {}
        self._thinking = thinking
        self._filter = None if thinking else ThinkingFilter()

    def start(self) -> list[Event]:
        message = MessageResponse(id=self.id, model=self.model, content=[], stop_reason=None,
                                  usage=MessageUsage(input_tokens=0, output_tokens=0))
        return [("message_start", {"type": "message_start", "message": message.model_dump()}), ("ping", {"type": "ping"})]

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        self._stop_sequence = stop_sequence(chunk) or self._stop_sequence
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content") and self._thinking:
                events += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                events.append(self._delta({"type": "thinking_delta", "thinking": delta["reasoning_content"]}))
            text = delta.get("content") or ""
            if text and self._filter is not None:
                text = self._filter.feed(text)
            events += self._text(text)
            for call in delta.get("tool_calls") or []:
                events += self._tool_call(call)
            if choice.get("finish_reason"):
                self._stop_reason = _STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return events

    def finish(self) -> list[Event]:
        events = self._text(self._filter.rest()) if self._filter is not None else []
        usage = message_usage(self._usage).model_dump()
        stop_reason = "stop_sequence" if self._stop_sequence else self._stop_reason or "end_turn"
        delta = {"stop_reason": stop_reason, "stop_sequence": self._stop_sequence}
        return [*events, *self._close_block(), ("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}),
                ("message_stop", {"type": "message_stop"})]

    def fail(self, body: dict[str, Any]) -> list[Event]:
        """The `error` event that ends a stream which failed midway; `body` is in Anthropic's error shape."""
        return [("error", body)]

    def _text(self, text: str) -> list[Event]:
        if not text:
            return []
        return [*self._open_block("text", {"type": "text", "text": ""}), self._delta({"type": "text_delta", "text": text})]

    def _tool_call(self, call: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        function = call.get("function") or {}
        key = f"tool:{call.get('index', 0)}"
        if self._open != key:
            block = {"type": "tool_use", "id": tool_use_id(call.get("id")), "name": function.get("name") or "", "input": {}}
            events += self._open_block(key, block)
        if function.get("arguments"):
            events.append(self._delta({"type": "input_json_delta", "partial_json": function["arguments"]}))
        return events

    def _open_block(self, kind: str, block: dict[str, Any]) -> list[Event]:
        if self._open == kind:
            return []
        events = self._close_block()
        self._index += 1
        self._open = kind
        events.append(("content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block}))
        return events

    def _close_block(self) -> list[Event]:
        if self._open is None:
            return []
        events = [self._delta({"type": "signature_delta", "signature": self.id})] if self._open == "thinking" else []
        self._open = None
        return [*events, ("content_block_stop", {"type": "content_block_stop", "index": self._index})]

    def _delta(self, delta: dict[str, Any]) -> Event:
        return ("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})
