"""`nexa infer` and `nexa run`: talk to a model from the terminal, interactively or from a script.

`run` connects to a running server; `infer` starts one in-process (see local_server).
After that both are the same code: one client, one REPL, one one-shot mode.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nexa.cli import pull as pull_command
from nexa.cli.client import NexaClient, Sampling
from nexa.cli.common import DataDirOpt, console, err_console
from nexa.cli.conversation import Conversation
from nexa.cli.local_server import LocalServer
from nexa.cli.repl import Repl, print_tool_calls
from nexa.config import Settings
from nexa.errors import ModelNotFound, NexaError
from nexa.store import ModelRef, Store

HEAD = 8  # numbers of an embedding shown

NameArg = Annotated[str, typer.Argument(help="Model: org/repo or org/repo:QUANT.")]
PromptOpt = Annotated[
    Optional[list[str]],
    typer.Option("--prompt", "-p", help="Ask this, print the answer and exit; repeat for several turns. "
                 "For an embedder: the text to embed."),
]
SystemOpt = Annotated[Optional[str], typer.Option("--system", "-s", help="System prompt.")]
TemperatureOpt = Annotated[Optional[float], typer.Option(help="Sampling temperature; 0 is deterministic.")]
TopPOpt = Annotated[Optional[float], typer.Option(help="Nucleus sampling: keep tokens up to this probability mass.")]
TopKOpt = Annotated[Optional[int], typer.Option(help="Sample among the K likeliest tokens.")]
MaxTokensOpt = Annotated[Optional[int], typer.Option(help="Stop an answer after this many tokens.")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Random seed, for repeatable answers.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the raw JSON response (one line per turn).")]
HideThinkOpt = Annotated[bool, typer.Option("--hide-think", help="Hide a reasoning model's thinking (/think toggles).")]
ToolsOpt = Annotated[
    Optional[Path], typer.Option("--tools", help="JSON file with a list of OpenAI tool definitions the model may call.")
]
QueryOpt = Annotated[Optional[str], typer.Option("--query", "-q", help="Reranker: the query.")]
DocumentOpt = Annotated[Optional[list[str]], typer.Option("--document", "-d", help="Reranker: a document; repeat.")]


@dataclass
class Talk:
    """What to ask and how, the same for both commands."""

    prompts: list[str]
    system: str | None
    sampling: Sampling
    raw_json: bool
    hide_think: bool
    tools: list[dict] | None
    query: str | None
    documents: list[str] = field(default_factory=list)


def _talk_options(
    prompt: list[str] | None, system: str | None, temperature: float | None, top_p: float | None,
    top_k: int | None, max_tokens: int | None, seed: int | None, raw_json: bool, hide_think: bool,
    tools: Path | None, query: str | None, document: list[str] | None,
) -> Talk:
    return Talk(
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


def talk(client: NexaClient, name: str, options: Talk, history: Path) -> None:
    """Dispatch on the model's type: embed, rerank, answer prompts, or open the REPL."""
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
    Repl(client, name, conversation, options.sampling, console, history, not options.hide_think, options.tools).run()


def _one_shot(client: NexaClient, name: str, conversation: Conversation, talk: Talk) -> None:
    """Each prompt is a turn of one conversation; only answers are printed (reasoning is left out)."""
    for prompt in talk.prompts:
        conversation.add_user(prompt)
        if talk.raw_json:
            reply = client.chat(name, conversation.messages, talk.sampling, talk.tools)
            print(json.dumps(reply, ensure_ascii=False), flush=True)
            conversation.add({k: v for k, v in reply["choices"][0]["message"].items() if v is not None})
            continue
        stream = client.stream_chat(name, conversation.messages, talk.sampling, talk.tools)
        for delta in stream:
            if delta.kind == "content":
                sys.stdout.write(delta.text)
                sys.stdout.flush()
        print(flush=True)
        print_tool_calls(stream.answer, console)
        conversation.add(stream.answer.message())


def _embed(client: NexaClient, name: str, talk: Talk) -> None:
    texts = talk.prompts or ([piped] if (piped := _piped_stdin()) else [])
    if not texts:
        raise NexaError(f"{name} is an embedder: give the text to embed, e.g. nexa infer {name} -p \"some text\"")
    reply = client.embed(name, texts)
    if talk.raw_json:
        print(json.dumps(reply))
        return
    for item in reply["data"]:
        vector = item["embedding"]
        head = ", ".join(f"{x:.4f}" for x in vector[:HEAD])
        print(f"{len(vector)} dimensions: [{head}{', ...' if len(vector) > HEAD else ''}]")


def _rerank(client: NexaClient, name: str, talk: Talk) -> None:
    if not talk.query or not talk.documents:
        raise NexaError(f"{name} is a reranker: give a query and documents, e.g. nexa infer {name} -q QUERY -d DOC -d DOC")
    reply = client.rerank(name, talk.query, talk.documents)
    if talk.raw_json:
        print(json.dumps(reply))
        return
    for result in reply["results"]:
        print(f"{result['relevance_score']:8.4f}  {talk.documents[result['index']]}")


