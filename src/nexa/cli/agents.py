"""How each coding agent is pointed at a nexa server, in the agent's own conventions: what `nexa
launch` sets and runs. Nothing here touches a settings file of the user's: Claude Code is configured
by its environment, Codex by `-c` overrides on its command line, OpenCode by OPENCODE_CONFIG_CONTENT
(which it merges over the user's own config)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

# Sent when the server needs no key: the agents refuse to start without one.
NO_KEY = "nexa"
# The provider name nexa registers in Codex and OpenCode.
PROVIDER = "nexa"
# Tokens an agent needs at the least: its first request alone (system prompt and tools) is 15-50k.
MIN_CONTEXT = 32768


@dataclass(frozen=True)
class Target:
    """Where the agent goes: the server's URL, its key (None: it has none), the model and its context."""

    url: str
    model: str
    key: str | None = None
    context: int | None = None


@dataclass
class Launch:
    """The command to run and the environment variables to set for it."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentSpec:
    name: str
    binary: str
    package: str
    about: str

    def install_hint(self) -> str:
        return f"{self.binary} is not installed (or not on PATH): install it with `npm install -g {self.package}`"


AGENTS = {
    "claude": AgentSpec("claude", "claude", "@anthropic-ai/claude-code", "Claude Code, through /v1/messages"),
    "codex": AgentSpec("codex", "codex", "@openai/codex", "OpenAI Codex CLI, through /v1/responses"),
    "opencode": AgentSpec("opencode", "opencode", "opencode-ai", "OpenCode, through /v1/chat/completions"),
}


def launch(agent: str, target: Target, args: list[str]) -> Launch:
    """What runs `agent` against `target`, with the user's `args` passed on."""
    return {"claude": _claude, "codex": _codex, "opencode": _opencode}[agent](target, args)


def _claude(target: Target, args: list[str]) -> Launch:
    """Environment only: the Anthropic endpoint, a bearer token (so Claude Code does not ask about an
    API key), and the model for every role, so its side requests (titles, sub-agents) stay local."""
    env = {
        "ANTHROPIC_BASE_URL": target.url,
        "ANTHROPIC_AUTH_TOKEN": target.key or NO_KEY,
        "ANTHROPIC_API_KEY": "",
        "ANTHROPIC_MODEL": target.model,
        "ANTHROPIC_SMALL_FAST_MODEL": target.model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": target.model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": target.model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": target.model,
        "CLAUDE_CODE_SUBAGENT_MODEL": target.model,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    if target.context:  # Claude Code assumes 1M tokens for a model it does not know: compact within the real one
        env["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] = str(target.context)
    return Launch([AGENTS["claude"].binary, *args], env)


def _codex(target: Target, args: list[str]) -> Launch:
    """`-c` overrides (Codex's own way to set config for one run): a `nexa` provider on the Responses
    API, chosen for this run; the key, if any, read from NEXA_API_KEY as Codex reads provider keys."""
    settings = {
        "model_provider": PROVIDER,
        f"model_providers.{PROVIDER}.name": PROVIDER,
        f"model_providers.{PROVIDER}.base_url": target.url + "/v1",
        f"model_providers.{PROVIDER}.wire_api": "responses",
        "model": target.model,
    }
    env = {}
    if target.key:
        settings[f"model_providers.{PROVIDER}.env_key"] = "NEXA_API_KEY"
        env["NEXA_API_KEY"] = target.key
    if target.context:
        settings["model_context_window"] = target.context
    overrides = [word for key, value in settings.items() for word in ("-c", f"{key}={json.dumps(value)}")]
    return Launch([AGENTS["codex"].binary, *overrides, *args], env)


def _opencode(target: Target, args: list[str]) -> Launch:
    """OPENCODE_CONFIG_CONTENT, which OpenCode merges over the user's config files: an OpenAI-compatible
    `nexa` provider with the model and its context limit, made the default model."""
    model: dict[str, object] = {"name": target.model}
    if target.context:
        model["limit"] = {"context": target.context, "output": min(target.context // 4, 32000)}
    config = {
        "$schema": "https://opencode.ai/config.json",
        "provider": {PROVIDER: {
            "npm": "@ai-sdk/openai-compatible", "name": "nexa",
            "options": {"baseURL": target.url + "/v1", "apiKey": target.key or NO_KEY},
            "models": {target.model: model},
        }},
        "model": f"{PROVIDER}/{target.model}",
    }
    return Launch([AGENTS["opencode"].binary, *args], {"OPENCODE_CONFIG_CONTENT": json.dumps(config)})
