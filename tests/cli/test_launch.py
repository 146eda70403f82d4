"""`nexa launch AGENT [MODEL] [-- ARGS]` against a real server: what it sets for each agent (--print), the
model it picks, a missing agent, and a server it starts itself. The real agents run in tests/agents."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from nexa.store import Store
from tests.conftest import ServerProcess, free_port


def launch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "nexa", "launch", *args], capture_output=True, text=True, env=environ,
                          timeout=120)


def printed(done: subprocess.CompletedProcess[str]) -> tuple[dict[str, str], list[str]]:
    """The variables `--print` exports and the command it shows."""
    assert done.returncode == 0, done.stderr
    *exports, command = done.stdout.strip().splitlines()
    env = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in exports)
    return env, shlex.split(command)


def test_claude_is_pointed_at_nexa_by_its_environment(server: ServerProcess):
    env, argv = printed(launch("claude", "test/qwen3-tool", "--print", "--host", server.base_url, "--", "-p", "hi"))
    assert env["ANTHROPIC_BASE_URL"] == server.base_url and env["ANTHROPIC_AUTH_TOKEN"] and env["ANTHROPIC_API_KEY"] == ""
    assert env["ANTHROPIC_MODEL"] == env["ANTHROPIC_SMALL_FAST_MODEL"] == "test/qwen3-tool"
    assert argv == ["claude", "-p", "hi"]


def test_codex_gets_a_responses_provider_by_c_overrides(server: ServerProcess):
    env, argv = printed(launch("codex", "test/qwen3-tool", "--print", "--host", server.base_url, "--api-key", "k1",
                               "--", "exec", "fix it"))
    overrides = dict(argv[i + 1].split("=", 1) for i, word in enumerate(argv) if word == "-c")
    assert json.loads(overrides["model_providers.nexa.base_url"]) == server.base_url + "/v1"
    assert json.loads(overrides["model_providers.nexa.wire_api"]) == "responses"
    assert json.loads(overrides["model_provider"]) == "nexa" and json.loads(overrides["model"]) == "test/qwen3-tool"
    assert json.loads(overrides["model_providers.nexa.env_key"]) == "NEXA_API_KEY" and env == {"NEXA_API_KEY": "k1"}
    assert argv[0] == "codex" and argv[-2:] == ["exec", "fix it"]


def test_opencode_gets_a_provider_config_and_the_first_tool_model_by_default(server: ServerProcess):
    env, argv = printed(launch("opencode", "--print", "--host", server.base_url))
    config = json.loads(env["OPENCODE_CONFIG_CONTENT"])
    provider = config["provider"]["nexa"]
    assert provider["npm"] == "@ai-sdk/openai-compatible" and provider["options"]["baseURL"] == server.base_url + "/v1"
    (model,) = provider["models"]
    card = httpx.get(f"{server.base_url}/v1/models/{model}").json()
    assert {"chat", "tools"} <= set(card["capabilities"]) and config["model"] == f"nexa/{model}"
    assert argv == ["opencode"]


def test_a_missing_agent_names_its_npm_package(server: ServerProcess, tmp_path: Path):
    done = launch("codex", "test/qwen3-tool", "--host", server.base_url, env={"PATH": str(tmp_path)})
    assert done.returncode == 1 and "npm install -g @openai/codex" in done.stderr


@pytest.mark.parametrize("args, words", [
    (["gemini"], "unknown agent 'gemini'"),
    (["claude", "nobody/nothing"], "not pulled"),
])
def test_bad_input_is_a_clear_message(server: ServerProcess, args: list[str], words: str):
    done = launch(*args, "--print", "--host", server.base_url)
    assert done.returncode == 1 and words in " ".join(done.stderr.split())


def test_without_a_server_it_starts_one_and_runs_the_agent(session_store: Store, tmp_path: Path):
    """The agent here is a script that prints what it was given: the one stand-in in these tests."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    agent = bin_dir / "claude"
    agent.write_text('#!/bin/sh\necho "args=$*"\necho "url=$ANTHROPIC_BASE_URL model=$ANTHROPIC_MODEL"\n')
    agent.chmod(0o755)
    port = free_port()
    done = launch("claude", "test/qwen3-tool", "--host", f"127.0.0.1:{port}", "--", "-p", "hi",
                  env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "NEXA_DATADIR": str(session_store.root)})
    started = re.search(r"pid (\d+)", done.stderr)
    try:
        assert done.returncode == 0, done.stderr
        assert f"url=http://127.0.0.1:{port} model=test/qwen3-tool" in done.stdout and "args=-p hi" in done.stdout
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200  # it keeps running for the next launch
    finally:
        if started:
            os.kill(int(started.group(1)), signal.SIGTERM)
