"""What `nexa infer` and `nexa run` do once a server is there: embed, rerank, answer prompts, or chat."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nexa.cli.client import Listen, NexaClient, Sampling
from nexa.cli.common import console
from nexa.cli.conversation import Conversation
from nexa.cli.repl import Repl, print_tool_calls
from nexa.errors import NexaError

HEAD = 8  # numbers of an embedding shown


@dataclass
class Talk:
    """What to ask and how; the same flags for both commands."""

    prompts: list[str]
    system: str | None
    sampling: Sampling
    raw_json: bool
    hide_think: bool
    tools: list[dict] | None
    query: str | None
    documents: list[str] = field(default_factory=list)
    listen: Listen | None = None

    @classmethod
    def from_flags(
        cls, prompt: list[str] | None, system: str | None, temperature: float | None, top_p: float | None,
        top_k: int | None, max_tokens: int | None, seed: int | None, raw_json: bool, hide_think: bool,
        tools: Path | None, query: str | None, document: list[str] | None,
    ) -> Talk:
        return cls(
            prompts=list(prompt or []), system=system,
            sampling=Sampling(temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens, seed=seed),
            raw_json=raw_json, hide_think=hide_think, tools=_read_tools(tools) if tools else None,
            query=query, documents=list(document or []),
        )


def _read_tools(path: Path) -> list[dict]:
    try:
        tools = json.loads(path.expanduser().read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NexaError(f"cannot read tools from {path}: {exc}; give a JSON list of tool definitions") from exc
    if not isinstance(tools, list):
        raise NexaError(f"{path} must hold a JSON list of tools: [{{\"type\": \"function\", \"function\": {{...}}}}]")
    return tools


def _piped_stdin() -> str | None:
    """The prompt from a pipe (`echo hi | nexa infer M`), or None on a terminal."""
    return None if sys.stdin.isatty() else sys.stdin.read()


def converse(base_url: str, api_key: str | None, name: str, options: Talk, history: Path) -> None:
    """Dispatch on the model's type: embed, rerank, answer the prompts, or open the REPL."""
    client = NexaClient(base_url, api_key)
    try:
        if options.listen is not None:
            return _transcribe(client, name, options.listen, options.sampling.temperature)
        kind = client.model_type(name)
        if kind == "embedder":
            return _embed(client, name, options)
        if kind == "reranker":
            return _rerank(client, name, options)
        conversation = Conversation(options.system, media=kind == "vlm")
        if not options.prompts and (piped := _piped_stdin()) is not None:
            options.prompts = [piped]
        if options.prompts:
            return _one_shot(client, name, conversation, options)
        Repl(client, name, conversation, options.sampling, console, history, not options.hide_think,
             options.tools).run()
    finally:
        client.close()


def _one_shot(client: NexaClient, name: str, conversation: Conversation, options: Talk) -> None:
    """Each prompt is a turn of one conversation; only answers are printed (reasoning is left out)."""
    for prompt in options.prompts:
        conversation.add_user(prompt)
        if options.raw_json:
            reply = client.chat(name, conversation.messages, options.sampling, options.tools)
            print(json.dumps(reply, ensure_ascii=False), flush=True)
            conversation.add({k: v for k, v in reply["choices"][0]["message"].items() if v is not None})
            continue
        stream = client.stream_chat(name, conversation.messages, options.sampling, options.tools)
        for delta in stream:
            if delta.kind == "content":
                sys.stdout.write(delta.text)
                sys.stdout.flush()
        print(flush=True)
        print_tool_calls(stream.answer, console)
        conversation.add(stream.answer.message())


def _transcribe(client: NexaClient, name: str, audio: Listen, temperature: float | None) -> None:
    if not audio.file.expanduser().is_file():
        raise NexaError(f"no recording at {audio.file}; give --file an audio file (WAV, MP3, FLAC, OGG, M4A)")
    for text in client.transcribe(name, audio, temperature):
        sys.stdout.write(text)
        sys.stdout.flush()


def _embed(client: NexaClient, name: str, options: Talk) -> None:
    texts = options.prompts or ([piped] if (piped := _piped_stdin()) else [])
    if not texts:
        raise NexaError(f"{name} is an embedder: give the text to embed, e.g. nexa infer {name} -p \"some text\"")
    reply = client.embed(name, texts)
    if options.raw_json:
        print(json.dumps(reply))
        return
    for item in reply["data"]:
        vector = item["embedding"]
        head = ", ".join(f"{x:.4f}" for x in vector[:HEAD])
        print(f"{len(vector)} dimensions: [{head}{', ...' if len(vector) > HEAD else ''}]")


def _rerank(client: NexaClient, name: str, options: Talk) -> None:
    if not options.query or not options.documents:
        raise NexaError(f"{name} is a reranker: give a query and documents, e.g. nexa infer {name} -q QUERY -d DOC -d DOC")
    reply = client.rerank(name, options.query, options.documents)
    if options.raw_json:
        print(json.dumps(reply))
        return
    for result in reply["results"]:
        print(f"{result['relevance_score']:8.4f}  {options.documents[result['index']]}")
