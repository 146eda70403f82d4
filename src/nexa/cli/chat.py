"""`nexa infer` and `nexa run`: talk to a model from the terminal, interactively or from a script.

`run` connects to a running server; `infer` starts one in-process (nexa.server.serving.LocalServer).
After that both are the same code (talk.py): one client, one REPL, one one-shot mode.
"""

from __future__ import annotations

import sys
from enum import Enum
from contextlib import redirect_stdout
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nexa.cli.common import DataDirOpt, err_console
from nexa.cli.remote import ApiKeyOpt, HostOpt, first_key, server_url
from nexa.config import load_settings
from nexa.errors import ModelNotFound
from nexa.store import ModelRef, Store

class TranscriptFormat(str, Enum):
    text = "text"
    srt = "srt"
    vtt = "vtt"
    json = "json"
    verbose_json = "verbose_json"


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
FileOpt = Annotated[
    Optional[Path], typer.Option("--file", "-f", help="Audio model: print the transcript of this recording.")
]
FormatOpt = Annotated[
    TranscriptFormat, typer.Option("--format", help="With --file: text (streamed), srt, vtt, json or verbose_json.")
]
TranslateOpt = Annotated[bool, typer.Option("--translate", help="With --file: translate the speech into English.")]
LanguageOpt = Annotated[Optional[str], typer.Option("--language", help="With --file: the speech's language (en, fr...).")]


def _listen(file: Path | None, fmt: TranscriptFormat, translate: bool, language: str | None) -> Any:
    """The --file request (a nexa.cli.client.Listen), or None to chat."""
    from nexa.cli.client import Listen  # on use: openai is slow to import

    return Listen(file, fmt.value, translate, language) if file is not None else None


def _ensure_pulled(name: str, datadir: Path) -> None:
    """Pull a missing model first, with the same questions as `nexa pull`."""
    try:
        Store(datadir).resolve(ModelRef.parse(name))
    except ModelNotFound:
        err_console.print(f"{name} is not pulled yet; pulling it first")
        from nexa.cli import pull as pull_command  # on use: huggingface_hub is slow to import

        with redirect_stdout(sys.stderr):  # stdout is for answers only, even the first time
            pull_command.pull(name, data_dir=datadir)


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
    file: FileOpt = None,
    response_format: FormatOpt = TranscriptFormat.text,
    translate: TranslateOpt = False,
    language: LanguageOpt = None,
    ctx: Annotated[Optional[int], typer.Option(envvar="NEXA_CTX", help="Context size in tokens, shared by the slots.", show_default="trained length, fitted to the memory budget")] = None,
    ngl: Annotated[
        Optional[int], typer.Option(envvar="NEXA_NGL", help="Layers offloaded to the GPU; -1 lets the engine decide.")
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Load a model here and chat with it; no server needed. Leaving stops the model.

    Without -p it opens a chat: /help lists its commands. Examples:
      nexa infer HuggingFaceTB/SmolLM2-135M-Instruct
      nexa infer HuggingFaceTB/SmolLM2-135M-Instruct -p "What is the capital of France?" --temperature 0
      git diff | nexa infer ggml-org/Qwen3-1.7B-GGUF -s "Write a commit message for this diff."
      nexa infer my-org/embedder -p "some text"
      nexa infer my-org/reranker -q "capital of France" -d "Paris is in France." -d "Berlin is in Germany."
      nexa infer ggml-org/Voxtral-Mini-3B-2507-GGUF --file talk.mp3 --format srt
    """
    from nexa.server.serving import LocalServer  # on use: openai, prompt_toolkit and the server stack
    from nexa.cli.talk import Talk, converse  # slow every other nexa command

    options = Talk.from_flags(prompt, system, temperature, top_p, top_k, max_tokens, seed, raw_json, hide_think,
                              tools, query, document)
    options.listen = _listen(file, response_format, translate, language)
    # One chat at a time, so one slot gets the whole context; the model stays loaded while the chat is open,
    # and models NEXA_PRELOAD names for `nexa serve` are not loaded here.
    settings = load_settings(
        host="127.0.0.1", port=0, parallel=1, keepalive=-1, preload=[], ctx=ctx, ngl=ngl, datadir=data_dir
    )
    _ensure_pulled(name, settings.datadir)
    with LocalServer(settings) as server:
        with err_console.status(f"loading {name}"):
            server.load(name)
        key = settings.api_keys[0].get_secret_value() if settings.api_keys else None  # NEXA_API_KEY guards it too
        converse(server.base_url, key, name, options, settings.datadir / "history")


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
    file: FileOpt = None,
    response_format: FormatOpt = TranscriptFormat.text,
    translate: TranslateOpt = False,
    language: LanguageOpt = None,
    host: HostOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Chat with a model served by a running `nexa serve`.

    Same chat and flags as `nexa infer`. Examples:
      nexa run HuggingFaceTB/SmolLM2-135M-Instruct
      nexa run HuggingFaceTB/SmolLM2-135M-Instruct --host 192.168.1.20:18181 -p "Hello"
    """
    from nexa.cli.talk import (  # on use: openai and prompt_toolkit slow every nexa command
        Talk,
        converse,
    )

    options = Talk.from_flags(prompt, system, temperature, top_p, top_k, max_tokens, seed, raw_json, hide_think,
                              tools, query, document)
    options.listen = _listen(file, response_format, translate, language)
    converse(server_url(host), first_key(api_key), name, options, load_settings().datadir / "history")


def register(app: typer.Typer) -> None:
    app.command()(infer)
    app.command()(run)
