"""`nexa launch AGENT [MODEL] [-- AGENT ARGS]`: run a coding agent (Claude Code, Codex, OpenCode) on
a nexa server, configured in its own conventions (nexa.cli.agents), starting the server if none runs."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional
from urllib.parse import quote, urlsplit

import click
import httpx
import typer
from typer.core import TyperCommand
from rich.markup import escape

from nexa.cli.agents import AGENTS, MIN_CONTEXT, Target, launch as agent_launch
from nexa.cli.common import err_console
from nexa.cli.remote import ApiKeyOpt, HostOpt, first_key, server_url
from nexa.config import load_settings
from nexa.errors import NexaError

# Seconds a server started here may take to answer /health.
START_TIMEOUT = 60.0


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _running(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _start_server(url: str) -> None:
    """`nexa serve` on the address `url` names, in the background and its own session, so it outlives
    the agent (and the next `nexa launch` finds it); its output goes to a log in the data folder."""
    parts = urlsplit(url)
    log_path = Path(load_settings().datadir) / "launch-serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "nexa", "serve", "--host", parts.hostname or "127.0.0.1", "--port", str(parts.port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not _running(url):
        if process.poll() is not None or time.monotonic() > deadline:
            raise NexaError(f"nexa serve did not start at {url}; see {log_path}")
        time.sleep(0.25)
    err_console.print(f"[dim]started nexa serve at {url} (pid {process.pid}; log {log_path}); it keeps running[/]")


def _card(url: str, key: str | None, model: str | None) -> dict[str, Any]:
    """The model's card from /v1/models: the one named, or the first pulled chat model with tools."""
    if model:
        response = httpx.get(f"{url}/v1/models/{quote(model, safe='/:')}", headers=_headers(key), timeout=30)
        if response.status_code != 200:
            raise NexaError(_message(response))
        return response.json()
    response = httpx.get(url + "/v1/models", headers=_headers(key), timeout=30)
    if response.status_code != 200:
        raise NexaError(_message(response))
    cards = [c for c in response.json()["data"] if {"chat", "tools"} <= set(c.get("capabilities") or [])]
    if not cards:
        raise NexaError("no pulled model can call tools, which agents need; pull one, e.g. nexa pull ggml-org/Qwen3-1.7B-GGUF")
    return cards[0]


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"the server answered {response.status_code}"


def _shell(launch_env: dict[str, str], argv: list[str]) -> str:
    lines = [f"export {name}={shlex.quote(value)}" for name, value in launch_env.items()]
    return "\n".join([*lines, shlex.join(argv)])


class _AgentArgs(TyperCommand):
    """Everything after `--` is the agent's, kept apart before Click parses the rest (else an optional
    MODEL would swallow the agent's first argument)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            args, ctx.meta["agent_args"] = args[:cut], args[cut + 1:]
        return super().parse_args(ctx, args)


def launch(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="claude, codex or opencode.", show_default=False)],
    model: Annotated[Optional[str], typer.Argument(
        help="org/repo[:QUANT]; default: the first pulled model that can call tools.", show_default=False)] = None,
    print_only: Annotated[bool, typer.Option("--print", help="Print what would be set and run, and run nothing.")] = False,
    host: HostOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Run a coding agent on nexa: Claude Code, Codex or OpenCode.

    Finds the server at --host / NEXA_HOST (or starts `nexa serve` there and leaves it running), picks the model, and runs the agent pointed at it in the agent's own way, leaving your settings files alone: Claude Code through its environment (ANTHROPIC_BASE_URL, ANTHROPIC_MODEL, ...), Codex through `-c` overrides (a `nexa` provider on the Responses API), OpenCode through OPENCODE_CONFIG_CONTENT (a `nexa` provider with the model's context limit). Everything after `--` goes to the agent; a missing agent is named with its npm package.

    Examples:

      nexa launch claude ggml-org/Qwen3-1.7B-GGUF

      nexa launch codex ggml-org/Qwen3-1.7B-GGUF -- exec "fix the failing test"

      nexa launch opencode --print
    """
    spec = AGENTS.get(agent)
    if spec is None:
        raise NexaError(f"unknown agent '{agent}'; nexa launches {', '.join(AGENTS)}")
    executable = shutil.which(spec.binary)
    if executable is None and not print_only:
        raise NexaError(spec.install_hint())
    url, key = server_url(host), first_key(api_key)
    if not _running(url):
        if print_only:
            raise NexaError(f"no nexa server answers at {url}; start one with nexa serve (or run without --print)")
        _start_server(url)
    card = _card(url, key, model)
    name = model or card["id"]
    context = card.get("context_length")
    if context is not None and context < MIN_CONTEXT:
        err_console.print(f"[yellow]warning:[/] {escape(name)} gets {context} tokens of context; {spec.name}'s first "
                          f"request alone is 15-50k tokens. Restart nexa serve with "
                          f"--model-option {escape(name)}:ctx={MIN_CONTEXT * 2}")
    plan = agent_launch(agent, Target(url=url, model=name, key=key, context=context), ctx.meta.get("agent_args", []))
    if print_only:
        print(_shell(plan.env, plan.argv))
        return
    os.execvpe(executable or spec.binary, plan.argv, {**os.environ, **plan.env})


def register(app: typer.Typer) -> None:
    app.command(cls=_AgentArgs)(launch)
