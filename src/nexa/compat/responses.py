"""OpenAI Responses ↔ OpenAI chat: a Responses request (plus the stored history that
previous_response_id names) becomes the one internal chat request, and the engine's chat answer
(or its stream of chunks) becomes a Response object (or Responses' stream events).

Responses keep a turn as a list of items: an assistant turn with thinking, text and tool calls is
a reasoning item, a message item and function_call items; chat keeps it as one assistant message.
Images become `image_url` parts, so they pass the same media policy as chat's.

Tools: a namespace's functions are offered as `<namespace>__<name>`, a custom tool as a function of
one string `input`; a call of either comes back in the Responses shape the client gave (a
function_call with its `namespace`, a custom_tool_call with its `input`). Hosted tools are left out.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from nexa.compat.bodies import translated_chat
from nexa.compat.translator import Translator
from nexa.errors import InvalidRequest
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
from nexa.wire.responses import (
    CustomTool,
    CustomToolCallItem,
    CustomToolCallOutputItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    FunctionToolChoice,
    HostedTool,
    HostedToolChoice,
    IncompleteDetails,
    InputImage,
    InputItem,
    InputMessage,
    InputTokensDetails,
    NamespaceTool,
    OutputItem,
    OutputMessage,
    OutputText,
    OutputTokensDetails,
    ReasoningItem,
    ReasoningText,
    Refusal,
    Response,
    ResponseError,
    ResponsesRequest,
    ResponseUsage,
    TextConfig,
    TextFormatJSONObject,
    TextFormatJSONSchema,
)

Event = dict[str, Any]
ItemStatus = Literal["completed", "incomplete"]
CallItem = FunctionCallItem | CustomToolCallItem
NAMESPACE_SEPARATOR = "__"
_CUSTOM_INPUT = "input"

# ---------------------------------------------------------------- tools


class ToolNames:
    """How the client's tools are named to the model, and back: `namespace__name` for a namespace's
    functions, the plain name otherwise; which names are custom (freeform) tools."""

    def __init__(self, tools: list[Any]):
        self._namespaced: dict[str, tuple[str, str]] = {}
        self.custom: set[str] = set()
        for tool in tools:
            if isinstance(tool, NamespaceTool):
                for function in tool.tools:
                    self._namespaced[namespaced(tool.name, function.name)] = (tool.name, function.name)
            elif isinstance(tool, CustomTool):
                self.custom.add(tool.name)

    def call_item(self, call_id: str, model_name: str, arguments: str, status: ItemStatus | Literal["in_progress"],
                  item_id: str) -> CallItem:
        """The output item of the model's call of `model_name`, in the shape of the tool it calls."""
        if model_name in self.custom:
            return CustomToolCallItem(id=item_id, call_id=call_id, name=model_name, input=custom_input(arguments),
                                      status=status)
        namespace, name = self._namespaced.get(model_name, (None, model_name))
        return FunctionCallItem(id=item_id, call_id=call_id, name=name, namespace=namespace, arguments=arguments or "{}",
                                status=status)


def namespaced(namespace: str, name: str) -> str:
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}"


def custom_input(arguments: str) -> str:
    """A custom tool's input from the JSON arguments the engine produced (`{"input": "..."}`)."""
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get(_CUSTOM_INPUT), str):
        return value[_CUSTOM_INPUT]
    return arguments


def hosted_tools(request: ResponsesRequest) -> list[str]:
    """The hosted tools `request` offers, which nexa leaves out of the prompt (the route logs them)."""
    return [tool.type for tool in request.tools or [] if isinstance(tool, HostedTool)]


def _chat_tools(tools: list[Any]) -> list[Tool]:
    chat: list[Tool] = []
    for tool in tools:
        if isinstance(tool, FunctionTool):
            chat.append(_function(tool.name, tool))
        elif isinstance(tool, NamespaceTool):
            chat += [_function(namespaced(tool.name, function.name), function) for function in tool.tools]
        elif isinstance(tool, CustomTool):
            about = (tool.format or {}).get("definition")
            parameters = {"type": "object", "required": [_CUSTOM_INPUT], "properties": {_CUSTOM_INPUT: {
                "type": "string", **({"description": f"Follows this grammar:\n{about}"} if about else {})}}}
            chat.append(Tool(function=FunctionDefinition(name=tool.name, description=tool.description,
                                                         parameters=parameters)))
    return chat


def _function(name: str, tool: FunctionTool) -> Tool:
    return Tool(function=FunctionDefinition(name=name, description=tool.description, parameters=tool.parameters,
                                            strict=tool.strict))


