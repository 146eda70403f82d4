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
        translate = _assistant_turn if message.role == "assistant" else _user_turn
        messages.extend(translate(message, f"messages[{i}]"))
    return messages


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


def message_response(answer: dict[str, Any], model: str) -> MessageResponse:
    """The engine's chat completion as an Anthropic message named `model`."""
    choice = answer["choices"][0]
    message = choice["message"]
    message_id = new_message_id()
    content: list[ThinkingContent | TextContent | ToolUseContent] = []
    if message.get("reasoning_content"):
        content.append(ThinkingContent(thinking=message["reasoning_content"], signature=message_id))
    if message.get("content"):
        content.append(TextContent(text=message["content"]))
    for call in message.get("tool_calls") or []:
        name = call["function"]["name"]
        content.append(ToolUseContent(id=tool_use_id(call.get("id")), name=name,
                                      input=arguments_object(call["function"].get("arguments", ""), name)))
    return MessageResponse(
        id=message_id, model=model, content=content, stop_reason=_STOP_REASONS.get(choice.get("finish_reason"), "end_turn"),
        usage=message_usage(answer.get("usage") or {}),
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

    def __init__(self, model: str):
        self.model = model
        self.id = new_message_id()
        self._index = -1
        self._open: str | None = None  # "thinking", "text" or "tool:<openai call index>"
        self._stop_reason: StopReason | None = None
        self._usage: dict[str, Any] = {}

    def start(self) -> list[Event]:
        message = MessageResponse(id=self.id, model=self.model, content=[], stop_reason=None,
                                  usage=MessageUsage(input_tokens=0, output_tokens=0))
        return [("message_start", {"type": "message_start", "message": message.model_dump()}), ("ping", {"type": "ping"})]

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                events += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                events.append(self._delta({"type": "thinking_delta", "thinking": delta["reasoning_content"]}))
            if delta.get("content"):
                events += self._open_block("text", {"type": "text", "text": ""})
                events.append(self._delta({"type": "text_delta", "text": delta["content"]}))
            for call in delta.get("tool_calls") or []:
                events += self._tool_call(call)
            if choice.get("finish_reason"):
                self._stop_reason = _STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return events

    def finish(self) -> list[Event]:
        usage = message_usage(self._usage).model_dump()
        delta = {"stop_reason": self._stop_reason or "end_turn", "stop_sequence": None}
        return [*self._close_block(), ("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}),
                ("message_stop", {"type": "message_stop"})]

    def fail(self, body: dict[str, Any]) -> list[Event]:
        """The `error` event that ends a stream which failed midway; `body` is in Anthropic's error shape."""
        return [("error", body)]

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