def _ensure_pulled(name: str, datadir: Path) -> None:
    """Pull a missing model first, with the same questions as `nexa pull`."""
    try:
        Store(datadir).resolve(ModelRef.parse(name))
    except ModelNotFound:
        err_console.print(f"{name} is not pulled yet; pulling it first")
        pull_command.pull(name, data_dir=datadir)


def _first_key(keys: str | None) -> str | None:
    """NEXA_API_KEY may list several keys for the server (comma-separated); a client sends one."""
    return keys.split(",")[0].strip() if keys else None


def server_url(host: str | None) -> str:
    """The URL of the server to use: --host or NEXA_HOST (HOST or HOST:PORT, or a full http(s) URL)."""
    if host and host.startswith(("http://", "https://")):
        return host
    bind_host, port = (Settings(host=host) if host else Settings()).bind()
    if bind_host in ("", "0.0.0.0", "::"):  # listening everywhere: reach it on loopback
        bind_host = "127.0.0.1"
    return f"http://[{bind_host}]:{port}" if ":" in bind_host else f"http://{bind_host}:{port}"


def infer(
    name: NameArg,
    prompt: PromptOpt = None,
    system: SystemOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    top_k: TopKOpt = None,
    max_tokens: MaxTokensOpt = None,
    seed: SeedOpt = None,
    raw_json: JsonOpt = False,
    hide_think: HideThinkOpt = False,
    tools: ToolsOpt = None,
    query: QueryOpt = None,
    document: DocumentOpt = None,
    ctx: Annotated[Optional[int], typer.Option(help="Context size in tokens. [env: NEXA_CTX]")] = None,
    ngl: Annotated[Optional[int], typer.Option(help="Layers offloaded to the GPU; -1: auto. [env: NEXA_NGL]")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Load a model here and chat with it; no server needed. Leaving stops the model.

    Without -p it opens a chat: /help lists its commands. Examples:
      nexa infer HuggingFaceTB/SmolLM2-135M-Instruct
      nexa infer HuggingFaceTB/SmolLM2-135M-Instruct -p "What is the capital of France?" --temperature 0
      git diff | nexa infer ggml-org/Qwen3-1.7B-GGUF -s "Write a commit message for this diff."
      nexa infer my-org/embedder -p "some text"
      nexa infer my-org/reranker -q "capital of France" -d "Paris is in France." -d "Berlin is in Germany."
    """
    options = _talk_options(prompt, system, temperature, top_p, top_k, max_tokens, seed, raw_json, hide_think,
                            tools, query, document)
    flags = {"ctx": ctx, "ngl": ngl, "datadir": data_dir}
    # One chat at a time, so one slot gets the whole context; the model stays loaded while the chat is open.
    settings = Settings(
        host="127.0.0.1", port=0, parallel=1, keepalive=-1, **{k: v for k, v in flags.items() if v is not None}
    )
    _ensure_pulled(name, settings.datadir)
    with LocalServer(settings) as server:
        with err_console.status(f"loading {name}"):
            server.load(name)
        key = settings.api_keys[0].get_secret_value() if settings.api_keys else None  # NEXA_API_KEY guards it too
        client = NexaClient(server.base_url, key)
        try:
            talk(client, name, options, settings.datadir / "history")
        finally:
            client.close()


def run(
    name: NameArg,
    prompt: PromptOpt = None,
    system: SystemOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    top_k: TopKOpt = None,
    max_tokens: MaxTokensOpt = None,
    seed: SeedOpt = None,
    raw_json: JsonOpt = False,
    hide_think: HideThinkOpt = False,
    tools: ToolsOpt = None,
    query: QueryOpt = None,
    document: DocumentOpt = None,
    host: Annotated[
        Optional[str],
        typer.Option(help="Server: HOST, HOST:PORT or a URL. [env: NEXA_HOST]", show_default="127.0.0.1:18181"),
    ] = None,
    api_key: Annotated[Optional[str], typer.Option(envvar="NEXA_API_KEY", help="The server's API key, if it has one.")] = None,
) -> None:
    """Chat with a model served by a running `nexa serve`.

    Same chat and flags as `nexa infer`. Examples:
      nexa run HuggingFaceTB/SmolLM2-135M-Instruct
      nexa run HuggingFaceTB/SmolLM2-135M-Instruct --host 192.168.1.20:18181 -p "Hello"
    """
    options = _talk_options(prompt, system, temperature, top_p, top_k, max_tokens, seed, raw_json, hide_think,
                            tools, query, document)
    client = NexaClient(server_url(host), _first_key(api_key))
    try:
        talk(client, name, options, Settings().datadir / "history")
    finally:
        client.close()


def register(app: typer.Typer) -> None:
    app.command()(infer)
    app.command()(run)