# ---------------------------------------------------------------- request: Responses → chat


def input_items(request: ResponsesRequest) -> list[InputItem]:
    """The request's own input as items: a plain string is one user message."""
    if isinstance(request.input, str):
        return [InputMessage(role="user", content=request.input)]
    return list(request.input)


def chat_request(request: ResponsesRequest, history: list[InputItem]) -> ChatCompletionRequest:
    """The chat request that `request`, continuing `history` (a stored conversation), means."""
    if request.background:
        raise InvalidRequest("background responses are not supported; leave 'background' unset or false",
                             param="background")
    messages = [ChatMessage(role="system", content=request.instructions)] if request.instructions else []
    messages += _messages(history, "previous_response_id") + _messages(input_items(request), "input")
    fields: dict[str, Any] = {
        "model": request.model, "messages": messages, "max_tokens": request.max_output_tokens,
        "temperature": request.temperature, "top_p": request.top_p, "user": request.user,
        "parallel_tool_calls": request.parallel_tool_calls, "keep_alive": request.keep_alive,
    }
    tools = _chat_tools(request.tools or [])
    if tools:
        fields["tools"] = tools
    choice = request.tool_choice
    if isinstance(choice, HostedToolChoice):
        raise InvalidRequest(f"tool_choice forces the hosted tool '{choice.type}', which runs on OpenAI's servers and "
                             "not on a local one; offer a function tool instead, or leave tool_choice 'auto'",
                             param="tool_choice")
    fields["tool_choice"] = NamedToolChoice(function=NamedFunction(name=choice.name)) if isinstance(
        choice, FunctionToolChoice) else choice
    fields["response_format"] = _response_format(request.text)
    if request.reasoning is not None and request.reasoning.effort == "none":
        fields["enable_think"] = False
    return translated_chat(fields)


def _response_format(text: TextConfig | None) -> ResponseFormat | None:
    form = text.format if text is not None else None
    if isinstance(form, TextFormatJSONSchema):
        return ResponseFormat(type="json_schema", json_schema=JSONSchemaFormat(
            name=form.name, description=form.description, schema=form.schema_, strict=form.strict))
    if isinstance(form, TextFormatJSONObject):
        return ResponseFormat(type="json_object")
    return None


