"""The one HTTP client of `nexa infer` and `nexa run`: the official OpenAI client, pointed at a nexa server.

Both commands talk to a server (a running one, or one started in-process), so the REPL
and the one-shot mode exercise exactly the API every other client uses. OpenAI's
exceptions are translated here, once, into nexa's errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import openai

from nexa.errors import ModelNotFound, NexaError

# Sent when the server needs no key: the OpenAI client refuses an empty one.
NO_KEY = "nexa"


@dataclass(frozen=True)
class Listen:
    """`--file`: transcribe a recording (or translate its speech into English) instead of chatting."""

    file: Path
    response_format: str = "text"
    translate: bool = False
    language: str | None = None


@dataclass
class Sampling:
    """Sampling flags; None leaves the server's default."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    seed: int | None = None

    def request_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            key: value
            for key, value in (
                ("temperature", self.temperature), ("top_p", self.top_p),
                ("max_tokens", self.max_tokens), ("seed", self.seed),
            )
            if value is not None
        }
        if self.top_k is not None:  # not an OpenAI field: the client passes it through extra_body
            fields["extra_body"] = {"top_k": self.top_k}
        return fields


@dataclass
class Delta:
    """A piece of a streamed answer, as soon as it arrives."""

    kind: Literal["reasoning", "content"]
    text: str


@dataclass
class Answer:
    """What a streamed answer added up to, and how fast it came."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    first_token: float | None = None
    finished: float | None = None

    def message(self) -> dict[str, Any]:
        """The assistant message to keep in the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message

    def stats(self) -> str:
        """'42 tokens · 35.1 tok/s · first token 0.12 s', or '' when nothing came."""
        if self.first_token is None or self.finished is None:
            return ""
        ttft = self.first_token - self.started
        decode = self.finished - self.first_token
        speed = f"{self.tokens / decode:.1f} tok/s" if decode > 0 and self.tokens > 1 else "- tok/s"
        return f"{self.tokens} tokens · {speed} · first token {ttft:.2f} s"


class AnswerStream:
    """Iterate to get deltas; `answer` fills in as they come. Closing it stops the generation on the server."""

    def __init__(self, stream: openai.Stream, answer: Answer, translate: Callable[[], AbstractContextManager[None]]):
        self._stream = stream
        self._translate = translate
        self.answer = answer

    def __iter__(self) -> Iterator[Delta]:
        with self._translate():
            for chunk in self._stream:
                if chunk.usage is not None:
                    self.answer.tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    yield from self._take(choice.delta)
        self.answer.finished = time.monotonic()

    def _take(self, delta: Any) -> Iterator[Delta]:
        answer = self.answer
        reasoning = getattr(delta, "reasoning_content", None)  # a nexa field: the client keeps it as an extra
        if reasoning or delta.content or delta.tool_calls:
            answer.first_token = answer.first_token or time.monotonic()
            answer.tokens += 1  # llama.cpp sends a token per chunk; the final usage chunk corrects the count
        for call in delta.tool_calls or []:
            self._merge_tool_call(call)
        if reasoning:
            answer.reasoning += reasoning
            yield Delta("reasoning", reasoning)
        if delta.content:
            answer.content += delta.content
            yield Delta("content", delta.content)

    def _merge_tool_call(self, call: Any) -> None:
        """Tool calls stream as fragments keyed by index: name first, then pieces of the JSON arguments."""
        calls = self.answer.tool_calls
        while len(calls) <= call.index:
            calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        target = calls[call.index]
        target["id"] = call.id or target["id"]
        if call.function is not None:
            target["function"]["name"] += call.function.name or ""
            target["function"]["arguments"] += call.function.arguments or ""

    def close(self) -> None:
        self.answer.finished = self.answer.finished or time.monotonic()
        self._stream.close()


class NexaClient:
    """Chat, embeddings, reranking and model lookups against one nexa server."""

    def __init__(self, base_url: str, api_key: str | None = None):
        self.base_url = base_url.rstrip("/")
        # No retries: a retried generation would print twice. No read timeout: answers can be long.
        self._openai = openai.OpenAI(
            base_url=self.base_url + "/v1", api_key=api_key or NO_KEY, max_retries=0,
            timeout=openai.Timeout(None, connect=10.0),
        )

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except openai.APIConnectionError as exc:
            raise NexaError(
                f"cannot reach a nexa server at {self.base_url}; start one with: nexa serve "
                "(or point --host / NEXA_HOST at yours)"
            ) from exc
        except openai.APIStatusError as exc:
            error = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else {}
            message = error.get("message") if isinstance(error, dict) else None
            kind = ModelNotFound if exc.status_code == 404 else NexaError
            raise kind(message or f"the server answered {exc.status_code}: {exc.message}") from exc

    def model_type(self, name: str) -> str:
        """llm, vlm, embedder or reranker, as the server's model card says."""
        with self._translated():
            card = self._openai.get(f"/models/{name}", cast_to=object)
        return card.get("type", "llm") if isinstance(card, dict) else "llm"

    def stream_chat(
        self, model: str, messages: list[dict[str, Any]], sampling: Sampling, tools: list[dict] | None = None
    ) -> AnswerStream:
        answer = Answer()
        with self._translated():
            stream = self._openai.chat.completions.create(
                model=model, messages=messages, stream=True, stream_options={"include_usage": True},
                **({"tools": tools} if tools else {}), **sampling.request_fields(),
            )
        return AnswerStream(stream, answer, self._translated)

    def chat(
        self, model: str, messages: list[dict[str, Any]], sampling: Sampling, tools: list[dict] | None = None
    ) -> dict[str, Any]:
        """The raw, non-streamed response, for --json."""
        with self._translated():
            reply = self._openai.chat.completions.create(
                model=model, messages=messages, **({"tools": tools} if tools else {}), **sampling.request_fields()
            )
        return reply.model_dump(exclude_unset=True)

    def embed(self, model: str, texts: list[str]) -> dict[str, Any]:
        with self._translated():
            return self._openai.embeddings.create(model=model, input=texts, encoding_format="float").model_dump(exclude_unset=True)

    def rerank(self, model: str, query: str, documents: list[str]) -> dict[str, Any]:
        """The Cohere/Jina shape: results [{index, relevance_score}], best first."""
        with self._translated():
            return self._openai.post(
                "/rerank", body={"model": model, "query": query, "documents": documents}, cast_to=object
            )

    def transcribe(self, model: str, audio: Listen, temperature: float | None) -> Iterator[str]:
        """The transcript (or English translation) of a recording: as it comes for the text format,
        else the whole answer in its format (JSON dumped)."""
        with audio.file.expanduser().open("rb") as file, self._translated():
            fields: dict[str, Any] = {"model": model, "file": file}
            if temperature is not None:
                fields["temperature"] = temperature
            if audio.translate:
                api: Any = self._openai.audio.translations
            else:
                api = self._openai.audio.transcriptions
                fields.update({"language": audio.language} if audio.language else {})
            if audio.response_format == "text":
                for event in api.create(**fields, stream=True):
                    if event.type == "transcript.text.delta":
                        yield event.delta
                yield "\n"
                return
            answer = api.create(**fields, response_format=audio.response_format)
        yield answer if isinstance(answer, str) else answer.model_dump_json(indent=2, exclude_unset=True) + "\n"

    def close(self) -> None:
        self._openai.close()