class _AssistantTurn:
    """Consecutive reasoning, assistant message and function_call items: one chat assistant message."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.thoughts: list[str] = []
        self.calls: list[ToolCall] = []

    def __bool__(self) -> bool:
        return bool(self.text or self.thoughts or self.calls)

    def message(self) -> ChatMessage:
        return ChatMessage(role="assistant", content="".join(self.text) if self.text or not self.calls else None,
                           tool_calls=self.calls or None, reasoning_content="\n".join(self.thoughts) or None)


def _messages(items: list[InputItem], where: str) -> list[ChatMessage]:
    messages: list[ChatMessage] = []
    turn = _AssistantTurn()

    def flush() -> None:
        nonlocal turn
        if turn:
            messages.append(turn.message())
            turn = _AssistantTurn()

    for i, item in enumerate(items):
        if isinstance(item, ReasoningItem):
            if turn:  # thinking starts a new turn
                flush()
            turn.thoughts += [part.text for part in item.content or item.summary]
        elif isinstance(item, FunctionCallItem):
            name = namespaced(item.namespace, item.name) if item.namespace else item.name
            turn.calls.append(ToolCall(id=item.call_id, function=FunctionCall(name=name, arguments=item.arguments)))
        elif isinstance(item, CustomToolCallItem):
            arguments = json.dumps({_CUSTOM_INPUT: item.input}, ensure_ascii=False)
            turn.calls.append(ToolCall(id=item.call_id, function=FunctionCall(name=item.name, arguments=arguments)))
        elif isinstance(item, InputMessage) and item.role == "assistant":
            if turn.text or turn.calls:
                flush()
            turn.text.append(_text(item.content))
        else:
            flush()
            if isinstance(item, FunctionCallOutputItem | CustomToolCallOutputItem):
                messages.append(ChatMessage(role="tool", tool_call_id=item.call_id, content=_text(item.output)))
            else:
                messages.append(ChatMessage(role=item.role, content=_parts(item, f"{where}[{i}].content")))
    flush()
    return messages


def _text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.refusal if isinstance(part, Refusal) else getattr(part, "text", "") for part in content)


def _parts(message: InputMessage, where: str) -> str | list[TextPart | ImagePart]:
    if isinstance(message.content, str):
        return message.content
    parts: list[TextPart | ImagePart] = []
    for j, part in enumerate(message.content):
        if isinstance(part, InputImage):
            if not part.image_url:
                raise InvalidRequest(f"{where}[{j}] has no image_url; nexa has no Files API, so send the image as "
                                     "image_url (a data: URI, an http(s) URL or a path on the server)",
                                     param=f"{where}[{j}].image_url")
            parts.append(ImagePart(type="image_url", image_url=ImageURL(url=part.image_url)))
        else:
            parts.append(TextPart(type="text", text=_text([part])))
    return parts


# ---------------------------------------------------------------- answer: chat → Responses


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def new_response(request: ResponsesRequest) -> Response:
    """The response being made for `request`, still without output: the echo of what was asked."""
    return Response(
        id=_new_id("resp"), created_at=int(time.time()), status="in_progress", model=request.model,
        instructions=request.instructions, previous_response_id=request.previous_response_id, store=request.store,
        parallel_tool_calls=request.parallel_tool_calls is not False, tool_choice=request.tool_choice or "auto",
        tools=request.tools or [], text=request.text or TextConfig(), reasoning=request.reasoning,
        max_output_tokens=request.max_output_tokens, temperature=request.temperature, top_p=request.top_p,
        metadata=request.metadata or {}, user=request.user,
    )


def _finished(draft: Response, output: list[OutputItem], finish_reason: str | None, usage: dict[str, Any]) -> Response:
    cut = finish_reason == "length"
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return draft.model_copy(update={
        "status": "incomplete" if cut else "completed", "output": output, "completed_at": int(time.time()),
        "incomplete_details": IncompleteDetails(reason="max_output_tokens") if cut else None,
        "usage": ResponseUsage(
            input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion,
            input_tokens_details=InputTokensDetails(cached_tokens=cached), output_tokens_details=OutputTokensDetails(),
        ),
    })


def _item_status(finish_reason: str | None) -> ItemStatus:
    return "incomplete" if finish_reason == "length" else "completed"


def finished_response(draft: Response, answer: dict[str, Any]) -> Response:
    """`draft` completed with the engine's (non-streamed) chat completion."""
    choice = answer["choices"][0]
    message = choice.get("message") or {}
    status = _item_status(choice.get("finish_reason"))
    output: list[OutputItem] = []
    if message.get("reasoning_content"):
        output.append(ReasoningItem(id=_new_id("rs"), content=[ReasoningText(text=message["reasoning_content"])],
                                    status=status))
    calls = message.get("tool_calls") or []
    if message.get("content") or not calls:
        output.append(OutputMessage(id=_new_id("msg"), status=status, content=[OutputText(text=message.get("content") or "")]))
    names = ToolNames(draft.tools)
    for call in calls:
        function = call.get("function") or {}
        output.append(names.call_item(call.get("id") or _new_id("call"), function.get("name", ""),
                                      function.get("arguments") or "{}", "completed", _new_id("fc")))
    return _finished(draft, output, choice.get("finish_reason"), answer.get("usage") or {})


def as_input(output: list[OutputItem]) -> list[InputItem]:
    """A response's output as the input items that continue it (what previous_response_id prepends)."""
    return [
        InputMessage(role="assistant", content=list(item.content), id=item.id, status=item.status)
        if isinstance(item, OutputMessage) else item
        for item in output
    ]


def dump(response: Response) -> dict[str, Any]:
    """The wire form: JSON-schema formats keep their `schema` key."""
    return response.model_dump(mode="json", by_alias=True)


class ResponseStream(Translator):
    """OpenAI chat chunks in, Responses stream events out, each with its `sequence_number`.

    One output item is open at a time: reasoning, a message, or one function_call per tool call.
    An item closes when output of another kind (or another call) begins, or at the end."""

    def __init__(self, draft: Response):
        self.response = draft
        self._sequence = 0
        self._output: list[OutputItem] = []
        self._key: str | None = None  # "reasoning", "text" or "tool:<chat call index>"
        self._pieces: list[str] = []
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] = {}
        self._names = ToolNames(draft.tools)

    def start(self) -> list[Event]:
        return [self._lifecycle("response.created"), self._lifecycle("response.in_progress")]

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                if self._key != "reasoning":
                    events += self._open("reasoning", ReasoningItem(id=_new_id("rs"), content=[], status="in_progress"),
                                         ReasoningText(text=""))
                events.append(self._piece("response.reasoning_text.delta", delta["reasoning_content"], content_index=0))
            if delta.get("content"):
                if self._key != "text":
                    events += self._open("text", OutputMessage(id=_new_id("msg"), status="in_progress"), OutputText(text=""))
                events.append(self._piece("response.output_text.delta", delta["content"], content_index=0, logprobs=[]))
            for call in delta.get("tool_calls") or []:
                function = call.get("function") or {}
                key = f"tool:{call.get('index', 0)}"
                if self._key != key:
                    item = self._names.call_item(call.get("id") or _new_id("call"), function.get("name") or "", "",
                                                 "in_progress", _new_id("fc"))
                    events += self._open(key, item, None)
                if function.get("arguments"):
                    if isinstance(self._output[-1], CustomToolCallItem):  # its input is whole only at the end
                        self._pieces.append(function["arguments"])
                    else:
                        events.append(self._piece("response.function_call_arguments.delta", function["arguments"]))
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> list[Event]:
        """The events that end a finished stream; `response` is then the finished response."""
        events = self._close(_item_status(self._finish_reason))
        if not self._output:  # the model said nothing: still one (empty) message, as non-streamed
            events += self._open("text", OutputMessage(id=_new_id("msg"), status="in_progress"), OutputText(text=""))
            events += self._close(_item_status(self._finish_reason))
        self.response = _finished(self.response, self._output, self._finish_reason, self._usage)
        name = "response.completed" if self.response.status == "completed" else "response.incomplete"
        return [*events, self._lifecycle(name)]

    def error(self, message: str, code: str | None) -> list[Event]:
        """The events that end a stream which failed midway (the worker died, the engine failed)."""
        self.response = self.response.model_copy(update={
            "status": "failed", "output": self._output, "error": ResponseError(code="server_error", message=message)})
        return [self._event("error", code=code, message=message, param=None), self._lifecycle("response.failed")]

    def fail(self, body: dict[str, Any]) -> list[Event]:
        """`error` for a stream's error body (OpenAI's shape)."""
        return self.error(body["error"]["message"], body["error"].get("code"))

    # -- items

    def _open(self, key: str, item: OutputItem, part: OutputText | ReasoningText | None) -> list[Event]:
        events = self._close("completed")
        self._key, self._pieces = key, []
        self._output.append(item)
        events.append(self._event("response.output_item.added", output_index=len(self._output) - 1,
                                  item=item.model_dump(mode="json")))
        if part is not None:
            events.append(self._event("response.content_part.added", item_id=item.id, output_index=len(self._output) - 1,
                                      content_index=0, part=part.model_dump(mode="json")))
        return events

    def _close(self, status: ItemStatus) -> list[Event]:
        if self._key is None:
            return []
        index, item, text = len(self._output) - 1, self._output[-1], "".join(self._pieces)
        where = {"item_id": item.id, "output_index": index}
        events: list[Event] = []
        if isinstance(item, FunctionCallItem):
            item = item.model_copy(update={"arguments": text or "{}", "status": "completed"})
            events.append(self._event("response.function_call_arguments.done", **where, name=item.name,
                                      arguments=item.arguments))
        elif isinstance(item, CustomToolCallItem):
            item = item.model_copy(update={"input": custom_input(text), "status": "completed"})
            events.append(self._event("response.custom_tool_call_input.delta", **where, delta=item.input))
            events.append(self._event("response.custom_tool_call_input.done", **where, input=item.input))
        else:
            if isinstance(item, ReasoningItem):
                part: OutputText | ReasoningText = ReasoningText(text=text)
                item = item.model_copy(update={"content": [part], "status": status})
                events.append(self._event("response.reasoning_text.done", **where, content_index=0, text=text))
            else:
                part = OutputText(text=text)
                item = item.model_copy(update={"content": [part], "status": status})
                events.append(self._event("response.output_text.done", **where, content_index=0, text=text, logprobs=[]))
            events.append(self._event("response.content_part.done", **where, content_index=0,
                                      part=part.model_dump(mode="json")))
        self._output[-1] = item
        self._key = None
        events.append(self._event("response.output_item.done", output_index=index, item=item.model_dump(mode="json")))
        return events

    # -- events

    def _piece(self, type_: str, delta: str, **fields: Any) -> Event:
        self._pieces.append(delta)
        return self._event(type_, item_id=self._output[-1].id, output_index=len(self._output) - 1, delta=delta, **fields)

    def _lifecycle(self, type_: str) -> Event:
        return self._event(type_, response=dump(self.response))

    def _event(self, type_: str, **fields: Any) -> Event:
        event = {"type": type_, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event
